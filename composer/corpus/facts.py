"""What a prepared corpus knows about its music beyond the tokens: which event vocabulary
``auto`` picks for it, its guards, its typical tempo.

- :func:`choose_vocabulary`: the beat vocabulary (``notes``) when the corpus is quantised
  (at least ``QUANTISED_SHARE`` of all onsets, summed over files, on the beat grid, and no
  file with SMPTE time division), else performance events; with a one-line reason.
- :class:`PrepareReport`: what one ``prepare`` run found and did.
- :func:`summarise`: from the per-file records of an ingest, the corpus's grid counts, the
  guards (:func:`composer.corpus.facts.combine` over the train split) and the median tempo.
"""
# Guards learned from a training corpus: how many notes may sound at once, how long a note
# may last.
#
# At prepare time each file gets small histograms (:func:`file_stats`): the number of notes
# sounding at each onset (the new note included), and note lengths in seconds and in beats
# on log-spaced bins (four per octave). :func:`combine` sums them over the train split and
# reads off :class:`Guards`: the polyphony limit is the ``POLYPHONY_PERCENTILE`` (99.9th)
# percentile of sounding notes over all onsets, the longest note the ``LENGTH_PERCENTILE``
# (99.9th) percentile of note lengths, rounded up to its bin's upper edge (so a guard errs
# towards letting music through, by at most a quarter octave: 19%). A high percentile rather
# than the maximum, so that one damaged file (a stuck note, a cluster) does not set the limit.
#
# Sampling enforces them (:mod:`composer.generation.processors`); a checkpoint without guards
# (written before
# they existed) samples with the old fixed limits.

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from composer.corpus.keys import Keys
from composer.midi.io import Piece
from composer.tokens.beats import beats_of
from composer.tokens.vocab import NOTES, PERFORMANCE

QUANTISED_SHARE = 0.9  # auto: share of onsets on the grid above which a corpus is quantised


@dataclass
class PrepareReport:
    """What one ``prepare`` run found and did."""

    cache_dir: Path
    files_found: int = 0
    files_loaded: int = 0
    files_parsed: int = 0  # parsed in this run (the rest came from the cache)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    notes: int = 0
    events: int = 0
    seconds: float = 0.0
    split_files: dict[str, int] = field(default_factory=dict)
    repaired: str | None = None  # what was wrong with the cache found, if it was rebuilt
    vocabulary: str = PERFORMANCE  # the event vocabulary of the corpus
    why: str = ""  # one line: which vocabulary and why (e.g. the share of onsets on the grid)
    grid: list[int] = field(default_factory=lambda: [0, 0, 0])  # on grid, onsets, SMPTE files

    def skipped_by_reason(self) -> Counter:
        """Skipped files counted by kind of reason (numbers and positions stripped)."""
        return Counter(reason_kind(r) for _, r in self.skipped)


def reason_kind(reason: str) -> str:
    """Group a one-line reason: 'track 2: data byte over 127 at byte 40' -> 'data byte over 127'."""
    r = re.sub(r"^track \d+: ", "", reason)
    r = re.sub(r" at byte \d+", "", r)
    r = re.sub(r"\d+(\.\d+)?", "N", r)
    return r.split(" of ")[0] if r.startswith("duplicate") else r


def choose_vocabulary(on_grid: int, onsets: int, smpte_files: int, steps_per_quarter: int
                      ) -> tuple[str, str]:
    """(kind, reason) of ``auto`` for a corpus with these grid counts."""
    share = on_grid / onsets if onsets else 0.0
    grid = f"{share:.2%} of onsets on the 1/{steps_per_quarter}-beat grid"
    if smpte_files:
        return PERFORMANCE, f"{smpte_files} file(s) timed in SMPTE frames, not beats; {grid}"
    if share >= QUANTISED_SHARE:
        return NOTES, grid
    return PERFORMANCE, f"only {grid}, below {QUANTISED_SHARE:.0%}"


