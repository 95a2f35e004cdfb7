"""Controls (issue 13): computed from the music, moved with augmentation, fed to the model,
saved with it, asked for at generation (flags and plans), switched at the right second."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import BACH, copy_chorales, write_tune

import composer.model.steppers as steppers
from composer.cli.main import main
from composer.controls.features import (
    ControlError,
    ControlSpec,
    choose_spec,
    corpus_controls,
    density_feature,
    rotate_pitch_classes,
    stretch_density,
)
from composer.controls.plan import key_profile, key_scale, make_plan, parse_key, read_plan
from composer.core.messages import GenerateError
from composer.corpus.cache import INDEX_DTYPE, Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.loop import generate
from composer.generation.session import generate_music
from composer.midi.io import NOTE_DTYPE
from composer.model.checkpoint import load_checkpoint, save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.model.steppers import PlainStepper
from composer.model.storage import CheckpointError
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import vocabulary_of
from composer.training.config import AugmentConfig, TrainConfig, TrainRequest
from composer.training.data import WindowSampler
from composer.training.recipe import train_model

ROOT = Path(__file__).resolve().parents[1]
PERF = vocabulary_of(EventConfig())
SHIPPED = ROOT / "checkpoints" / "bach-performance-2x256"  # shipped until issue 12
# The (then) shipped model's tokens for rng seed 7, 2 rows, 48 events, drawn by the code before
# controls existed (commit 822dbf1): a model without controls must draw exactly these.
SHIPPED_TOKENS = [
    [371, 268, 193, 63, 267, 181, 191, 196, 200, 49, 65, 68, 70, 280, 178, 196, 49, 66, 280,
     177, 194, 196, 198, 51, 63, 70, 78, 280, 179, 49, 279, 177, 191, 198, 206, 51, 63, 70,
     78, 280, 179, 61, 280, 189, 191, 198, 206, 60, 63],
    [371, 280, 191, 57, 280, 185, 195, 206, 50, 65, 70, 281, 178, 49, 280, 177, 193, 198, 52,
     67, 70, 305, 180, 195, 198, 53, 64, 69, 306, 181, 192, 197, 53, 65, 69, 280, 193, 63,
     280, 181, 191, 197, 200, 46, 62, 65, 70, 355, 256],
]


def piece(starts: list[float], pitches: list[int], length: float = 0.25) -> np.ndarray:
    notes = np.zeros(len(starts), NOTE_DTYPE)
    notes["start"], notes["pitch"], notes["velocity"] = starts, pitches, 80
    notes["end"] = notes["start"] + length
    return notes


def one_file(tokens: np.ndarray, us_per_quarter: int = 0) -> np.ndarray:
    index = np.zeros(1, INDEX_DTYPE)
    index["length"], index["us_per_quarter"] = len(tokens), us_per_quarter
    return index


# --------------------------------------------------------------------- computing controls


def test_density_and_histogram_of_a_hand_made_piece():
    # a note every 0.5 s for 8 s, C E G C E G ...; the last one ends at 7.75 s
    starts = [0.5 * i for i in range(16)]
    pitches = [[60, 64, 67][i % 3] for i in range(16)]
    tokens = PERF.encode(piece(starts, pitches))
    spec = ControlSpec(("density", "pitch-classes"))
    c = corpus_controls(tokens, one_file(tokens), ["a.mid"], PERF, spec).astype(np.float64)
    # the first token (time 0): onsets at 0.0 .. 3.5 s: 8 notes in 4 s, C 3, E 3, G 2
    assert c[0, 0] == pytest.approx(float(density_feature(2.0)), abs=2e-3)
    want = np.zeros(12)
    want[[0, 4, 7]] = [3 / 8, 3 / 8, 2 / 8]
    np.testing.assert_allclose(c[0, 1:], want, atol=1e-3)
    # at 6 s (the NOTE_ON of the note at 6 s): onsets 6, 6.5, 7, 7.5 over the 1.75 s left
    times = np.cumsum(PERF.token_steps()[tokens]) / 100
    at6 = int(np.flatnonzero(np.isclose(times, 6.0))[0])
    assert c[at6, 0] == pytest.approx(float(density_feature(4 / 1.75)), abs=3e-3)


def test_beat_vocabulary_density_uses_the_piece_tempo(tmp_path):
    write_tune(tmp_path / "midi" / "t.mid", [60, 62, 64, 65] * 8)  # eighths at 120 bpm
    prepare(tmp_path / "midi", tmp_path / "c", CorpusConfig(vocabulary="notes"), workers=1)
    corpus = Corpus(tmp_path / "c")
    spec = choose_spec("auto", corpus.events, corpus.paths)
    assert spec.names == ("density", "pitch-classes", "tempo") and not spec.styles
    c = corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    s = spec.slices()
    assert float(c[0, s["density"]][0]) == pytest.approx(float(density_feature(4.0)), abs=2e-3)
    assert float(c[0, s["tempo"]][0]) == pytest.approx(0.0, abs=1e-3)  # 120 bpm
    hist = c[0, s["pitch-classes"]].astype(float)
    assert hist[[0, 2, 4, 5]] == pytest.approx([0.25] * 4, abs=1e-3)


def test_choose_spec_refuses_what_the_corpus_cannot_give():
    assert choose_spec("none", PERF, ["a.mid"]).width == 0
    auto = choose_spec("auto", PERF, ["bach/a.mid", "folk/b.mid", "c.mid"])
    assert auto.names == ("density", "pitch-classes", "style")
    assert auto.styles == ("bach", "folk") and auto.width == 15
    with pytest.raises(ControlError, match="subfolders"):
        choose_spec("style", PERF, ["a.mid"])
    with pytest.raises(ControlError, match="beat vocabulary"):
        choose_spec("tempo", PERF, ["a.mid"])
    with pytest.raises(ControlError, match="unknown control 'loudness'"):
        choose_spec("density,loudness", PERF, ["a.mid"])


def test_transposition_rotates_the_histogram_and_stretch_scales_density():
    spec = ControlSpec(("density", "pitch-classes"))
    c = np.zeros((2, 3, 13), np.float32)
    c[:, :, 0] = density_feature(4.0)
    c[:, :, 1 + 0], c[:, :, 1 + 7] = 0.75, 0.25  # C and G
    r = rotate_pitch_classes(c, np.array([2, -1]), spec)
    assert r[0, 0, 1 + 2] == 0.75 and r[0, 0, 1 + 9] == 0.25  # up 2: D and A
    assert r[1, 0, 1 + 11] == 0.75 and r[1, 0, 1 + 6] == 0.25  # down 1: B and F#
    s = stretch_density(c, np.array([2.0, 0.5]), spec)
    assert np.expm1(s[:, 0, 0]) == pytest.approx([2.0, 8.0], rel=1e-5)


def test_sampler_moves_controls_with_the_transposed_window(tmp_path):

    prepare(copy_chorales(tmp_path / "m", 3), tmp_path / "c", workers=1)
    corpus = Corpus(tmp_path / "c")
    spec = ControlSpec(("density", "pitch-classes"), dropout=0.0)
    table = corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    sampler = WindowSampler(corpus, "train", 64, 8, AugmentConfig(5, 0.0), seed=3,
                            controls=(table, spec))
    starts = sampler.window_starts()
    x, _, c = sampler.next_batch()
    on = corpus.events.note_start_ids()
    moved = 0
    for b in range(len(x)):
        raw = corpus.tokens[starts[b] : starts[b] + 64].astype(np.int64)
        first = int(np.flatnonzero((raw >= on.start) & (raw < on.stop))[0])
        k = int(x[b, first]) - int(raw[first])
        want = rotate_pitch_classes(table[starts[b] : starts[b] + 64][None].astype(np.float32),
                                    np.array([k]), spec)[0]
        np.testing.assert_array_equal(c[b].numpy(), want)
        moved += k != 0
    assert moved  # some window was transposed
    # a stretched window keeps controls finite and its density moves the other way
    stretchy = WindowSampler(corpus, "train", 64, 8, AugmentConfig(0, 0.05), seed=3,
                             controls=(table, spec))
    assert torch.isfinite(stretchy.next_batch()[2]).all()


def test_controls_are_the_same_in_chunks_and_stored_beside_the_corpus(tmp_path, monkeypatch):
    import composer.controls.features as controls

    prepare(copy_chorales(tmp_path / "m", 4), tmp_path / "c", CorpusConfig(vocabulary="notes"),
            workers=1)
    corpus = Corpus(tmp_path / "c")
    spec = choose_spec("auto", corpus.events, corpus.paths)
    whole = corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    monkeypatch.setattr(controls, "CHUNK_TOKENS", 50)  # one file per chunk
    chunked = corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    assert np.array_equal(whole, chunked, equal_nan=True) and not np.isnan(whole).any()
    stored = controls.open_controls(corpus, spec)
    assert isinstance(stored, np.memmap) and np.array_equal(stored, whole, equal_nan=True)
    assert len(list((tmp_path / "c").glob("controls-*.npy"))) == 1
    assert controls.open_controls(corpus, spec).filename == stored.filename  # read again


# --------------------------------------------------------------------- model and checkpoint


def test_a_model_without_controls_is_the_model_it_always_was():
    plain = ModelConfig.preset("tiny", vocab_size=PERF.size)
    assert "controls" not in plain.to_dict()
    names = set(ComposerLSTM(plain).state_dict())
    assert "unset" not in names
    assert ComposerLSTM(plain).lstm.weight_ih_l0.shape == (4 * 32, 16)
    spec = ControlSpec(("density", "pitch-classes"))
    steered = ModelConfig.preset("tiny", vocab_size=PERF.size, controls=spec)
    model = ComposerLSTM(steered)
    assert model.lstm.weight_ih_l0.shape == (4 * 32, 16 + 13)
    assert model.num_parameters() == steered.num_parameters()
    with pytest.raises(Exception, match="takes no controls"):
        ComposerLSTM(plain)(torch.zeros(1, 3, dtype=torch.long), None, torch.zeros(1, 3, 13))


@pytest.mark.parametrize("engine", ["plain", "fused"])
def test_shipped_checkpoint_draws_exactly_what_it_drew_before_controls(engine):
    ckpt = load_checkpoint(SHIPPED)
    assert ckpt.model_config.controls.width == 0
    gen = generate(ckpt.model, ckpt.events, None, 2, SampleConfig(events=48), rng_seed=7,
                   engine=engine)
    assert [row.tolist() for row in gen.tokens] == SHIPPED_TOKENS


def test_checkpoint_round_trip_with_controls(tmp_path):
    spec = ControlSpec(("density", "pitch-classes", "style"), ("bach", "folk"))
    config = ModelConfig.preset("tiny", vocab_size=PERF.size, controls=spec)
    torch.manual_seed(0)
    model = ComposerLSTM(config).eval()
    with torch.no_grad():
        model.unset.normal_()
    save_checkpoint(tmp_path / "ck", model, config, PERF.to_dict(), train_config={}, step=1,
                    metrics={}, data={})
    back = load_checkpoint(tmp_path / "ck")
    assert back.model_config == config and back.model_config.controls.styles == ("bach", "folk")
    x = torch.randint(0, PERF.size, (2, 5))
    c = torch.rand(2, 5, 15)
    c[0, :, :1] = float("nan")  # density unset in row 0
    with torch.no_grad():
        assert torch.equal(model(x, None, c)[0], back.model(x, None, c)[0])
        assert torch.equal(model(x)[0], back.model(x)[0])  # all unset
    # weights that do not fit the saved layout are refused before any tensor is read
    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    meta["model"]["controls"]["styles"] = ["bach", "folk", "jazz"]
    (tmp_path / "ck" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"embed_dim 16, controls 16\) needs float"):
        load_checkpoint(tmp_path / "ck")


# --------------------------------------------------------------------- requests and plans


def test_keys_become_scale_profiles():
    assert parse_key("D minor") == (2, True) and parse_key("Bb") == (10, False)
    assert parse_key("F#m") == (6, True) and parse_key("eb major") == (3, False)
    assert np.flatnonzero(key_scale("C major")).tolist() == [0, 2, 4, 5, 7, 9, 11]
    assert np.flatnonzero(key_scale("A minor")).tolist() == [0, 2, 4, 5, 7, 8, 9, 11]
    p = key_profile("D minor")
    assert p.sum() == pytest.approx(1) and p[2] == pytest.approx(2 / 9)
    assert p[1] == pytest.approx(1 / 9) and p[3] == 0  # C# is the leading tone
    with pytest.raises(ControlError, match="unknown key 'H minor'"):
        parse_key("H minor")


def test_plan_segments_build_on_each_other():
    spec = ControlSpec(("density", "pitch-classes", "style"), ("bach", "folk"))
    plan = make_plan(spec, {"style": "folk"},
                     [{"from": 0, "density": 2}, {"from": 20, "density": 6, "key": "A minor"},
                      {"from": 30, "style": None}])
    assert plan.starts.tolist() == [0, 20, 30]
    assert np.expm1(plan.values[:, 0]).tolist() == pytest.approx([2, 6, 6], rel=1e-6)
    assert np.isnan(plan.values[0, 1:13]).all()  # no key until 20 s
    np.testing.assert_allclose(plan.values[1, 1:13], key_profile("A minor"), rtol=1e-6)
    assert plan.values[1, 14] == 1 and np.isnan(plan.values[2, 13:]).all()
    assert np.array_equal(plan.at(25.0), plan.values[1], equal_nan=True)
    assert make_plan(spec, {}) is None  # nothing asked: the model runs as without controls
    with pytest.raises(ControlError, match="plan entry 2: 'from' 1 comes before 5"):
        make_plan(spec, None, [{"from": 5, "density": 1}, {"from": 1, "density": 2}])
    takes = r"density, key \(or pitch-classes\), style \(bach, folk\)"
    with pytest.raises(ControlError, match=rf"does not take tempo \(it takes {takes}\)"):
        make_plan(spec, {"tempo": 90})
    with pytest.raises(ControlError, match="key or pitch classes, not both"):
        make_plan(spec, {"key": "C", "pitch_classes": "1,0,0,0,0,0,0,0,0,0,0,0"})


def test_read_plan_says_where_it_is_wrong(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('[{"from": 0, "density": 2},\n {"from": 20 "density": 6}]')
    with pytest.raises(ControlError,
                       match=r"plan.json: not valid JSON \(line 2, column 14: Expecting ','"):
        read_plan(bad)
    bad.write_text('[{"from": 0, "densty": 2}]')
    with pytest.raises(ControlError, match="entry 1: unknown control 'densty'"):
        read_plan(bad)
    bad.write_text('{"from": 0}')
    with pytest.raises(ControlError, match="non-empty JSON list"):
        read_plan(bad)


# --------------------------------------------------------------------- generation


class Recording(PlainStepper):
    """The plain stepper, keeping every step's control vectors."""

    def __init__(self, model):
        super().__init__(model)
        self.seen = []

    def step(self, tokens, state, controls=None):
        self.seen.append(controls.clone())
        return super().step(tokens, state, controls)


