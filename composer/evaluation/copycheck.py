"""The copy check: the longest run of a piece's events that occurs in a training corpus.

Transposition-invariant, velocities ignored, from an n-gram index built once
(:class:`CopyIndex`), for both event vocabularies (performance events and the beat
vocabulary, through :class:`composer.tokens.vocab.Events`); :func:`copy_warning` words a long run
as one line, and :func:`training_copy_index` indexes the train split a checkpoint learned
from. An index is built once per corpus: kept in the process (a server's requests share it)
and beside the corpus in its cache folder (``copy-index-N.npz``, keyed by the corpus's
content key), so a later ``composer generate`` loads it (about 0.2 s to build for the
default's corpus, a few ms to load).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composer.core.config import Config
from composer.core.files import atomic_write
from composer.core.messages import ComposerError, MetricsError
from composer.corpus.cache import Corpus
from composer.corpus.sources import open_or_prepare, training_corpus
from composer.tokens.beats import DEFAULT_CLOCK, Clock, NoteEventConfig
from composer.tokens.performance import DEFAULT_CONFIG, VELOCITY, EventConfig
from composer.tokens.vocab import Events, vocabulary_of

# Symbols of the transposition-invariant form: a note event is its pitch step (0..254) or
# FIRST_NOTE, plus PITCH_KIND per pitch-carrying kind (NOTE_OFF after NOTE_ON); a time
# shift is SHIFT_BASE + its steps; any other token (a DURATION) is OTHER_BASE + its id.
FIRST_NOTE, PITCH_KIND, SHIFT_BASE, OTHER_BASE = 256, 512, 2048, 1 << 20


@dataclass(frozen=True)
class CopyConfig(Config):
    """Settings of :class:`CopyIndex` and :func:`copy_warning`."""

    _error = MetricsError
    _name = "copy check settings"

    ngram: int = 12  # indexed window length (events); shorter runs are not found
    warn_seconds: float = 10.0  # copy_warning fires at runs this long


@dataclass
class CopyMatch:
    """The longest run of a piece's events found in the corpus (0 events: none found)."""

    events: int  # events in the run (VELOCITY events are not counted)
    seconds: float  # time the run spans in the piece
    piece_events: int  # events of the piece, counted the same way
    start_seconds: float = 0.0  # where the run starts in the piece
    source: str | None = None  # corpus file that holds it
    source_seconds: float = 0.0  # where it starts there
    transpose: int = 0  # semitones from the source to the piece

    @property
    def fraction(self) -> float:
        """Share of the piece's events in the run."""
        return self.events / self.piece_events if self.piece_events else 0.0


def _relative(tokens: np.ndarray, events: Events) -> tuple[np.ndarray, ...]:
    """Transposition-invariant form of a token sequence, VELOCITY tokens dropped: symbols
    (L,) (a note event: the pitch step from the previous note event, or "first note", by
    kind; a time shift: its steps; anything else, e.g. a DURATION: its id), the time step
    before each symbol and at the end (L+1,), and each symbol's MIDI pitch (L,; -1 when it
    carries none)."""
    vocab = events.vocab
    ids = np.asarray(tokens, np.int64)
    vel = vocab.ranges[VELOCITY]
    ids = ids[(ids < vel.start) | (ids >= vel.stop)]
    steps = events.token_steps()[ids]  # (L,)
    pitch, kind = np.full(len(ids), -1, np.int64), np.full(len(ids), -1, np.int64)
    for k, r in enumerate(events.pitch_ids()):
        inside = (ids >= r.start) & (ids < r.stop)
        pitch[inside] = ids[inside] - r.start + events.config.min_pitch
        kind[inside] = k
    sym = np.where(steps > 0, SHIFT_BASE + steps, OTHER_BASE + ids)
    is_note = pitch >= 0
    notes = pitch[is_note]
    sym[is_note] = np.r_[FIRST_NOTE, np.diff(notes) + 127][: len(notes)] \
        + PITCH_KIND * kind[is_note]
    return sym, np.r_[0, np.cumsum(steps)], pitch


def _hashes(sym: np.ndarray, n: int) -> np.ndarray:
    """64-bit polynomial hashes (L-n+1,) of the length-n windows of ``sym``."""
    h = np.zeros(max(len(sym) - n + 1, 0), np.uint64)
    for j in range(n):
        h = h * np.uint64(0x100000001B3) + sym[j : j + len(h)].astype(np.uint64) + np.uint64(1)
    return h


