"""Token-level augmentation, vectorised over rows of token ids (no decode / encode):
transposition (NOTE_ON / NOTE_OFF ids, PITCH in the beat vocabulary, shift by k) and time
stretch (the TIME_SHIFTs between events rewritten), as Magenta's Performance RNN augments.
The training samplers (:mod:`composer.training.data`, :mod:`composer.training.streams`) apply
them to each window or piece they draw; :func:`augment_tokens` does one sequence."""

from __future__ import annotations

import functools
import math
import operator

import numpy as np

from composer.core.messages import require
from composer.tokens.beats import PITCH, NoteVocabulary
from composer.tokens.performance import NOTE_OFF, NOTE_ON, TIME_SHIFT, Vocabulary, shift_tokens
from composer.tokens.vocab import VocabularyError
from composer.training.config import DataError

_require = functools.partial(require, error=DataError)


def _is_note(ids: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the ids that carry a pitch (NOTE_ON / NOTE_OFF; PITCH in the beat
    vocabulary) and their pitch index 0..n_pitches-1 (junk elsewhere)."""
    kinds = (PITCH,) if isinstance(vocab, NoteVocabulary) else (NOTE_ON, NOTE_OFF)
    note, index = np.zeros(ids.shape, bool), ids
    for kind in kinds:
        r = vocab.ranges[kind]
        inside = (ids >= r.start) & (ids < r.stop)
        note, index = note | inside, np.where(inside, ids - r.start, index)
    return note, index


def transpose_range(tokens: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest shift k that keeps every NOTE_ON/OFF pitch of a row in range.

    Works along the last axis of ``tokens`` (..., T) and returns two int64 arrays (...).
    The range always holds 0; it is clipped to +-(n_pitches - 1), the widest that can matter
    (a row without notes gets exactly that).
    """
    ids = np.asarray(tokens, dtype=np.int64)
    top = vocab.config.n_pitches - 1
    note, index = _is_note(ids, vocab)
    lo = np.where(note, index, top).min(axis=-1, initial=top)  # (...,) lowest pitch index
    hi = np.where(note, index, 0).max(axis=-1, initial=0)  # (...,) highest pitch index
    return -lo, top - hi


def transposed(ids: np.ndarray, k: np.ndarray | int, vocab: Vocabulary) -> np.ndarray:
    """``ids`` (..., T) with k (broadcast to ids) added to every NOTE_ON/OFF id; k allowed."""
    note, _ = _is_note(ids, vocab)
    return ids + np.where(note, k, 0)


def stretch_rows(
    ids: np.ndarray, lengths: np.ndarray, factor: np.ndarray, vocab: Vocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """Time-stretch each row of ``ids`` (B, R) int64; row b holds ``lengths[b]`` tokens.

    Every non-shift token keeps its order; if it sat at step t (the TIME_SHIFT sum from the
    row's start) it moves to ``rint(t * factor[b])``, as does the row's end. Each new gap is
    re-expressed as full TIME_SHIFTs then the remainder (as ``events.encode`` does). Returns
    the stretched rows concatenated (int64) and their lengths (B,).
    """
    b, r = ids.shape
    shifts = vocab.ranges[TIME_SHIFT]
    valid = np.arange(r) < lengths[:, None]  # (B, R)
    is_shift = (ids >= shifts.start) & (ids < shifts.stop)
    steps = np.where(is_shift & valid, ids - (shifts.start - 1), 0)  # (B, R)
    time = np.rint(np.cumsum(steps, axis=1) * factor[:, None]).astype(np.int64)  # (B, R)
    # Events, plus one end marker per row (token -1) so a trailing gap is kept.
    keep = np.concatenate([valid & ~is_shift, np.ones((b, 1), bool)], axis=1)  # (B, R+1)
    tok = np.concatenate([ids, np.full((b, 1), -1)], axis=1)
    time = np.concatenate([time, time[:, -1:]], axis=1)
    row, col = np.nonzero(keep)  # row-major: events of row 0 in order, then row 1, ...
    tok, t = tok[row, col], time[row, col]  # (E,)
    first = np.r_[True, row[1:] != row[:-1]]
    gap = t - np.where(first, 0, np.r_[0, t[:-1]])  # >= 0: rint is monotone
    real = tok >= 0
    out, at, count = shift_tokens(gap, real.astype(np.int64), vocab, np.int64)
    out[at[real]] = tok[real]
    return out, np.bincount(row, weights=count, minlength=b).astype(np.int64)


def augment_tokens(
    tokens: np.ndarray, vocab: Vocabulary, transpose: int = 0, stretch: float = 1.0
) -> np.ndarray:
    """A token sequence transposed by ``transpose`` semitones and time-stretched by ``stretch``.

    Transposition adds k to the pitch of every NOTE_ON/NOTE_OFF (PITCH in the beat
    vocabulary); k must lie in
    :func:`transpose_range` (a pitch leaving the vocabulary raises DataError). Stretching
    moves every other token that sits at step t (counted from the start of ``tokens``) to
    step ``rint(t * stretch)`` and rewrites the TIME_SHIFTs between them as full shifts then
    the remainder; token order is kept, so decoding gives the same notes with start and end
    ``rint(step * stretch)`` (a note whose two ends meet lasts one step, as ``decode`` rules).
    ``stretch == 1`` leaves the shifts untouched. Returns uint16 ids, 1-D.
    """
    ids = np.asarray(tokens)
    _require(ids.ndim == 1, f"tokens must be 1-D, got shape {ids.shape}")
    _require(ids.size == 0 or ids.dtype.kind in "iu", f"token ids must be integers: {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab.size):
        raise VocabularyError(f"token ids must be in 0..{vocab.size - 1}")
    k, f = operator.index(transpose), float(stretch)
    _require(math.isfinite(f) and f > 0, f"stretch must be a finite factor > 0, got {stretch}")
    lo, hi = (int(x) for x in transpose_range(ids, vocab))
    _require(lo <= k <= hi, f"transposing by {k} moves pitches out of range (allowed {lo}..{hi})")
    _require(f == 1.0 or not isinstance(vocab, NoteVocabulary),
             "the beat vocabulary is not time-stretched (its time is in beats)")
    if f != 1.0 and ids.size:
        ids, _ = stretch_rows(ids[None], np.array([ids.size]), np.array([f]), vocab)
    return transposed(ids, k, vocab).astype(np.uint16)