def test_controls_switch_at_the_scheduled_second():
    spec = ControlSpec(("density", "pitch-classes"))
    torch.manual_seed(1)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=PERF.size, controls=spec))
    plan = make_plan(spec, None, [{"from": 0, "density": 1}, {"from": 1.5, "density": 5},
                                  {"from": 4, "key": "G major"}])
    rec = Recording(model)
    gen = generate(model, PERF, None, 3, SampleConfig(seconds=6, max_silence_seconds=0.5),
                   rng_seed=2, engine=rec, plan=plan)
    seen = torch.stack(rec.seen, 1).numpy()  # (B, steps, C)
    switched = 0
    for b, row in enumerate(gen.tokens):
        cont = row[gen.seed_len:]
        t = np.cumsum(PERF.token_steps()[cont]) / 100  # seconds after each drawn event
        want = np.stack([plan.at(s) for s in t])
        np.testing.assert_array_equal(seen[b, : len(cont)], want)
        switched += t.max() >= 4
    assert switched  # the schedule's last segment was reached


def test_engines_agree_with_controls():
    spec = ControlSpec(("density", "pitch-classes"))
    torch.manual_seed(3)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=PERF.size, controls=spec))
    plan = make_plan(spec, {"density": 3}, [{"from": 1, "key": "E minor"}])
    runs = {e: generate(model, PERF, None, 2, SampleConfig(events=64), rng_seed=5, engine=e,
                        keep_logits=True, plan=plan) for e in ("plain", "fused")}
    assert torch.allclose(runs["plain"].logits, runs["fused"].logits, atol=1e-5)
    assert [r.tolist() for r in runs["plain"].tokens] == [r.tolist() for r in runs["fused"].tokens]
    other = generate(model, PERF, None, 2, SampleConfig(events=64), rng_seed=5, engine="plain",
                     keep_logits=True, plan=make_plan(spec, {"density": 12}))
    assert not torch.allclose(other.logits[:, 1:], runs["plain"].logits[:, 1:])