def summarise(records: Sequence[dict], splits: np.ndarray) -> dict[str, Any]:
    """``grid`` [on grid, onsets, SMPTE files], ``guards`` (measured on the train split,
    split 0; on every file when it is empty) and ``tempo`` (median microseconds per quarter)
    of loaded files' ingest records (``splits``: each record's split)."""
    grid = [sum(int(r.get("grid", (0, 0))[k]) for r in records) for k in (0, 1)]
    grid.append(sum(bool(r.get("smpte")) for r in records))
    train = [r for r, s in zip(records, splits, strict=True) if s == 0] or list(records)
    tempos = [r["clock"][0] for r in records if r.get("clock")]
    return {"grid": grid, "guards": combine(r.get("stats", {}) for r in train).to_dict(),
            "tempo": int(np.median(tempos)) if tempos else None}

DEFAULT_MAX_NOTE_SECONDS = 5.0  # the longest note where no guard was measured (old models)
POLYPHONY_PERCENTILE = 99.9
LENGTH_PERCENTILE = 99.9
LENGTH_EDGES = 2.0 ** (np.arange(-32, 33) / 4)  # bin upper edges: 2^-8 .. 2^8 (s or beats)


def _trim(counts: np.ndarray) -> list[int]:
    """A histogram in compact JSON form: ``[first nonzero bin, its count, ..., the last
    nonzero bin's count]`` (``[]`` when empty); see :func:`_untrim`."""
    nz = np.flatnonzero(counts)
    return [int(nz[0]), *(int(c) for c in counts[nz[0] : nz[-1] + 1])] if nz.size else []


def _untrim(packed: list[int]) -> np.ndarray:
    """The histogram (int64) of :func:`_trim`'s form."""
    if not packed:
        return np.zeros(0, np.int64)
    return np.concatenate([np.zeros(packed[0], np.int64), np.asarray(packed[1:], np.int64)])


def sounding_at_onsets(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(n,) notes sounding at each note's onset, itself included (a note ending exactly at
    an onset has ended)."""
    n = len(start)
    if not n or not (start[1:] >= start[:-1]).all():
        s, e = np.sort(start), np.sort(end)
        return np.searchsorted(s, start, "right") - np.searchsorted(e, start, "right")
    # sorted starts (a piece's notes; pieces laid end to end): the same counts in linear time
    last = np.flatnonzero(np.append(start[1:] != start[:-1], True)) + 1  # each run's end
    started = np.repeat(last, np.diff(last, prepend=0))  # (n,) starts at or before each
    merged = np.argsort(np.concatenate([end, start]), kind="stable")  # ties: ends first
    at = np.empty(2 * n, np.int64)
    at[merged] = np.arange(2 * n)
    return started - (at[n:] - np.arange(n))  # minus the ends at or before each start


def _histograms(values: np.ndarray, group: np.ndarray, n_groups: int, n_bins: int
                ) -> list[list[int]]:
    """Per group, the histogram of int ``values`` (n,) in 0..n_bins-1 (compact form)."""
    counts = np.bincount(group * n_bins + values, minlength=n_groups * n_bins)
    counts = counts.reshape(n_groups, n_bins)
    nz = counts > 0
    first, last = nz.argmax(1).tolist(), (n_bins - 1 - nz[:, ::-1].argmax(1)).tolist()
    return [[f, *row[f : e + 1]] if any_ else [] for row, f, e, any_ in
            zip(counts.tolist(), first, last, nz.any(1).tolist(), strict=True)]


def file_stats(piece: Piece) -> dict[str, list[int]]:
    """Histograms of one piece: :func:`stats_many`'s."""
    return stats_many([piece])[0]


