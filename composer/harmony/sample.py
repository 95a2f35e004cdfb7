"""Writing voices with a harmonizer: annealed Gibbs-like resampling of the free cells.

The cells to write start hidden. Each pass hides a share of them (all at first, shrinking
to ``alpha_min`` over ``eta`` of the passes, Coconet's schedule), asks the model for every
hidden cell's distribution given all the others, and redraws them together; cells given
(the melody, or everything outside an infill span) never change. Each voice draws only
REST, HOLD and the pitches of its range; HOLD is refused at the first step and right after a
given cell, so a written note never lengthens a given one. A HOLD left after a REST is
silence. :func:`harmonize_grid` and :func:`infill_grid` set up the grid and the free cells.
"""

from __future__ import annotations

import numpy as np
import torch

from composer.harmony.config import HOLD, REST, HarmonyError, HarmonySampleConfig
from composer.harmony.grid import to_grid
from composer.harmony.model import HarmonyNet, allowed, masked_input
from composer.midi.parts import PART_DTYPE


def hidden_share(n: int, config: HarmonySampleConfig) -> float:
    """The share of the free cells pass ``n`` (0-based) hides."""
    span = config.alpha_max - config.alpha_min
    return max(config.alpha_min, config.alpha_max - n * span / (config.eta * config.passes))


def gibbs(model: HarmonyNet, grid: np.ndarray, free: np.ndarray, config: HarmonySampleConfig,
          num: int = 1, beats_per_bar: int | None = None) -> np.ndarray:
    """(num, V, T) grids: ``grid`` (V, T) with its ``free`` (V, T) cells written."""
    v, t = grid.shape
    if not free.any():
        raise HarmonyError("nothing to write: the span holds no free cell")
    seed = config.rng_seed if config.rng_seed is not None else int(
        np.random.SeedSequence().generate_state(1)[0])
    gen = torch.Generator().manual_seed(seed)
    fixed = torch.from_numpy(~free)  # (V, T)
    no_hold = torch.zeros(v, t, dtype=torch.bool)
    no_hold[:, 1:] = ~fixed[:, 1:] & fixed[:, :-1]
    ok = allowed(model.config, t, no_hold)  # (V, T, K)
    g = torch.from_numpy(grid).long().unsqueeze(0).repeat(num, 1, 1)  # (N, V, T)
    free_t = ~fixed
    model.eval()
    with torch.no_grad():
        for n in range(config.passes):
            share = hidden_share(n, config)
            hide = free_t & (torch.rand(num, v, t, generator=gen) < share)  # (N, V, T)
            if not hide.any():
                continue
            logits = model(masked_input(g, hide), beats_per_bar) / config.temperature
            logits = logits.masked_fill(~ok, float("-inf"))  # (N, V, T, K)
            probs = torch.softmax(logits[hide], dim=-1)  # (hidden, K)
            g[hide] = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    out = g.numpy()
    for s in range(1, t):  # a HOLD after silence is silence
        stray = (out[:, :, s] == HOLD) & (out[:, :, s - 1] == REST)
        out[:, :, s][stray] = REST
    return out


def harmonize_grid(melody: np.ndarray, voice: int, voices: int, steps_per_beat: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(grid (V, T), free (V, T)) for writing every voice but ``voice`` under ``melody``
    (PART_DTYPE); T covers the melody, rounded up to a whole beat."""
    steps = int(np.ceil(float(melody["end"].max()) - 1e-9)) * steps_per_beat
    empty = np.zeros(0, PART_DTYPE)
    grid = to_grid([melody if i == voice else empty for i in range(voices)], steps_per_beat,
                   steps)
    free = np.ones_like(grid, bool)
    free[voice] = False
    return grid, free


def infill_grid(parts: list[np.ndarray], start: float, end: float, voices: list[int],
                steps_per_beat: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid, free) for rewriting beats [start, end) of ``voices``: the cells of a note that
    is not wholly inside the span stay given (so it is kept exactly)."""
    steps = int(np.ceil(max(float(p["end"].max()) for p in parts if len(p)) - 1e-9))
    steps = max(steps, int(np.ceil(end))) * steps_per_beat
    grid = to_grid(parts, steps_per_beat, steps)
    free = np.zeros_like(grid, bool)
    a, b = round(start * steps_per_beat), round(end * steps_per_beat)
    for v in voices:
        free[v, a:b] = True
        notes = parts[v]
        across = (notes["start"] < end) & (notes["end"] > start) & (
            (notes["start"] < start) | (notes["end"] > end))
        for note in notes[across]:
            s = round(float(note["start"]) * steps_per_beat)
            e = round(float(note["end"]) * steps_per_beat)
            free[v, max(s, 0) : max(e, s + 1)] = False
    return grid, free


def inside(notes: np.ndarray, start: float, end: float) -> np.ndarray:
    """(n,) bool: the notes wholly inside beats [start, end) (the ones infill replaces)."""
    return (notes["start"] >= start) & (notes["end"] <= end)