@pytest.fixture(scope="module")
def steered(tmp_path_factory) -> Path:
    """A tiny model trained a few steps with every control on a two-style corpus."""
    root = tmp_path_factory.mktemp("two-styles")
    for sub, src in (("bach", BACH), ("folk", ROOT / "datasets" / "irish-folk")):
        (root / "midi" / sub).mkdir(parents=True)
        for p in sorted(src.glob("*.mid"))[:4]:
            shutil.copy(p, root / "midi" / sub / p.name)
    train_model(TrainRequest(str(root / "midi"), str(root / "run"), config=TrainConfig(
        batch_size=4, seq_len=32, eval_every=2, eval_max_batches=1), steps=3, preset="tiny",
        device="cpu", corpus=CorpusConfig(vocabulary="notes"), controls="auto"))
    return root / "run" / "best"


def test_a_model_trained_with_controls_generates_with_a_plan(steered, tmp_path):
    spec = load_checkpoint(steered).model_config.controls
    assert spec.names == ("density", "pitch-classes", "style", "tempo")
    assert spec.styles == ("bach", "folk")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"from": 0, "density": 2, "style": "folk"},
                                {"from": 2, "density": 6, "key": "A minor"}]))
    job = GenerateRequest(checkpoint=str(steered), out=str(tmp_path), num=2, rng_seed=1,
                          sample=SampleConfig(seconds=4), copy_warn=0)
    done = generate_music(replace(job, control_request={"tempo": 90}, plan_file=str(plan)))
    assert len(done.outputs) == 2 and all(o.path.exists() for o in done.outputs)
    from composer.midi.io import load

    assert load(done.outputs[0].path).tempos["us_per_quarter"][0] == round(60e6 / 90)
    unsteered = generate_music(replace(job, out=str(tmp_path / "u"), num=1))
    assert unsteered.outputs[0].path.exists()  # no control given: the learned defaults


