"""Training data: random windows over the memory-mapped token stream, with augmentation.

:class:`WindowSampler` draws batches of ``seq_len + 1`` consecutive tokens of one file
(input = ``[:, :-1]``, target = ``[:, 1:]``) straight from ``Corpus.tokens``; it never loads
the corpus into memory and never pads. Window starts are uniform over every position where a
whole window fits inside one file, so files are weighted by ``length - seq_len``; files
shorter than ``seq_len + 1`` tokens are left out (``skipped_files`` counts them).

Train windows can be augmented on the fly, as Magenta's Performance RNN does (transposition
by a few semitones and a small time stretch), by :mod:`composer.training.augment`, which works
on the token ids directly (no decode/encode) and is vectorised over the whole batch. A corpus in
the beat vocabulary is transposed (its PITCH ids shift) but never stretched: its time is
counted in beats, so a stretch would only move notes off the grid; tempo is not a token.

:func:`eval_batches` walks a split deterministically so that every token of every file
except the first (which has no context) is a target exactly once; padded targets are
``IGNORE_INDEX`` (the default ``ignore_index`` of ``torch.nn.functional.cross_entropy``).

Randomness: batch ``n`` of a sampler comes from its own numpy generator seeded with
``(seed, rank, n)``, so a run is reproducible from its seed, and the sampler's whole state
is the batch counter (see :meth:`WindowSampler.state_dict`).

**Controls** (:mod:`composer.controls.features`): given the per-token control array of the corpus,
the sampler returns each window's control vectors too, moved with the augmentation: a
transposed window's pitch-class histogram is rotated by the same k, a stretched window's
density is divided by its factor (each stretched token takes the controls of the raw token
at its un-stretched time), and each control of a window is unset (NaN) with the spec's
dropout probability. Drawing them takes nothing from the random stream of the tokens, so a
sampler's windows are the same with controls or without.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from composer.controls.features import (
    ControlSpec,
    drop_controls,
    rotate_pitch_classes,
    stretch_density,
)
from composer.core.messages import check_int, require
from composer.corpus.cache import Corpus
from composer.model.lstm import IGNORE_INDEX
from composer.training.augment import stretch_rows, transpose_range, transposed
from composer.training.config import AugmentConfig, DataError

_STREAM = 0xDA7A  # mixed into the sampler's seeds so they differ from other uses of `seed`
_SLACK = 8  # raw tokens read beyond what a stretched window needs (see _raw_len)


_require = functools.partial(require, error=DataError)


def _int(value: Any, name: str, low: int) -> int:
    return check_int(value, name, low, DataError)


class WindowSampler:
    """Endless random training batches of ``batch_size`` windows of ``seq_len + 1`` tokens.

    Windows come from the files of ``split`` long enough to hold one (others are skipped and
    counted in ``skipped_files``); a window never crosses a file boundary. Starts are uniform
    over all valid positions. With DDP, position g (numbered over the whole split) belongs to
    rank ``g % world_size`` only, so ranks draw disjoint sets of windows, each rank from its
    own random stream seeded by ``(seed, rank, batch number)``.

    ``augment`` (train only) transposes and stretches each window independently: a raw slice
    a little longer than the window is read (never past its file's end), stretched by
    ``augment_tokens``' rule and cropped to ``seq_len + 1`` tokens; if it comes out
    shorter (near a file's end with factor < 1), that window is left unstretched. The shift k
    is then drawn uniformly from ``[-transpose, transpose]`` intersected with the shifts that
    keep every pitch of that cropped window in range (0 is always allowed).

    Openings: a window starts from a cold state (zero LSTM state), and so does an unseeded
    piece; trained only on windows cut anywhere, the model's first draws from a cold state
    are those of any place in a piece (a stray note far from the piece's range, a random
    key). So a share ``openings`` of the windows start at their piece's first token, and a
    window that does not has its first ``burn_in`` targets left unscored: the model learns
    to predict from a cold state only at real openings. (Eleven parameters: the sampler
    takes the training config's window settings one by one, as eval batches share it.)
    """

    def __init__(
        self,
        corpus: Corpus,
        split: str,
        seq_len: int,
        batch_size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        controls: tuple[np.ndarray, ControlSpec] | None = None,
        openings: float = 0.0,
        burn_in: int = 0,
    ) -> None:
        self.controls = controls  # (N, C) per token of the corpus, and their layout
        self.openings, self.burn_in = float(openings), _int(burn_in, "burn_in", 0)
        self.seq_len = _int(seq_len, "seq_len", 1)
        self.batch_size = _int(batch_size, "batch_size", 1)
        self.seed = _int(seed, "seed", 0)
        self.world_size = _int(world_size, "world_size", 1)
        self.rank = _int(rank, "rank", 0)
        _require(self.rank < self.world_size, f"rank {rank} is not below world_size {world_size}")
        _require(
            augment is None or split == "train" or not augment.enabled,
            f"augmentation applies to the train split only, not {split!r}",
        )
        self.vocab = corpus.events.vocab
        self.vocab_steps = corpus.events.token_steps()  # (V,) steps each token advances
        if augment is not None and corpus.events.is_notes:  # time in beats: no stretch
            augment = replace(augment, stretch=0.0)
        self.augment = augment if augment is not None and augment.enabled else None
        self.split = split
        self._tokens = corpus.tokens  # (N,) uint16 memory map
        files = corpus.files(split)
        length = corpus.index["length"][files]
        long = length >= self.seq_len + 1
        self.n_files = int(long.sum())
        self.skipped_files = int((~long).sum())  # files too short to hold one window
        self._offset = corpus.index["offset"][files[long]]  # (F,) first token of each file
        self._end = self._offset + length[long]  # (F,) one past its last token
        counts = length[long] - self.seq_len  # (F,) window starts in each file
        self._cum = np.cumsum(counts)  # (F,) positions before the end of each file
        total = int(self._cum[-1]) if self.n_files else 0
        self.n_positions = max(0, (total - self.rank + self.world_size - 1) // self.world_size)
        _require(
            self.n_positions > 0,
            f"split {split!r} has no window of {self.seq_len + 1} tokens for rank {self.rank}"
            f" ({self.skipped_files} files are shorter)",
        )
        stretch = self.augment.stretch if self.augment else 0.0
        # Enough raw tokens that stretching by 1 - stretch still leaves a whole window.
        self._raw_len = math.ceil((self.seq_len + 1) / (1 - stretch)) + _SLACK * (stretch > 0)
        self.step = 0  # batches drawn so far; the whole mutable state

    def _draw(self, step: int
              ) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
        """Random generator of batch ``step`` after drawing its windows' starts, file ends
        and whether each starts mid-piece (a share ``openings`` of the windows moved to
        their file's start, drawn from a stream of their own so the rest of the batch is
        drawn as without)."""
        rng = np.random.default_rng([self.seed, self.rank, step, _STREAM])
        g = rng.integers(0, self.n_positions, self.batch_size) * self.world_size + self.rank
        f = np.searchsorted(self._cum, g, side="right")  # (B,) file of each window
        before = self._cum[f] - (self._end[f] - self._offset[f] - self.seq_len)
        start = self._offset[f] + (g - before)  # (B,)
        if self.openings > 0:
            own = np.random.default_rng([self.seed, self.rank, step, _STREAM, 2])
            start = np.where(own.random(self.batch_size) < self.openings, self._offset[f], start)
        return rng, start, self._end[f], start != self._offset[f]

    def window_starts(self, step: int | None = None) -> np.ndarray:
        """Positions in ``corpus.tokens`` (B,) of the windows of batch ``step`` (default: next)."""
        return self._draw(self.step if step is None else step)[1]

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """The next ``(inputs, targets)``: int64 tensors (B, T), targets = inputs shifted by
        one; with controls, ``(inputs, targets, controls)``, controls float32 (B, T, C)."""
        rng, start, end, cold = self._draw(self.step)
        width = self.seq_len + 1
        aug = self.augment
        src = start[:, None] + np.arange(width)  # (B, T+1) where each token's controls are
        f = np.ones(self.batch_size)  # (B,) stretch of each window
        if aug and aug.stretch > 0:
            idx = start[:, None] + np.arange(self._raw_len)  # (B, R)
            raw = self._tokens[np.minimum(idx, end[:, None] - 1)].astype(np.int64)  # (B, R)
            f = rng.uniform(1 - aug.stretch, 1 + aug.stretch, self.batch_size)  # (B,)
            n = np.minimum(end - start, self._raw_len)  # (B,) raw tokens inside the file
            flat, lengths = stretch_rows(raw, n, f, self.vocab)
            at = np.cumsum(lengths) - lengths  # (B,) where each stretched row begins in flat
            take = np.minimum(at[:, None] + np.arange(width), flat.size - 1)  # (B, T+1)
            whole = (lengths >= width)[:, None]
            windows = np.where(whole, flat[take], raw[:, :width])  # (B, T+1)
            if self.controls is not None:
                f = np.where(whole[:, 0], f, 1.0)
                src = start[:, None] + self._source(raw, n, windows, f)
        else:
            idx = start[:, None] + np.arange(width)  # (B, T+1)
            windows = self._tokens[idx].astype(np.int64)
        if aug and aug.transpose > 0:
            lo, hi = transpose_range(windows, self.vocab)  # (B,), (B,)
            k = rng.integers(np.maximum(lo, -aug.transpose), np.minimum(hi, aug.transpose) + 1)
            windows = transposed(windows, k[:, None], self.vocab)
        self.step += 1
        batch = torch.from_numpy(windows)  # (B, T+1)
        x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
        if self.burn_in:
            y[torch.from_numpy(cold), : self.burn_in] = IGNORE_INDEX  # (B, T)
        if self.controls is None:
            return x, y
        table, spec = self.controls
        c = table[src[:, :-1]].astype(np.float32)  # (B, T, C)
        c = stretch_density(c, f, spec) if (f != 1).any() else c
        if aug and aug.transpose > 0:
            c = rotate_pitch_classes(c, k, spec)
        c = drop_controls(c, np.random.default_rng([self.seed, self.rank, self.step - 1,
                                                    _STREAM, 1]), spec)
        return x, y, torch.from_numpy(c)

    def _source(self, raw: np.ndarray, n: np.ndarray, windows: np.ndarray, f: np.ndarray
                ) -> np.ndarray:
        """(B, T+1): for each token of the stretched ``windows``, the index in its raw row
        (``raw`` (B, R), ``n`` (B,) of them real) of the last token at or before its
        un-stretched time."""
        steps = self.vocab_steps
        raw_t = np.cumsum(steps[raw], axis=1)  # (B, R)
        back = (np.cumsum(steps[windows], axis=1) + 0.5) / f[:, None]  # (B, T+1) raw time
        off = (np.arange(len(raw)) * (raw_t.max() + back.max() + 2))[:, None]  # rows apart
        pos = np.searchsorted((raw_t + off).ravel(), (back + off).ravel(), "right")
        pos = pos.reshape(back.shape) - 1 - np.arange(len(raw))[:, None] * raw.shape[1]
        return np.clip(pos, 0, n[:, None] - 1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, int]:
        """Checkpointable state (plain ints, safe for ``torch.load(weights_only=True)``)."""
        return {
            "step": self.step,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next batches are exactly those that would follow.

        The settings that shape the stream must match this sampler's, or DataError is raised.
        """
        mine = self.state_dict()
        _require(set(state) == set(mine), f"sampler state needs keys {sorted(mine)}")
        differ = [f"{k} {int(state[k])} != {v}" for k, v in mine.items()
                  if k != "step" and int(state[k]) != v]
        _require(not differ, f"sampler state is for other settings: {', '.join(differ)}")
        self.step = _int(int(state["step"]), "step", 0)


def eval_batches(
    corpus: Corpus,
    split: str,
    seq_len: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    controls: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Deterministic ``(inputs, targets)`` batches (int64, (B, T)) covering a whole split.

    Each file is cut into windows of ``seq_len + 1`` tokens that overlap by one token, so
    every token but a file's first is a target exactly once. A file's last window may be
    short: its padding has input 0 and target ``IGNORE_INDEX`` (after the real tokens, so a
    causal model's real predictions are unaffected). Windows go file by file in index order,
    ``batch_size`` per batch (the last batch may be smaller); with DDP, rank r gets batches
    r, r + world_size, ... No augmentation. With ``controls`` (N, C), the corpus's control
    array, each batch also holds the inputs' controls (B, T, C) float32, none unset.
    """
    seq_len, batch_size = _int(seq_len, "seq_len", 1), _int(batch_size, "batch_size", 1)
    world_size = _int(world_size, "world_size", 1)
    rank = _int(rank, "rank", 0)
    _require(rank < world_size, f"rank {rank} is not below world_size {world_size}")
    files = corpus.files(split)
    offset, length = corpus.index["offset"][files], corpus.index["length"][files]
    n_win = -(-np.maximum(length - 1, 0) // seq_len)  # (F,) windows per file: ceil
    file_of = np.repeat(np.arange(len(files)), n_win)  # (W,) per window
    within = np.arange(file_of.size) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # (W,)
    start = offset[file_of] + within * seq_len  # (W,)
    end = np.minimum(start + seq_len + 1, offset[file_of] + length[file_of])  # (W,)
    for first in range(rank * batch_size, start.size, world_size * batch_size):
        s, e = start[first : first + batch_size, None], end[first : first + batch_size, None]
        idx = s + np.arange(seq_len + 1)  # (B, T+1)
        inside = idx < e
        w = corpus.tokens[np.minimum(idx, e - 1)].astype(np.int64)  # (B, T+1)
        inputs = np.where(inside, w, 0)[:, :-1]
        targets = np.where(inside, w, IGNORE_INDEX)[:, 1:]
        batch = torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(
            np.ascontiguousarray(targets)
        )
        if controls is not None:
            c = controls[np.minimum(idx, e - 1)[:, :-1]].astype(np.float32)  # (B, T, C)
            batch = (*batch, torch.from_numpy(c))
        yield batch
