"""Truncated backpropagation through time (``TrainConfig.carry_state``): each batch row reads
whole pieces, window after window, and the LSTM state is carried from one window to the next.

Row b of a batch reads one piece at a time from its first token, ``seq_len`` targets per
batch (consecutive windows overlap by the one token that is both a target and the next
input). The training loop carries the LSTM state (detached: gradients stop at the window's
start) from one batch to the next and zeroes a row's state where it starts a new piece
(``fresh``). A piece's last window is padded (input 0, target ``IGNORE_INDEX``), so pieces
shorter than a window are read too. Each visit of a piece draws one transposition (within
the shifts that keep the whole piece in range) and the controls move with it; there is no
time stretch (a stretched piece would be re-encoded whole; the beat vocabulary is never
stretched anyway).

Why: windows cut anywhere and started from a zero state (:class:`~composer.training.data.
WindowSampler`) teach the model to predict from at most a window of context, while it
generates and is scored with its state carried over thousands of events: it never learns to
hold a key, a texture or a tune's phrase longer than a window. Read in order with the state
carried, every target has everything before it in its piece as context, as when generating.

Randomness: a row's next piece and its transposition come from a generator seeded with
``(seed, rank, row, visit number)``; the state is each row's piece, position, transposition
and visit count (plain ints, :meth:`StreamSampler.state_dict`); the loop saves the carried
LSTM state beside it. With DDP, rank r reads the files r, r + world_size, ... of the split.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from composer.controls.features import ControlSpec, drop_controls, rotate_pitch_classes
from composer.core.messages import check_int, require
from composer.corpus.cache import Corpus
from composer.model.lstm import IGNORE_INDEX
from composer.training.augment import transpose_range, transposed
from composer.training.config import AugmentConfig, DataError

_STREAM = 0x57EA  # mixed into the seeds so they differ from other uses of `seed`

_require = functools.partial(require, error=DataError)


class StreamSampler:
    """Endless batches ``(inputs, targets[, controls], fresh)`` of ``batch_size`` rows of
    ``seq_len`` tokens, each row reading its current piece on (see the module docstring)."""

    def __init__(self, corpus: Corpus, split: str, seq_len: int, batch_size: int,
                 augment: AugmentConfig | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1,
                 controls: tuple[np.ndarray, ControlSpec] | None = None) -> None:
        self.seq_len = check_int(seq_len, "seq_len", 1, DataError)
        self.batch_size = check_int(batch_size, "batch_size", 1, DataError)
        self.seed = check_int(seed, "seed", 0, DataError)
        self.rank, self.world_size = rank, world_size
        self.transpose = augment.transpose if augment is not None else 0
        self.controls = controls  # (N, C) per token of the corpus, and their layout
        self.vocab = corpus.events.vocab
        self._tokens = corpus.tokens  # (N,) uint16 memory map
        files = corpus.files(split)
        length = corpus.index["length"][files]
        files = files[length >= 2][rank::world_size]
        _require(len(files) > 0, f"split {split!r} has no piece of 2 tokens or more for "
                                 f"rank {rank}")
        self._offset = corpus.index["offset"][files]  # (F,)
        self._end = self._offset + corpus.index["length"][files]  # (F,)
        B = self.batch_size
        self.piece = np.zeros(B, np.int64)  # (B,) each row's piece (index into the files)
        self.pos = np.zeros(B, np.int64)  # (B,) its next window's first token
        self.shift = np.zeros(B, np.int64)  # (B,) its transposition
        self.visits = np.zeros(B, np.int64)  # (B,) pieces it has begun
        self.step = 0
        for b in range(B):
            self._enter(b)

    def _enter(self, b: int) -> None:
        """Row ``b`` begins its next piece (drawn uniformly) and that visit's transposition."""
        rng = np.random.default_rng([self.seed, self.rank, b, int(self.visits[b]), _STREAM])
        i = int(rng.integers(len(self._offset)))
        self.piece[b], self.pos[b], self.visits[b] = i, self._offset[i], self.visits[b] + 1
        self.shift[b] = 0
        if self.transpose > 0:
            whole = np.asarray(self._tokens[self._offset[i] : self._end[i]], np.int64)
            lo, hi = (int(v) for v in transpose_range(whole, self.vocab))
            self.shift[b] = rng.integers(max(lo, -self.transpose), min(hi, self.transpose) + 1)

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """The next ``(inputs, targets)`` int64 (B, T), with controls float32 (B, T, C) when
        the sampler has them, and ``fresh`` (B,) bool: the rows starting a piece."""
        end = self._end[self.piece]  # (B,)
        idx = self.pos[:, None] + np.arange(self.seq_len + 1)  # (B, T+1)
        inside = idx < end[:, None]
        at = np.minimum(idx, end[:, None] - 1)  # (B, T+1)
        windows = transposed(self._tokens[at].astype(np.int64), self.shift[:, None], self.vocab)
        x = torch.from_numpy(np.where(inside, windows, 0)[:, :-1].copy())
        y = torch.from_numpy(np.where(inside, windows, IGNORE_INDEX)[:, 1:].copy())
        fresh = torch.from_numpy(self.pos == self._offset[self.piece])  # (B,)
        batch: tuple[torch.Tensor, ...] = (x, y)
        if self.controls is not None:
            table, spec = self.controls
            c = rotate_pitch_classes(table[at[:, :-1]].astype(np.float32), self.shift, spec)
            c = drop_controls(c, np.random.default_rng(
                [self.seed, self.rank, self.step, _STREAM, 1]), spec)  # (B, T, C)
            batch = (*batch, torch.from_numpy(c))
        self.pos += self.seq_len
        for b in np.flatnonzero(self.pos + 1 >= end):  # no target left: the next piece
            self._enter(int(b))
        self.step += 1
        return (*batch, fresh)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state (plain ints and lists of ints)."""
        return {"kind": "streams", "step": self.step, "seed": self.seed,
                "seq_len": self.seq_len, "batch_size": self.batch_size,
                "rank": self.rank, "world_size": self.world_size,
                "piece": self.piece.tolist(), "pos": self.pos.tolist(),
                "shift": self.shift.tolist(), "visits": self.visits.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next batches are exactly those that would
        follow (DataError when it is another sampler's, or other settings')."""
        mine = self.state_dict()
        _require(set(state) == set(mine), "the sampler state is not a stream sampler's "
                                          "(was the run trained with --carry-state?)")
        differ = [k for k in ("seed", "seq_len", "batch_size", "rank", "world_size")
                  if int(state[k]) != mine[k]]
        _require(not differ, f"sampler state is for other settings: {', '.join(differ)}")
        self.step = int(state["step"])
        for name in ("piece", "pos", "shift", "visits"):
            getattr(self, name)[:] = np.asarray(state[name], np.int64)


def carry(state: tuple[torch.Tensor, ...] | None, fresh: torch.Tensor
          ) -> tuple[torch.Tensor, ...] | None:
    """The LSTM state ``(h, c)`` (layers, B, H) carried into the next window: detached, and
    zero in the rows that start a new piece (``fresh`` (B,) bool)."""
    if state is None:
        return None
    keep = (~fresh).to(state[0].dtype)[None, :, None]  # (1, B, 1)
    return tuple(s.detach() * keep for s in state)