class CopyIndex:
    """Index of every ``ngram``-event window of a corpus, for :meth:`longest_copy`.

    Windows are hashed in the transposition-invariant form of :func:`_relative`, so a
    transposed copy matches; velocities are ignored. Matching windows that follow each other
    on one diagonal (same offset between piece and corpus) join into one run of
    ``windows + ngram - 1`` events; the first note of a run may be lost to the pitch step
    from a note before it. In the beat vocabulary a run is matched in beats and its
    seconds are read at ``clock``'s tempo (the corpus's median tempo for its files).
    """

    def __init__(self, sequences: Sequence[np.ndarray], names: Sequence[str],
                 events: EventConfig | NoteEventConfig | Events = DEFAULT_CONFIG,
                 config: CopyConfig = CopyConfig(), clock: Clock = DEFAULT_CLOCK):
        self.events, self.config, self.names = vocabulary_of(events), config, list(names)
        self.steps_per_second = self.events.steps_per_second(clock)  # of the corpus's files
        parts = [_relative(s, self.events) for s in sequences]
        lengths = np.array([len(p[0]) for p in parts], np.int64)
        self.starts = np.cumsum(lengths) - lengths  # (F,) first symbol of each file
        sym, self.step, self.pitch = (np.concatenate([p[i][: len(p[0])] for p in parts] or [[]])
                                      .astype(np.int64) for i in range(3))  # (S,) step: in file
        h = _hashes(sym, config.ngram)
        file_of = np.repeat(np.arange(len(parts)), lengths)  # (S,)
        ok = file_of[: len(h)] == file_of[config.ngram - 1 :] if len(h) else np.zeros(0, bool)
        pos = np.flatnonzero(ok)  # windows inside one file
        order = np.argsort(h[pos], kind="stable")
        self.keys, self.pos = h[pos][order], pos[order]

    @classmethod
    def from_corpus(cls, corpus: Corpus, splits: Sequence[str] = ("train",),
                    config: CopyConfig = CopyConfig()) -> CopyIndex:
        """Index the files of ``splits`` of a prepared :class:`~composer.corpus.cache.Corpus`."""
        files = [i for s in splits for i in corpus.files(s)]
        return cls([corpus.sequence(i) for i in files], [corpus.paths[i] for i in files],
                   corpus.events, config, corpus.clock)

    # what save() keeps, in the dtypes it keeps them (symbol positions and steps of any
    # corpus fit in 32 bits, MIDI pitches in 16): 12 MB for the default's 690,000 symbols
    _ARRAYS = {"keys": np.uint64, "pos": np.int32, "starts": np.int64, "step": np.int32,
               "pitch": np.int16}

    def save(self, path: str | os.PathLike, key: str) -> None:
        """Write the index to ``path`` (``.npz``, atomically), stamped with ``key`` (the
        corpus's content key, which :meth:`load` checks)."""
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **{a: getattr(self, a).astype(t) for a, t in self._ARRAYS.items()},
                         names=np.array(self.names, dtype=str), key=np.array(key),
                         ngram=np.array(self.config.ngram),
                         steps_per_second=np.array(self.steps_per_second))
        atomic_write(path, write, durable=False)

    @classmethod
    def load(cls, path: str | os.PathLike, key: str, events: EventConfig | NoteEventConfig
             | Events, config: CopyConfig = CopyConfig()) -> CopyIndex | None:
        """The index :meth:`save` wrote to ``path`` if it is stamped with ``key`` and built
        for ``config.ngram``; None otherwise (missing, stale or unreadable: build it again)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key or int(z["ngram"]) != config.ngram:
                    return None
                index = cls.__new__(cls)
                for a in cls._ARRAYS:
                    setattr(index, a, z[a])
                index.names = z["names"].tolist()
                index.steps_per_second = float(z["steps_per_second"])
        except (OSError, ValueError, KeyError):
            return None
        index.events, index.config = vocabulary_of(events), config
        return index

    def longest_copy(self, tokens: np.ndarray, after_seconds: float = 0.0,
                     clock: Clock = DEFAULT_CLOCK) -> CopyMatch:
        """The longest run of ``tokens`` (event ids) found in the corpus, counting only the
        events from ``after_seconds`` on (e.g. past a seed taken from the corpus); the beat
        vocabulary's steps are read as seconds at ``clock``'s tempo."""
        sym, step, pitch = _relative(tokens, self.events)
        sps, n = self.events.steps_per_second(clock), self.config.ngram
        none = CopyMatch(0, 0.0, len(sym))
        h = _hashes(sym, n)
        lo, hi = np.searchsorted(self.keys, h, "left"), np.searchsorted(self.keys, h, "right")
        count = hi - lo
        if not count.sum():
            return none
        i = np.repeat(np.arange(len(h)), count)  # (P,) window of the piece
        c = self.pos[np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())]
        d = c - i  # diagonal
        order = np.lexsort((i, d))
        i, d = i[order], d[order]
        new = np.r_[True, (d[1:] != d[:-1]) | (i[1:] != i[:-1] + 1)]  # run starts
        first, last, d = i[new], i[np.r_[new[1:], True]] + n, d[new]  # (R,) symbols [first, last)
        begin = np.maximum(first, np.searchsorted(step, round(after_seconds * sps), "left"))
        best = int(np.argmax(last - begin))
        s, e = int(begin[best]), int(last[best])
        if e <= s:
            return none
        at, f = s + int(d[best]), int(np.searchsorted(self.starts, s + d[best], "right") - 1)
        notes = np.flatnonzero(pitch[s:e] >= 0)
        shift = int(pitch[s + notes[0]] - self.pitch[at + notes[0]]) if len(notes) else 0
        return CopyMatch(e - s, float(step[e] - step[s]) / sps, len(sym), float(step[s]) / sps,
                         self.names[f], float(self.step[at]) / self.steps_per_second, shift)


def copy_warning(match: CopyMatch, config: CopyConfig = CopyConfig()) -> str | None:
    """A one-line warning when ``match`` spans ``config.warn_seconds`` or more, else None."""
    if match.events == 0 or match.seconds < config.warn_seconds:
        return None
    moved = f", transposed {match.transpose:+d}" if match.transpose else ""
    return (f"copies {match.seconds:.1f} s ({match.events} events, {match.fraction:.0%} of the "
            f"piece) of {match.source} from {match.source_seconds:.1f} s{moved}")


def training_copy_index(data: dict[str, Any], events: EventConfig | Events,
                        config: CopyConfig = CopyConfig()) -> CopyIndex | None:
    """Copy index of the train split a checkpoint learned from (``Checkpoint.data``), or None
    when neither its cache nor its source MIDI folder is here (or the corpus found holds
    another vocabulary). A source folder is prepared into its default cache first (once;
    later calls reuse it), and the index is built once (:func:`corpus_copy_index`)."""
    where, settings = training_corpus(data, events)
    if where is None:
        return None
    corpus = open_or_prepare(where, settings)
    return corpus_copy_index(corpus, config) if corpus.events == vocabulary_of(events) \
        else None


_KEPT: dict[tuple, CopyIndex] = {}  # this process's indexes, by corpus and window length
KEEP = 4  # indexes kept in a process (a server with several models)


def corpus_copy_index(corpus: Corpus, config: CopyConfig = CopyConfig()) -> CopyIndex:
    """:meth:`CopyIndex.from_corpus` of ``corpus``'s train split, built once: kept in this
    process, and in the corpus's cache folder (``copy-index-N.npz``, checked against the
    corpus's content key when read; a cache folder that cannot be written only costs the
    build)."""
    name = f"copy-index-{config.ngram}.npz"
    kept = (str(corpus.cache_dir), corpus.key, config.ngram)  # warn_seconds: not in an index
    if kept in _KEPT:
        return _KEPT[kept]
    path = corpus.cache_dir / name
    index = CopyIndex.load(path, corpus.key, corpus.events, config) if corpus.key else None
    if index is None:
        index = CopyIndex.from_corpus(corpus, ("train",), config)
        if corpus.key:
            with contextlib.suppress(ComposerError):  # read-only cache: build each time
                index.save(path, corpus.key)
    while len(_KEPT) >= KEEP:
        del _KEPT[next(iter(_KEPT))]
    _KEPT[kept] = index
    return index
