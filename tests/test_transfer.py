"""A fine-tune's start (composer.model.transfer): events and control slots carried over by
name, a dropped control folded in as unset, a new one without effect until trained."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from composer.controls.features import ControlSpec
from composer.model.config import ModelConfig, ModelError
from composer.model.lstm import ComposerLSTM
from composer.model.transfer import slot_names, transfer_weights, transferable
from composer.tokens.beats import BeatNotes, NoteEventConfig
from composer.tokens.performance import EventConfig, Performance

SOLO, ENSEMBLE = BeatNotes(NoteEventConfig()), BeatNotes(NoteEventConfig(instruments=True))
BASE_SPEC = ControlSpec(names=("density", "pitch-classes", "style", "tempo"),
                        styles=("bach", "irish"))


def model(events, spec: ControlSpec) -> ComposerLSTM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=events.size, embed_dim=8, hidden=16, layers=2,
                         dropout=0.0, controls=spec)
    net = ComposerLSTM(config).eval()
    if spec.width:
        with torch.no_grad():
            net.unset.normal_()  # a trained model's unset values are not zero
    return net


def moved(base: ComposerLSTM, base_events, events, spec: ControlSpec) -> ComposerLSTM:
    config = dataclasses.replace(base.config, vocab_size=events.size, controls=spec)
    net = ComposerLSTM(config).eval()
    net.load_state_dict(transfer_weights(base.state_dict(), base.config, base_events, config,
                                         events))
    return net


def test_slot_names_follow_the_control_vector():
    names = slot_names(BASE_SPEC)
    assert len(names) == BASE_SPEC.width == 1 + 12 + 2 + 1
    assert names[:2] == ["density", "pitch-classes:0"] and names[-3:] == [
        "style:bach", "style:irish", "tempo"]


def test_only_the_instrument_option_may_differ():
    assert transferable(ENSEMBLE, SOLO) and transferable(SOLO, ENSEMBLE)
    assert not transferable(SOLO, Performance(EventConfig()))
    assert not transferable(SOLO, BeatNotes(NoteEventConfig(steps_per_quarter=4)))
    base = model(ENSEMBLE, BASE_SPEC)
    config = dataclasses.replace(base.config, vocab_size=Performance(EventConfig()).size)
    with pytest.raises(ModelError, match="cannot start"):
        transfer_weights(base.state_dict(), base.config, ENSEMBLE, config,
                         Performance(EventConfig()))
    with pytest.raises(ModelError, match="sizes"):
        transfer_weights(base.state_dict(), base.config, ENSEMBLE,
                         dataclasses.replace(base.config, hidden=32), ENSEMBLE)


def test_events_keep_their_rows_by_name_and_new_ones_start_average():
    base = model(SOLO, ControlSpec())
    net = moved(base, SOLO, ENSEMBLE, ControlSpec())
    for name in ("PITCH_60", "SHIFT_1/2", "VELOCITY_20"):
        a, b = SOLO.vocab.token_str, ENSEMBLE.vocab.token_str
        i = next(i for i in range(SOLO.size) if a(i) == name)
        j = next(j for j in range(ENSEMBLE.size) if b(j) == name)
        assert torch.equal(net.embed.weight[j], base.embed.weight[i])
        assert torch.equal(net.head.weight[j], base.head.weight[i])
        assert net.head.bias[j] == base.head.bias[i]
    program = ENSEMBLE.instrument_ids()[0][0]  # PROGRAM_0: the solo model has none
    assert torch.allclose(net.embed.weight[program], base.embed.weight.mean(0))
    assert torch.allclose(net.head.bias[program], base.head.bias.mean())
    back = moved(net, ENSEMBLE, SOLO, ControlSpec())  # and back: the same model again
    for key, value in base.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_kept_slots_are_the_same_and_a_dropped_one_acts_unset():
    base = model(SOLO, BASE_SPEC)
    spec = ControlSpec(names=("density", "pitch-classes", "tempo"))  # no style
    net = moved(base, SOLO, SOLO, spec)
    tokens = torch.randint(0, SOLO.size, (3, 12))  # (B, T)
    given = torch.randn(3, 12, spec.width)  # (B, T, C) density, pitch classes, tempo
    given[0, :, :1] = float("nan")  # an unset density in one row
    full = torch.full((3, 12, BASE_SPEC.width), float("nan"))  # (B, T, C0): style unset
    full[..., :13], full[..., -1] = given[..., :13], given[..., -1]
    with torch.no_grad():
        assert torch.allclose(net(tokens, controls=given)[0], base(tokens, controls=full)[0],
                              atol=1e-5)


def test_new_slots_do_nothing_until_trained():
    base = model(SOLO, BASE_SPEC)
    spec = ControlSpec(names=("density", "style"), styles=("irish", "palestrina"))
    net = moved(base, SOLO, SOLO, spec)
    assert slot_names(spec) == ["density", "style:irish", "style:palestrina"]
    tokens = torch.randint(0, SOLO.size, (2, 10))  # (B, T)
    with torch.no_grad():  # nothing given: the base with nothing given
        assert torch.allclose(net(tokens)[0], base(tokens)[0], atol=1e-5)
        new = torch.full((2, 10, 3), float("nan"))
        new[..., 2] = 1.0  # the new style asked: no effect yet
        assert torch.allclose(net(tokens, controls=new)[0], base(tokens)[0], atol=1e-5)
    assert net.unset[0] == base.unset[0] and net.unset[1] == base.unset[1 + 12 + 1]


def test_auto_starts_a_cpu_run_of_the_presets_size_from_the_shipped_model():
    from composer.model.checkpoint import find_checkpoint, resolve_checkpoint_path
    from composer.training.config import BASE_MODEL, TrainRequest
    from composer.training.recipe import base_model

    shipped = resolve_checkpoint_path(find_checkpoint(BASE_MODEL))[0]
    auto = TrainRequest(device="cpu")
    assert auto.init_from == "auto"
    assert base_model(auto, SOLO) == base_model(auto, ENSEMBLE) == shipped
    assert base_model(auto, Performance(EventConfig())) is None  # no shipped model fits
    assert base_model(dataclasses.replace(auto, sizes={"dropout": 0.3}), SOLO) == shipped
    for other in (dict(preset="tiny"), dict(sizes={"hidden": 64}), dict(init_from="none"),
                  dict(init_from=None), dict(resume=True)):
        assert base_model(dataclasses.replace(auto, **other), SOLO) is None, other
    named = dataclasses.replace(auto, init_from=BASE_MODEL, resume=True)
    assert base_model(named, SOLO) == shipped  # named: train() refuses it with --resume


def test_cli_train_fine_tunes_the_shipped_model_by_default(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from helpers import copy_chorales

    from composer.cli.main import main
    from composer.model.checkpoint import find_checkpoint, load_checkpoint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    midi = copy_chorales(tmp_path / "midi", 4)
    args = ["train", str(midi), "--out", str(tmp_path / "run"), "--steps", "1",
            "--eval-every", "1", "--batch-size", "2", "--seq-len", "16", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Fine-tuning the shipped model 'default' (--init-from none" in result.output
    tuned, base = load_checkpoint(tmp_path / "run" / "best"), load_checkpoint(
        find_checkpoint("default"))
    assert tuned.events == SOLO != base.events  # the corpus's own vocabulary ...
    assert tuned.model_config.controls.names == ("density", "pitch-classes", "tempo")  # ...
    assert tuned.model_config.hidden == base.model_config.hidden  # ... at the base's size
    assert tuned.data["base"] == "default"
    info = CliRunner().invoke(main, ["info", str(tmp_path / "run")])
    assert "fine-tuned from default" in info.output
    scratch = CliRunner().invoke(main, [*args, "--force", "--init-from", "none", "--preset",
                                        "tiny"])
    assert scratch.exit_code == 0 and "Fine-tuning" not in scratch.output


def test_a_fine_tunes_budget_ends_at_its_passes_when_they_come_first():
    from composer.training.config import FINE_TUNE_PASSES, NO_STEP_CAP, TrainConfig
    from composer.training.optim import Budget, plan_line
    from composer.training.recipe import run_length

    config = TrainConfig(batch_size=16, seq_len=64)

    def length(events: int, **given):
        asked = {"steps": None, "epochs": None, "minutes": 4.0, **given}
        return run_length(config, train_events=events, device="cpu",
                          max_passes=FINE_TUNE_PASSES, **asked)

    small = length(40_000)
    assert small.minutes == 4.0 and small.steps == round(FINE_TUNE_PASSES * 40_000 / 1024)
    assert length(10**12).steps == NO_STEP_CAP  # a big corpus: the budget ends it
    assert length(40_000, steps=7, minutes=None).steps == 7  # steps asked: as asked
    line = plan_line(Budget(small), layers=2, hidden=8, parameters=1000, device="cpu",
                     threads=1, vocabulary="notes", files={"train": 3})
    assert f"budget 4 min or {small.steps:,} steps, whichever comes first" in line
    scratch = run_length(config, steps=None, epochs=None, minutes=4.0, train_events=40_000,
                         device="cpu")
    assert scratch.steps == NO_STEP_CAP and "whichever" not in plan_line(
        Budget(scratch), layers=2, hidden=8, parameters=1000, device="cpu", threads=1,
        vocabulary="notes", files={})