def test_cli_control_errors(steered, tmp_path):
    run = CliRunner().invoke
    r = run(main, ["generate", "--checkpoint", str(steered), "--style", "jazz", "-q",
                   "--out", str(tmp_path)])
    assert r.exit_code == 1 and "unknown style 'jazz'; this model knows: bach, folk" in r.output
    r = run(main, ["generate", "--checkpoint", str(SHIPPED), "--density", "3", "-q",
                   "--out", str(tmp_path)])
    assert r.exit_code == 1
    assert "does not take density (it takes no controls)" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text('[{"from": 0, "density": 2}, {"from": -1}]')
    r = run(main, ["generate", "--checkpoint", str(steered), "--controls", str(bad), "-q",
                   "--out", str(tmp_path)])
    assert r.exit_code == 1 and "plan entry 2: 'from' (seconds) must be a number in [0, 86400]" \
        in r.output
    assert "Traceback" not in r.output
    r = run(main, ["generate", "--checkpoint", str(steered), "--pitch-classes", "1,2,3", "-q",
                   "--out", str(tmp_path)])
    assert r.exit_code == 1 and "pitch classes must be 12 numbers" in r.output
    r = run(main, ["info", str(steered)])
    assert "controls     density, pitch-classes, style, tempo (styles: bach, folk)" in r.output