def stats_many(pieces: Sequence[Piece]) -> list[dict[str, list[int]]]:
    """Histograms of each piece (in :func:`_trim`'s compact form), in one vectorised pass:
    ``poly`` (onsets by notes sounding), ``seconds`` and ``beats`` (note lengths by
    LENGTH_EDGES bin)."""
    if not pieces:
        return []
    group = np.repeat(np.arange(len(pieces)), [len(p.notes) for p in pieces])  # (n,)
    start = np.concatenate([p.notes["start"] for p in pieces]).astype(np.float64)
    end = np.concatenate([p.notes["end"] for p in pieces]).astype(np.float64)
    beat_len = np.concatenate([b["end"] - b["start"] for b in map(beats_of, pieces)])
    span = float(end.max(initial=0.0)) + 1.0  # files laid end to end: one sort for all
    sounding = sounding_at_onsets(start + group * span, end + group * span)  # (n,)
    top = len(LENGTH_EDGES) - 1
    out = {"poly": _histograms(sounding, group, len(pieces), int(sounding.max(initial=0)) + 1)}
    for key, length in (("seconds", end - start), ("beats", beat_len)):
        bins = np.minimum(np.searchsorted(LENGTH_EDGES, length, "left"), top)
        out[key] = _histograms(bins, group, len(pieces), top + 1)
    return [{k: v[i] for k, v in out.items()} for i in range(len(pieces))]


@dataclass(frozen=True)
class Guards:
    """Limits for sampling; None: not known (the sampler's old defaults apply)."""

    max_polyphony: int | None = None  # most notes sounding at once
    max_note_seconds: float | None = None  # longest note, performance events
    max_note_beats: float | None = None  # longest note, beat vocabulary
    keys: Keys | None = None  # the train pieces' keys and openings (measured when training)
    style_keys: Mapping[str, Keys] = field(default_factory=dict)  # the same, per style

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the percentiles it was measured at."""
        return {"max_polyphony": self.max_polyphony, "max_note_seconds": self.max_note_seconds,
                "max_note_beats": self.max_note_beats,
                "percentiles": {"polyphony": POLYPHONY_PERCENTILE, "length": LENGTH_PERCENTILE},
                **({"keys": self.keys.to_dict()} if self.keys else {}),
                **({"style_keys": {s: k.to_dict() for s, k in self.style_keys.items()}}
                   if self.style_keys else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Guards:
        """From :meth:`to_dict` form; None or {}: no guards."""
        d = d or {}
        return cls(d.get("max_polyphony"), d.get("max_note_seconds"), d.get("max_note_beats"),
                   Keys.from_dict(d.get("keys")),
                   {s: Keys.from_dict(k) for s, k in (d.get("style_keys") or {}).items()})


def _percentile_bin(counts: np.ndarray, q: float) -> int | None:
    """Index of the bin holding the q-th percentile of a histogram (None when empty)."""
    total = counts.sum()
    if total == 0:
        return None
    return int(np.searchsorted(np.cumsum(counts), q / 100 * total, "left"))


def combine(stats: Iterable[Mapping[str, list[int]]]) -> Guards:
    """The :class:`Guards` of files' :func:`file_stats` summed."""
    rows: dict[str, list[list[int]]] = {}
    for s in stats:
        for key, packed in s.items():
            if packed:
                rows.setdefault(key, []).append(packed)
    sums: dict[str, np.ndarray] = {}
    for key, packed in rows.items():  # one bincount per key: each bin at first + k
        flat = np.fromiter(chain.from_iterable(packed), np.int64)  # each: first bin, counts
        lengths = np.array([len(r) for r in packed]) - 1  # (files,)
        heads = np.cumsum(lengths + 1) - (lengths + 1)  # each file's first bin in flat
        first = flat[heads] - (np.cumsum(lengths) - lengths)
        counts = np.delete(flat, heads)
        at = np.repeat(first, lengths) + np.arange(len(counts))  # (bins,)
        sums[key] = np.bincount(at, weights=counts).astype(np.int64)
    empty = np.zeros(0, np.int64)
    poly = _percentile_bin(sums.get("poly", empty), POLYPHONY_PERCENTILE)

    def longest(key: str) -> float | None:
        i = _percentile_bin(sums.get(key, empty), LENGTH_PERCENTILE)
        return None if i is None else float(LENGTH_EDGES[i])

    return Guards(poly, longest("seconds"), longest("beats"))
