"""Tests of composer.model.recall: the mix scores what it says, generation draws from exactly
the distribution that scoring gives the drawn events (seed included, on every path, past
the span), fitting picks the best of its grid and is recorded by training, and
``--no-recall`` is the model alone."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import small_corpus

from composer.cli.main import main
from composer.controls.features import ControlSpec
from composer.controls.plan import make_plan
from composer.corpus.cache import Corpus
from composer.evaluation.likelihood import evaluate_model
from composer.generation.config import SampleConfig
from composer.generation.loop import generate
from composer.model.checkpoint import load_checkpoint, read_info, save_checkpoint, set_recall
from composer.model.config import RECALL_SHARES, RECALL_SHARPNESS, ModelConfig, RecallConfig
from composer.model.lstm import IGNORE_INDEX, ComposerLSTM
from composer.model.recall import fit_recall, target_log_probs, unit
from composer.tokens.performance import EventConfig, Vocabulary
from composer.training.config import TrainConfig
from composer.training.data import eval_batches
from composer.training.loop import train

EC = EventConfig()
V = Vocabulary(EC).size
RECALL = RecallConfig(sharpness=25.0, share=0.35, span=2048)  # off the fitting grid
TINY = ModelConfig.preset("tiny", vocab_size=V)
FAST = TrainConfig(steps=10, batch_size=8, seq_len=32, eval_seq_len=64, eval_every=5,
                   warmup_steps=2, eval_max_batches=2, log_every=5)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(recall: RecallConfig = RECALL, seed: int = 0) -> ComposerLSTM:
    torch.manual_seed(seed)
    model = ComposerLSTM(replace(TINY, recall=recall)).eval()
    with torch.no_grad():
        model.head.weight.mul_(3.0)  # peakier distributions
    return model


def brute_force(logits, hidden, targets, recall):
    """log p(target) by the formula, one position and one earlier moment at a time."""
    out = torch.zeros(targets.shape, dtype=torch.float64)
    p_model = torch.softmax(logits.double(), -1)
    keys = unit(hidden.double())
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            y = int(targets[b, t])
            if y == IGNORE_INDEX:
                continue
            before = [i for i in range(max(0, t - recall.span), t - recall.gap + 1)
                      if targets[b, i] != IGNORE_INDEX]
            p = float(p_model[b, t, y])
            if before:
                scores = torch.tensor([recall.sharpness * float(keys[b, t] @ keys[b, i])
                                       for i in before], dtype=torch.float64)
                w = torch.softmax(scores, 0)
                hit = sum(float(w[j]) for j, i in enumerate(before) if targets[b, i] == y)
                p = (1 - recall.share) * p + recall.share * hit
            out[b, t] = math.log(p)
    return out


@pytest.mark.parametrize("span, gap", [(2048, 1), (5, 1), (2048, 3), (6, 4)])
def test_target_log_probs_is_the_formula(span, gap):
    torch.manual_seed(1)
    logits, hidden = torch.randn(2, 12, 7), torch.randn(2, 12, 4)
    targets = torch.randint(0, 3, (2, 12))  # few events: many recalled hits
    targets[1, 9:] = IGNORE_INDEX  # padding: never scored, never recalled
    recall = replace(RECALL, span=span, gap=gap)
    got = target_log_probs(logits, hidden, targets, recall)
    want = brute_force(logits, hidden, targets, recall)
    real = targets != IGNORE_INDEX
    assert torch.allclose(got[real].double(), want[real], atol=1e-5)
    off = target_log_probs(logits, hidden, targets, RecallConfig())  # share 0: the model alone
    alone = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    assert torch.allclose(off[real], alone[real], atol=1e-5)


@pytest.mark.parametrize("engine", ["plain", "fused", "int8"])
@pytest.mark.parametrize("seed_len", [1, 5, 40])
def test_generation_draws_from_the_scored_mix(engine, seed_len):
    """Every drawn event's log-probability at draw time is what scoring the whole row gives
    it, so the seed's moments, the order of mix and add, the moments too recent to recall,
    and the short (stepped) and long (one forward) seed paths all agree; with a span of 24,
    the ring buffer past it too."""
    for recall in (RECALL, replace(RECALL, span=24), replace(RECALL, span=24, gap=1),
                   replace(RECALL, span=16, gap=3)):
        model = tiny(recall)
        seed = np.random.default_rng(0).integers(0, V, seed_len)
        gen = generate(model, EC, seed, 3, SampleConfig(events=48), rng_seed=2, engine=engine,
                       keep_logits=True)
        rows = torch.as_tensor(np.stack(gen.tokens))  # (3, seed + 48)
        drawn = rows[:, seed_len:]  # (3, 48)
        at_draw = gen.logits[:, :48].log_softmax(-1).gather(-1, drawn[..., None])[..., 0]
        with torch.no_grad():
            hidden, _ = model.features(rows[:, :-1])
            scored = target_log_probs(model.head(hidden), hidden, rows[:, 1:], recall)
        tol = 0.05 if engine == "int8" else 1e-4
        assert torch.allclose(at_draw, scored[:, seed_len - 1:], atol=tol)


def test_no_recall_is_the_model_alone():
    on, off = tiny(RECALL), tiny(RecallConfig())
    seed = np.arange(30) % V
    a = generate(on, EC, seed, 2, SampleConfig(events=64, recall=False), rng_seed=3)
    b = generate(off, EC, seed, 2, SampleConfig(events=64), rng_seed=3)
    c = generate(on, EC, seed, 2, SampleConfig(events=64), rng_seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.tokens, c.tokens, strict=True))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, one_thread) -> Corpus:
    return small_corpus(tmp_path_factory.mktemp("recall"))


def test_fit_picks_the_best_of_its_grid(corpus):
    model = tiny(RecallConfig())
    batches = list(eval_batches(corpus, "valid", 64, 8))
    recall, alone, mixed = fit_recall(model, iter(batches), span=64)

    def loss(r: RecallConfig) -> float:
        total = events = 0
        with torch.no_grad():
            for x, y in batches:
                hidden, _ = model.features(x)
                lp = target_log_probs(model.head(hidden), hidden, y, r)
                total -= float(lp[y != IGNORE_INDEX].sum())
                events += int((y != IGNORE_INDEX).sum())
        return total / events

    assert alone == pytest.approx(loss(RecallConfig()), rel=1e-5)
    grid = {(s, q): loss(RecallConfig(s, q, 64)) for s in RECALL_SHARPNESS for q in RECALL_SHARES}
    best = min(grid, key=grid.get)
    assert recall.on and (recall.sharpness, recall.share) == best  # chorales repeat themselves
    assert mixed == pytest.approx(grid[best], rel=1e-5) and mixed < alone


def test_training_fits_and_records_recall_and_evaluate_reports_both(corpus, tmp_path):
    out = tmp_path / "run"
    result = train(corpus, out, TINY, FAST, device="cpu")
    for name in ("best", "latest"):
        meta = read_info(out / name)
        assert RecallConfig.from_dict(meta["model"].get("recall", {})) == result.recall
        assert ("recall_loss" in meta["metrics"]) == result.recall.on
    ckpt = load_checkpoint(out / "best")
    assert ckpt.model_config.recall == result.recall
    # a recall that helps, recorded by hand: evaluate scores with it and the model alone
    set_recall(out / "best", RECALL, 1.0)
    r = evaluate_model(out / "best", corpus, "valid", device="cpu")
    assert set(r["models"]) == {"LSTM", "LSTM alone", "5-gram KN", "unigram"}
    assert r["models"]["LSTM"]["loss"] != r["models"]["LSTM alone"]["loss"]
    assert r["models"]["LSTM"]["events"] == r["models"]["LSTM alone"]["events"]
    set_recall(out / "best", RecallConfig(), math.nan)  # off: saved as before recall existed
    meta = json.loads((out / "best" / "checkpoint.json").read_text())
    assert "recall" not in meta["model"] and "recall_loss" not in meta["metrics"]


def test_a_fine_tune_refits_its_recall(corpus, tmp_path):
    base = tmp_path / "base"
    save_checkpoint(base, tiny(RECALL), replace(TINY, recall=RECALL), EC.to_dict(),
                    train_config={}, step=0, metrics={}, data={})
    out = tmp_path / "tune"
    longer = replace(FAST, steps=4, eval_every=2)
    train(corpus, out, None, longer, device="cpu", init_from=base)
    assert load_checkpoint(out / "latest").model_config.recall != RECALL  # refitted


def test_info_and_generate_say_and_obey_recall(tmp_path):
    path = tmp_path / "m"
    model = tiny(RECALL)
    save_checkpoint(path, model, model.config, EC.to_dict(), train_config={}, step=1,
                    metrics={"loss": 2.0, "recall_loss": 1.5}, data={})
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.exit_code == 0 and "recall       share 0.35, sharpness 25" in r.output, r.output
    assert "valid loss   2.0000" in r.output and "not evaluated" not in r.output
    alone = tmp_path / "alone"
    save_checkpoint(alone, tiny(RecallConfig()), TINY, EC.to_dict(), train_config={}, step=1,
                    metrics={"loss": 2.0}, data={})
    r = CliRunner().invoke(main, ["info", str(alone)])
    assert r.exit_code == 0 and "recall" not in r.output and "not evaluated" not in r.output
    for flag in ("--recall", "--no-recall"):
        r = CliRunner().invoke(main, ["generate", "--checkpoint", str(path), "--events", "20",
                                      "--out", str(tmp_path / flag), "-q", "--rng-seed", "0",
                                      flag])
        assert r.exit_code == 0, r.output


def test_a_density_plan_turns_recall_off_and_a_key_keeps_it():
    """Recall holds a piece to itself, a density plan changes it: asked a density, the rows
    draw as the model alone; asked a key, recall stays."""
    spec = ControlSpec(("density", "pitch-classes"))
    torch.manual_seed(0)
    model = ComposerLSTM(replace(TINY, controls=spec, recall=RECALL)).eval()
    seed = np.arange(30) % V

    def rows(plan, **sample):
        gen = generate(model, EC, seed, 2, SampleConfig(events=64, **sample), rng_seed=4,
                       plan=plan)
        return np.stack(gen.tokens)

    density, key = make_plan(spec, {"density": 3.0}), make_plan(spec, {"key": "D minor"})
    assert np.array_equal(rows(density), rows(density, recall=False))
    assert not np.array_equal(rows(key), rows(key, recall=False))