def test_obedience_benchmark_runs_on_a_tiny_model(steered, tmp_path):
    corpus = steered.parents[1] / "midi"
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_controls.py"),
                    str(steered), str(corpus), "--pieces", "2", "--seconds", "2",
                    "--json", str(out)], check=True, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert len(result["density"]["rows"]) == 6 and len(result["key"]["rows"]) == 4
    assert "plan" in result["density"] and result["instruments"] == {
        "skipped": "the model has no instruments"}
    assert {r["style"] for r in result["style"]["rows"]} == {"bach", "folk"}
    assert set(result["steps_per_second"]) == {"with feedback", "without"}


def _drawn(steered: Path, flags: dict, **sample) -> list[np.ndarray]:
    """Notes of 8 unseeded 8 s continuations of the tiny steered model under ``flags``."""
    ckpt = load_checkpoint(steered)
    events = ckpt.events
    gen = generate(ckpt.model, events, None, 8, SampleConfig(seconds=8, **sample), 3,
                   plan=make_plan(ckpt.model_config.controls, flags))
    return [events.decode(row[gen.seed_len:]).notes for row in gen.tokens]


def test_density_feedback_holds_the_count_to_the_plan(steered):
    """The tiny model barely knows its density input; the feedback on the drawn count makes
    the asked density what is produced, and 0 gain leaves the model alone."""
    def per_second(flags: dict, **sample) -> float:
        return float(np.median([len(n) / 8 for n in _drawn(steered, flags, **sample)]))

    low, high = per_second({"density": 1}), per_second({"density": 8})
    assert high > 3 * low
    assert abs(high - 8) / 8 < 0.35 and abs(low - 1) < 1
    alone = per_second({"density": 8}, density_gain=0.0)
    assert abs(alone - 8) > abs(high - 8)


