"""Training loop: loss falls, exact resume, interruption, non-finite steps, DDP, CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import copy_chorales, free_port, write_tune

from composer.cli.main import main
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.model.checkpoint import load_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens.performance import EventConfig
from composer.training import loop as train_mod
from composer.training.config import AugmentConfig, TrainConfig, TrainingError
from composer.training.loop import evaluate, train
from composer.training.optim import lr_at

TINY = ModelConfig.preset("tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("train")
    midi = root / "midi"
    midi.mkdir()
    copy_chorales(midi, 40)
    prepare(midi, root / "cache", CorpusConfig(valid_fraction=0.2, test_fraction=0.1))
    return Corpus.open(root / "cache")


def fast(**kw) -> TrainConfig:
    base = dict(steps=20, batch_size=8, seq_len=32, eval_seq_len=64, eval_every=10,
                warmup_steps=5,
                eval_max_batches=4, log_every=5)
    return TrainConfig(**{**base, **kw})


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model.state_dict()


def test_loss_falls_and_checkpoints_are_written(corpus, tmp_path):
    result = train(corpus, tmp_path, TINY, fast(steps=60, lr=1e-2, eval_every=30),
                   device="cpu")
    assert result.step == 60 and result.stopped == "done"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    valid = [r["loss"] for r in records if r["split"] == "valid"]
    torch.manual_seed(0)
    untrained = evaluate(ComposerLSTM(TINY), corpus, "valid", fast(), torch.device("cpu"))
    assert untrained["loss"] == pytest.approx(math.log(388), abs=0.1)
    assert len(valid) == 2 and valid[-1] < untrained["loss"] - 1.0
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0] - 1.0
    best, latest = load_checkpoint(tmp_path / "best"), load_checkpoint(tmp_path / "latest")
    assert latest.step == 60 and best.metrics["loss"] == pytest.approx(min(valid))
    assert latest.event_config == EventConfig().to_dict()
    assert TrainConfig.from_dict(latest.train_config) == fast(steps=60, lr=1e-2, eval_every=30)


@pytest.mark.parametrize("carry_state", [False, True])
def test_resume_after_interruption_reproduces_the_uninterrupted_run(corpus, tmp_path,
                                                                    carry_state):
    config = fast(carry_state=carry_state)
    train(corpus, tmp_path / "a", TINY, config, device="cpu")

    def interrupt_at_12(step, total, info):
        if step == 12:
            os.kill(os.getpid(), signal.SIGINT)  # like Ctrl-C: finish the step, save, stop

    first = train(corpus, tmp_path / "b", TINY, config, device="cpu", progress=interrupt_at_12)
    assert first.stopped == "interrupted" and first.step == 12
    assert load_checkpoint(tmp_path / "b" / "latest").step == 12
    second = train(corpus, tmp_path / "b", None, None, device="cpu", resume=True)
    assert second.step == 20
    a, b = weights(tmp_path / "a" / "latest"), weights(tmp_path / "b" / "latest")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_can_extend_the_run(corpus, tmp_path):
    train(corpus, tmp_path, TINY, fast(steps=10), device="cpu")
    result = train(corpus, tmp_path, None, fast(steps=15), device="cpu", resume=True)
    assert result.step == 15 and load_checkpoint(tmp_path / "latest").step == 15


def test_non_finite_steps_are_skipped_then_stop_the_run(corpus, tmp_path, monkeypatch):
    real = train_mod._loss
    calls = {"n": 0}

    def flaky(model, x, y, device, c=None, state=None):
        calls["n"] += 1
        loss, count, after = real(model, x, y, device, c, state)
        bad = calls["n"] in (3, 4) or calls["n"] > 14
        return (loss * float("nan") if bad else loss), count, after

    monkeypatch.setattr(train_mod, "_loss", flaky)
    with pytest.raises(TrainingError, match="not finite for 3 steps in a row") as e:
        train(corpus, tmp_path, TINY, fast(max_bad_steps=3), device="cpu")
    assert str(tmp_path / "latest") in str(e.value)
    latest = load_checkpoint(tmp_path / "latest", with_train_state=True)
    assert latest.step == 10  # the last good checkpoint is intact
    assert latest.train_state["progress"]["skipped"] == 2
    assert all(torch.isfinite(p).all() for p in latest.model.parameters())


def test_early_stopping_with_patience(corpus, tmp_path):
    result = train(corpus, tmp_path, TINY, fast(steps=200, lr=1e-9, eval_every=5, patience=2,
                                                warmup_steps=0), device="cpu")
    assert result.stopped == "early stop" and result.step < 200


def test_init_from_needs_the_same_vocabulary(corpus, tmp_path):
    train(corpus, tmp_path / "base", TINY, fast(steps=5, eval_every=5), device="cpu")
    tuned = train(corpus, tmp_path / "tuned", None, fast(steps=5, eval_every=5), device="cpu",
                  init_from=tmp_path / "base" / "latest")
    assert tuned.step == 5
    other = corpus.cache_dir.parent / "cache20"
    prepare(corpus.cache_dir.parent / "midi", other,
            CorpusConfig(events=EventConfig(steps_per_second=50, max_shift_steps=50)))
    with pytest.raises(TrainingError, match="another event vocabulary"):
        train(Corpus.open(other), tmp_path / "x", None, fast(steps=5), device="cpu",
              init_from=tmp_path / "base" / "latest")


def test_schedule_warms_up_then_decays():
    config = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(0.1) and lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(10, config) == pytest.approx(1.0) and lr_at(100, config) == pytest.approx(0.1)
    assert lr_at(55, config) == pytest.approx(0.55)


def test_auto_preset_is_brief_for_a_short_cpu_budget():
    """``auto`` on a CPU: ``brief`` (2x192) for a budget of at most BRIEF_CPU_MINUTES,
    ``small`` (2x256) for a longer one or none (steps, epochs); sizes given still win."""
    from composer.training.config import BRIEF_CPU_MINUTES
    from composer.training.recipe import choose_model

    def shape(minutes: float, **sizes) -> tuple[int, int]:
        c = choose_model("auto", "cpu", 100, minutes, **sizes)
        return c.layers, c.hidden

    assert shape(4) == shape(BRIEF_CPU_MINUTES) == (2, 192)
    assert shape(BRIEF_CPU_MINUTES + 1) == shape(0) == (2, 256)
    assert shape(4, hidden=320) == (2, 320)
    assert choose_model("small", "cpu", 100, 4).hidden == 256


def test_train_config_round_trips():
    config = TrainConfig(steps=7, augment=AugmentConfig(transpose=2, stretch=0.0))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_cli_train_and_info(corpus, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(corpus.cache_dir), "--out", str(out), "--preset", "tiny", "--steps",
            "6", "--eval-every", "3", "--batch-size", "4", "--seq-len", "16", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Stopped (done) at step 6" in result.output
    info = CliRunner().invoke(main, ["info", str(out / "best")])
    assert info.exit_code == 0 and "parameters" in info.output and "valid loss" in info.output
    bad = CliRunner().invoke(main, ["info", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "checkpoint folder" in bad.output  # a usage error


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _evaluations(out) -> int:
    """Validation records written to OUT/metrics.jsonl so far (complete lines only)."""
    try:
        text = (out / "metrics.jsonl").read_text()
    except OSError:
        return 0
    return sum('"split": "valid"' in line for line in text.splitlines(keepends=True)
               if line.endswith("\n"))


def test_sigkill_loses_at_most_one_checkpoint_interval(corpus, tmp_path):
    out = tmp_path / "run"
    args = ["-m", "composer", "train", str(corpus.cache_dir), "--out", str(out), "--preset",
            "tiny", "--steps", "100000", "--eval-every", "5", "--batch-size", "4", "--seq-len",
            "16", "-q"]
    proc = _run(args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _evaluations(out) < 2:  # training is under way
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    saved = load_checkpoint(out / "latest").step
    assert saved >= 5 and saved % 5 == 0
    resumed = _run([*args[:-5], "--steps", str(saved + 5), "--resume", "-q"])
    output, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, output
    assert f"at step {saved + 5}" in output


def test_two_process_ddp_on_cpu(corpus, tmp_path):
    out = tmp_path / "ddp"
    proc = _run(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                 str(free_port()), "-m", "composer", "train", str(corpus.cache_dir), "--out",
                 str(out),
                 "--preset", "tiny", "--steps", "6", "--eval-every", "3", "--batch-size", "4",
                 "--seq-len", "16", "-q"])
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "valid"] == [3, 6]  # rank 0 only
    assert load_checkpoint(out / "latest").step == 6


def test_tiny_corpora_validate_on_train_and_empty_ones_are_refused(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    copy_chorales(midi, 3)
    prepare(midi, tmp_path / "c", CorpusConfig(valid_fraction=0.0, test_fraction=0.0))
    result = train(Corpus.open(tmp_path / "c"), tmp_path / "run", TINY, fast(steps=4,
                   eval_every=2), device="cpu")
    assert result.step == 4 and load_checkpoint(tmp_path / "run" / "best").metrics[
        "split_used"] == "train"
    write_tune(tmp_path / "empty" / "silent.mid", [])  # loads nothing: no notes
    prepare(tmp_path / "empty", tmp_path / "e")
    with pytest.raises(TrainingError, match="no training data"):
        train(Corpus.open(tmp_path / "e"), tmp_path / "run2", TINY, fast(), device="cpu")

