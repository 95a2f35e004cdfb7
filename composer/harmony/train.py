"""Training a harmonizer: guess hidden cells of the grid from everything around them.

Each training crop hides cells by one of three masks, drawn with equal odds (Coconet trains
on random cell masks, DeepBach on whole voices, and infill needs spans):

- *cells*: every cell hidden with probability u, u uniform in (0, 1) per crop;
- *voices*: a random non-empty proper subset of the voices hidden at every step (the
  harmonize case: the others given);
- *span*: a random stretch of up to half the crop hidden in a random non-empty subset of the
  voices (the infill case).

The loss is the cross-entropy of the hidden cells' tokens, averaged over the hidden cells
(padding never counts). Adam, a cosine learning rate over the wall-clock budget, gradients
clipped at 1; the validation loss (fixed crops and masks) is checked every ``eval_every``
updates and the best model is written atomically (:func:`composer.harmony.store.save_harmonizer`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from composer.harmony.config import (
    PITCH0,
    REST,
    HarmonyError,
    HarmonyModelConfig,
    HarmonyTrainConfig,
)
from composer.harmony.corpus import GridCorpus, GridPiece
from composer.harmony.model import HarmonyNet, masked_input
from composer.harmony.store import count_parameters, save_harmonizer

PAD = -1  # target of padding cells (ignored by the loss)


@dataclass
class Batch:
    """Crops of pieces: tokens (B, V, T), targets (B, V, T) with PAD, hidden cells (B, V, T)."""

    grid: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    beats_per_bar: int


def draw_mask(rng: np.random.Generator, voices: int, steps: int) -> np.ndarray:
    """(V, T) bool: one of the three masks of the module docstring."""
    kind = rng.integers(3)
    if kind == 0:
        return rng.random((voices, steps)) < rng.uniform(0.05, 1.0)
    chosen = np.zeros(voices, bool)
    while not chosen.any() or (kind == 1 and chosen.all()):
        chosen = rng.random(voices) < 0.5
    mask = np.zeros((voices, steps), bool)
    if kind == 1:
        mask[chosen] = True
    else:
        width = int(rng.integers(1, max(2, steps // 2)))
        start = int(rng.integers(0, max(1, steps - width)))
        mask[chosen, start : start + width] = True
    return mask


def transposed(grid: np.ndarray, shift: int) -> np.ndarray:
    """``grid`` with every pitch moved by ``shift`` semitones (kept within MIDI)."""
    pitched = grid >= PITCH0
    out = grid.copy()
    out[pitched] = np.clip(grid[pitched] + shift, PITCH0, PITCH0 + 127)
    return out


def make_batch(pieces: Sequence[GridPiece], rng: np.random.Generator, size: int, steps: int,
               transpose: int, steps_per_beat: int) -> Batch:
    """``size`` random crops of ``steps`` steps from ``pieces`` (padded with REST), each
    transposed by up to ``transpose`` semitones, with a drawn mask. Crops start on a beat."""
    v = pieces[0].grid.shape[0]
    grid = np.full((size, v, steps), REST, np.int64)
    target = np.full((size, v, steps), PAD, np.int64)
    mask = np.zeros((size, v, steps), bool)
    bars = []
    for i in range(size):
        piece = pieces[int(rng.integers(len(pieces)))]
        length = piece.grid.shape[1]
        start = int(rng.integers(0, max(1, length - steps + 1)))
        start -= start % (steps_per_beat * piece.beats_per_bar) if rng.random() < 0.5 else 0
        crop = piece.grid[:, start : start + steps]
        if transpose:
            crop = transposed(crop, int(rng.integers(-transpose, transpose + 1)))
        n = crop.shape[1]
        grid[i, :, :n], target[i, :, :n] = crop, crop
        mask[i, :, :n] = draw_mask(rng, v, n)
        bars.append(piece.beats_per_bar)
    # one bar length per batch: the most common of its crops
    bar = max(set(bars), key=bars.count)
    return Batch(torch.from_numpy(grid), torch.from_numpy(target), torch.from_numpy(mask), bar)


def masked_loss(model: HarmonyNet, batch: Batch) -> tuple[torch.Tensor, int]:
    """(mean cross-entropy of the hidden cells, how many there were)."""
    logits = model(masked_input(batch.grid, batch.mask), batch.beats_per_bar)  # (B, V, T, K)
    hidden = batch.mask & (batch.target != PAD)  # (B, V, T)
    count = int(hidden.sum())
    if count == 0:
        return logits.sum() * 0.0, 0
    return F.cross_entropy(logits[hidden], batch.target[hidden]), count


def evaluate(model: HarmonyNet, batches: Sequence[Batch]) -> float:
    """Mean cross-entropy per hidden cell over fixed ``batches`` (eval mode)."""
    was = model.training
    model.eval()
    total, cells = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            loss, count = masked_loss(model, batch)
            total, cells = total + float(loss) * count, cells + count
    model.train(was)
    return total / max(cells, 1)


def train_harmonizer(corpus: GridCorpus, out: str, model_config: HarmonyModelConfig,
                     config: HarmonyTrainConfig = HarmonyTrainConfig(),
                     log: Callable[[str], None] = print) -> dict:
    """Train a harmonizer on ``corpus``'s train split, keep the best by validation loss in
    the folder ``out``; returns the final metrics."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    train, valid = corpus.splits["train"], corpus.splits["valid"] or corpus.splits["train"]
    if len(corpus.voices) != len(model_config.voices):
        raise HarmonyError("the model's voices do not match the corpus's")
    steps = config.window_beats * model_config.steps_per_beat
    vrng = np.random.default_rng(12345)
    valid_batches = [make_batch(valid, vrng, config.batch_size, steps, 0,
                                    model_config.steps_per_beat) for _ in range(8)]
    model = HarmonyNet(model_config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    budget, start = config.minutes * 60, time.perf_counter()
    best, step, metrics = math.inf, 0, {}
    run = {**config.to_dict(), "parameters": count_parameters(model)}
    data = {"train_pieces": len(train), "valid_pieces": len(corpus.splits["valid"]),
            "test_pieces": len(corpus.splits["test"]), "voices": list(corpus.voices),
            "split": "composer.corpus.cache.split_of(content hash), default fractions"}
    log(f"harmonizer: {run['parameters']:,} weights, {len(train)} train pieces, "
        f"{len(corpus.splits['valid'])} valid, {len(corpus.splits['test'])} test held out")
    running = 0.0
    while True:
        elapsed = time.perf_counter() - start
        done = elapsed >= budget or (config.steps and step >= config.steps)
        if step and (step % config.eval_every == 0 or done):
            loss = evaluate(model, valid_batches)
            if loss < best:
                best = loss
                metrics = {"valid_loss": round(loss, 4), "step": step,
                           "minutes": round(elapsed / 60, 2)}
                save_harmonizer(out, model, train=run, metrics=metrics, data=data)
            log(f"step {step} train {running:.3f} valid {loss:.3f} best {best:.3f} "
                f"{elapsed / 60:.1f} min")
        if done:
            return metrics
        frac = min(elapsed / budget, 1.0)
        for group in opt.param_groups:
            group["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        batch = make_batch(train, rng, config.batch_size, steps, config.transpose,
                           model_config.steps_per_beat)
        loss, _ = masked_loss(model, batch)
        if not torch.isfinite(loss):
            raise HarmonyError(f"training diverged at step {step} (loss {float(loss)})")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step else value
        step += 1