def test_scale_penalty_keeps_notes_in_the_asked_key(steered):
    scale = key_scale("F# major")
    def share(**sample) -> float:
        notes = np.concatenate(_drawn(steered, {"key": "F# major"}, **sample))
        return float(scale[notes["pitch"] % 12].mean())

    assert share() >= 0.92
    assert share(scale_penalty=0.0) < share()
    with pytest.raises(GenerateError, match="scale_penalty must be a number in"):
        SampleConfig(scale_penalty=float("nan"))


def test_style_guidance_pushes_the_logits_away_from_the_unstyled_twin(steered):
    """Classifier-free guidance: each draw's logits are cond + w (cond - free), where free
    is the same row's twin with the style unset; w = 0 is the model alone, and a request
    without a style is untouched. (fp32: int8's dynamic activation scale is per batch, so
    under it a row's logits move a little with the rows beside it.)"""
    ckpt = load_checkpoint(steered)
    spec, model, events = ckpt.model_config.controls, ckpt.model, ckpt.events
    seed = np.asarray(events.start_tokens())
    plan = make_plan(spec, {"style": "folk", "density": 3})
    free_plan = make_plan(spec, {"density": 3})

    def first_logits(p, **sample) -> torch.Tensor:
        gen = generate(model, events, seed, 2, SampleConfig(events=16, **sample), 4,
                       engine="fused", keep_logits=True, plan=p)
        return gen.logits[:, 0]  # (B, V): the first draw's

    cond, free = first_logits(plan, style_guidance=0.0), first_logits(free_plan)
    guided = first_logits(plan, style_guidance=1.5)
    assert torch.allclose(guided, cond + 1.5 * (cond - free), atol=1e-4)
    with pytest.MonkeyPatch.context() as m:  # the seed read by one forward, not by steps
        m.setattr(steppers, "STEP_SEED_UNDER", 0)
        assert torch.allclose(first_logits(plan, style_guidance=1.5), guided, atol=1e-5)
    assert torch.equal(first_logits(free_plan, style_guidance=3.0), free)
    a = generate(model, events, seed, 3, SampleConfig(events=48), 4, plan=plan)
    b = generate(model, events, seed, 3, SampleConfig(events=48, style_guidance=0.0), 4,
                 plan=plan)
    assert not all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))
