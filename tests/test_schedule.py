"""The wall-clock budget: schedule over the run's fraction, stopping at the budget, resume
keeping the accounting, the plan line and the progress words."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import copy_chorales

from composer.cli.main import main
from composer.cli.report import train_count, train_postfix
from composer.core.messages import ComposerError
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.model.checkpoint import load_checkpoint
from composer.model.config import ModelConfig
from composer.training import optim as schedule_mod
from composer.training.config import TrainConfig
from composer.training.loop import train
from composer.training.optim import Budget, lr_at
from composer.training.recipe import CPU_BUDGET_MINUTES, run_length

TINY = ModelConfig.preset("tiny")


class FakeClock:
    """time.monotonic stand-in: each call moves time on by ``tick`` seconds."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("budget")
    (root / "midi").mkdir()
    copy_chorales(root / "midi", 20)
    prepare(root / "midi", root / "cache", CorpusConfig(valid_fraction=0.2, test_fraction=0.1))
    return Corpus.open(root / "cache")


def small(**kw) -> TrainConfig:
    base = dict(batch_size=4, seq_len=16, eval_seq_len=64, eval_max_batches=2, log_every=5)
    return TrainConfig(**{**base, **kw})


def test_lr_warms_up_over_a_fraction_then_decays_to_the_floor():
    config = TrainConfig(steps=1000, lr=1.0, warmup=0.1, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-2)  # 0.001 of the run / 0.1
    assert lr_at(50, config) == pytest.approx(0.5)
    assert lr_at(100, config) == pytest.approx(1.0)
    assert lr_at(550, config) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_at(1000, config) == pytest.approx(0.1)
    # by time: the step count does not matter, the fraction does
    assert lr_at(3, config, fraction=0.55) == pytest.approx(lr_at(550, config))


def test_budget_fraction_is_time_or_steps_whichever_is_further(monkeypatch):
    monkeypatch.setattr(schedule_mod.time, "monotonic", FakeClock(6.0))
    budget = Budget(TrainConfig(minutes=1.0, steps=1000))  # 60 s
    assert budget.fraction(0) == pytest.approx(0.1)  # one tick: 6 s of 60
    assert budget.fraction(900) == pytest.approx(0.9)  # steps are further than time
    assert budget.seconds_left() == pytest.approx(60 - 18)
    # the steps will end the run first (900 of 1000 done in 24 s): left at that pace
    assert budget.seconds_left(900) == pytest.approx(24 * 100 / 900)
    assert Budget(TrainConfig(minutes=1.0), used_seconds=60.0).over(0)
    assert not Budget(TrainConfig(steps=10)).over(9) and Budget(TrainConfig(steps=10)).over(10)


def test_budgeted_run_stops_at_its_time_with_the_rate_decayed(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(schedule_mod.time, "monotonic", FakeClock(0.5))
    lines: list[str] = []
    infos: list[dict] = []
    result = train(corpus, tmp_path, TINY, small(minutes=0.5, steps=10**9, eval_minutes=0.1),
                   device="cpu", notify=lines.append,
                   progress=lambda step, total, info: infos.append(info))
    assert result.stopped == "done"
    # about 3 clock reads a step at 0.5 s each: a 30 s budget lasts tens of steps, not 10**9
    assert 5 <= result.step <= 40
    assert infos[-1]["lr"] < 0.2 * TrainConfig().lr  # decayed near the floor at the end
    assert infos[-1]["seconds_left"] < 3 and infos[-1]["budget_seconds"] == 30
    assert any(i["valid_loss"] is not None for i in infos)  # evaluations reach the bar
    assert len(lines) == 1 and "budget 0.5 min" in lines[0] and "2x32 LSTM" in lines[0]
    assert "files" in lines[0] and "evaluating every 6 s" in lines[0]
    latest = load_checkpoint(tmp_path / "latest", with_train_state=True)
    assert latest.train_state["progress"]["seconds_used"] >= 30
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["split"] == "valid" for r in records) >= 2


def test_resume_spends_what_is_left_of_the_budget(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(schedule_mod.time, "monotonic", FakeClock(0.5))
    config = small(minutes=0.5, steps=12, eval_minutes=10.0)
    first = train(corpus, tmp_path, TINY, config, device="cpu")
    assert first.step == 12  # the step cap came first
    used = load_checkpoint(tmp_path / "latest", with_train_state=True).train_state[
        "progress"]["seconds_used"]
    assert 0 < used < 30
    lines: list[str] = []
    again = train(corpus, tmp_path, None, small(minutes=0.5, steps=10**9), device="cpu",
                  resume=True, notify=lines.append)
    assert again.step > 12
    assert "left)" in lines[0]  # the plan says how much of the budget remains


def test_run_length_takes_one_of_steps_epochs_minutes_and_a_cpu_default():
    base = TrainConfig(batch_size=10, seq_len=10)
    assert run_length(base, steps=7, epochs=None, minutes=None, train_events=0,
                      device="cpu").steps == 7
    assert run_length(base, steps=None, epochs=2.0, minutes=None, train_events=500,
                      device="cpu").steps == 10
    timed = run_length(base, steps=None, epochs=None, minutes=4.0, train_events=0,
                       device="cpu")
    assert timed.minutes == 4.0 and timed.steps == 10**9
    default = run_length(base, steps=None, epochs=None, minutes=None, train_events=0,
                         device="cpu")
    assert default.minutes == CPU_BUDGET_MINUTES
    with pytest.raises(ComposerError, match="epochs must be a finite number"):
        run_length(base, steps=None, epochs=float("inf"), minutes=None, train_events=9,
                   device="cpu")
    with pytest.raises(ComposerError, match="give one of --steps, --minutes"):
        run_length(base, steps=3, epochs=None, minutes=1.0, train_events=0, device="cpu")


def test_progress_words_show_validation_and_time_left():
    info = {"loss": 2.5, "tokens_per_s": 1234.0, "valid_loss": 2.1, "best": 2.0,
            "seconds_left": 125.0, "budget_seconds": 600.0, "fraction": 0.25}
    assert train_count(40, 10**9, info) == ("s", 150, 600)
    words = train_postfix(40, info)
    assert "valid 2.100 (best 2.000)" in words and "2:05 left" in words
    assert train_count(40, 100, {**info, "budget_seconds": 0.0}) == ("step", 40, 100)
    assert train_count(40, 100, {**info, "fraction": 0.4}) == ("step", 40, 100)  # steps lead


def test_cli_minutes_trains_for_a_budget_and_prints_the_plan(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    copy_chorales(midi, 12)
    result = CliRunner().invoke(main, [
        "train", str(midi), "--out", str(tmp_path / "run"), "--preset", "tiny",
        "--minutes", "0.05", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Training a 2x32 LSTM" in result.output and "budget 0.05 min" in result.output
    again = CliRunner().invoke(main, [
        "train", str(midi), "--out", str(tmp_path / "run2"), "--preset", "tiny",
        "--minutes", "0.05", "--steps", "3", "--device", "cpu"])
    assert again.exit_code == 2 and "give one of --minutes / --steps" in again.output
