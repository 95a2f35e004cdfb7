"""The two event vocabularies behind one seam, so that corpus, data, training and generation
do not branch on the vocabulary everywhere.

- ``performance`` (:mod:`composer.tokens.performance`): NOTE_ON / NOTE_OFF / TIME_SHIFT / VELOCITY
on a
  10 ms grid; right for performed, unquantised MIDI.
- ``notes`` (:mod:`composer.tokens.beats`): PITCH / DURATION / SHIFT / VELOCITY in fractions of a
  beat, with the tempo and time signature (a :class:`~composer.tokens.beats.Clock`) kept beside
  the tokens; right for quantised MIDI (scores, sequenced files).

An :class:`Events` is a vocabulary kind and its config. Its dict form (saved with every
corpus and checkpoint as ``events``) is the config's own dict, plus ``"kind": "notes"`` for
the beat vocabulary: a dict without ``kind`` (every checkpoint written before the beat
vocabulary existed) is performance events, exactly as before.

Either vocabulary can be instrument-aware (``instruments=True`` in its config: PROGRAM and
DRUM tokens, :mod:`composer.tokens.ensemble`); ``instruments`` is in the dict only when true, so
dicts without it load as the plain vocabularies, with the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from composer.midi.io import NoteInput, Piece, as_note_array
from composer.tokens import beats as beat
from composer.tokens import ensemble
from composer.tokens import performance as perf
from composer.tokens.beats import Clock, NoteEventConfig, NoteVocabulary
from composer.tokens.performance import EventConfig, Vocabulary, VocabularyError

PERFORMANCE, NOTES = "performance", "notes"
KINDS = (PERFORMANCE, NOTES)
CHOICES = (*KINDS, "auto")  # what prepare / train accept


@dataclass(frozen=True)
class Events:
    """One event vocabulary: ``kind`` (one of KINDS) and its config."""

    kind: str
    config: EventConfig | NoteEventConfig

    def __post_init__(self) -> None:
        want = EventConfig if self.kind == PERFORMANCE else NoteEventConfig
        if self.kind not in KINDS or not isinstance(self.config, want):
            raise VocabularyError(f"event vocabulary {self.kind!r} with {self.config!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Events:
        """From :meth:`to_dict` form; no ``kind``: performance events (older checkpoints)."""
        d = dict(d)
        kind = d.pop("kind", PERFORMANCE)
        if kind not in KINDS:
            raise VocabularyError(f"unknown event vocabulary {kind!r}; expected one of {KINDS}")
        return cls(kind, (EventConfig if kind == PERFORMANCE else NoteEventConfig).from_dict(d))

    def to_dict(self) -> dict[str, Any]:
        """The config's dict, with ``kind`` for the beat vocabulary only."""
        d = self.config.to_dict()
        return d if self.kind == PERFORMANCE else {"kind": self.kind, **d}

    @property
    def is_notes(self) -> bool:
        """Whether this is the beat vocabulary."""
        return self.kind == NOTES

    @property
    def vocab(self) -> Vocabulary:
        """The token-id bijection (a :class:`NoteVocabulary` for the beat vocabulary)."""
        return NoteVocabulary(self.config) if self.is_notes else Vocabulary(self.config)

    @property
    def size(self) -> int:
        """Number of token ids."""
        return self.vocab.size

    @property
    def instruments(self) -> bool:
        """Whether notes carry their instrument (PROGRAM and DRUM tokens)."""
        return self.config.instruments

    def describe(self) -> str:
        """One phrase: ``notes (1/12 beat)`` or ``performance (10 ms, instruments)``."""
        extra = ", instruments" if self.instruments else ""
        if self.is_notes:
            return f"notes (1/{self.config.steps_per_quarter} beat{extra})"
        return f"performance ({1000 / self.config.steps_per_second:g} ms{extra})"

    def pitch_ids(self) -> list[range]:
        """The id ranges whose tokens carry a pitch, each in pitch order (transposition adds
        k semitones by adding k to such an id)."""
        r = self.vocab.ranges
        return [r[beat.PITCH]] if self.is_notes else [r[perf.NOTE_ON], r[perf.NOTE_OFF]]

    def note_start_ids(self) -> range:
        """The ids that start a note (NOTE_ON or PITCH), in pitch order."""
        return self.pitch_ids()[0]

    def instrument_ids(self) -> tuple[range, range]:
        """The PROGRAM ids (program order) and the DRUM ids (key order); empty ranges for a
        vocabulary without instruments."""
        r, end = self.vocab.ranges, range(self.size, self.size)
        return r.get(perf.PROGRAM, end), r.get(perf.DRUM, end)

    def token_steps(self) -> np.ndarray:
        """(V,) int64: the time steps each token advances (shifts; 0 for the rest)."""
        v = self.vocab
        out = np.zeros(v.size, np.int64)
        if self.is_notes:
            out[v.ranges[beat.SHIFT]] = v.steps
        else:
            r = v.ranges[perf.TIME_SHIFT]
            out[r] = np.arange(1, len(r) + 1)
        return out

    def steps_per_second(self, clock: Clock = beat.DEFAULT_CLOCK) -> float:
        """Time steps per second of music (at ``clock``'s tempo for the beat vocabulary)."""
        if self.is_notes:
            return self.config.steps_per_quarter * 1e6 / clock.us_per_quarter
        return float(self.config.steps_per_second)

    def seconds_of(self, tokens: Sequence[int] | np.ndarray, clock: Clock = beat.DEFAULT_CLOCK
                   ) -> float:
        """Seconds of music a token sequence spans (the sum of its shifts)."""
        steps = self.token_steps()[np.asarray(tokens, dtype=np.int64)]
        return float(steps.sum()) / self.steps_per_second(clock)

    def start_tokens(self) -> np.ndarray:
        """The context of an unseeded continuation: one VELOCITY token, the bin of
        DEFAULT_VELOCITY (encoded pieces carry one before their first note); a beat
        vocabulary without velocities gets a one-step SHIFT instead."""
        v = self.vocab
        if self.is_notes and not self.config.velocity_bins:
            return np.array([v.ranges[beat.SHIFT][0]], np.int64)
        cfg = self.config.velocity_config() if self.is_notes else self.config
        b = int(perf.velocity_to_bin(perf.DEFAULT_VELOCITY, cfg))
        return np.array([v.ranges[perf.VELOCITY][b]], np.int64)

    def encode(self, piece: NoteInput) -> np.ndarray:
        """Token ids (uint16) of a piece."""
        return self.encode_many([piece])[0]

    def encode_many(self, pieces: Sequence[NoteInput]) -> list[np.ndarray]:
        """Token ids of each piece (one vectorised pass; the beat vocabulary reads beats)."""
        if self.is_notes:
            encode = ensemble.encode_notes if self.instruments else beat.encode_many
            return encode(pieces, self.config)
        if self.instruments:
            return ensemble.encode_performance(pieces, self.config)
        return perf.encode_many([as_note_array(p) for p in pieces], self.config)

    def quantise(self, piece: NoteInput) -> Piece:
        """What encoding keeps of a piece: ``decode(encode(piece))`` (the beat vocabulary
        at the piece's own clock)."""
        if self.is_notes:
            return (ensemble.quantise_notes if self.instruments else beat.quantise)(
                piece, self.config)
        quantise = ensemble.quantise_performance if self.instruments else perf.quantise
        notes = quantise(piece, self.config)
        return Piece(notes, float(notes["end"].max()) if len(notes) else 0.0)

    def decode(self, tokens: Sequence[int] | np.ndarray, clock: Clock = beat.DEFAULT_CLOCK,
               program: int = 0, max_note_seconds: float | None = None) -> Piece:
        """The piece of a token sequence. Performance events: notes left hanging are closed
        after ``min(max_hanging_seconds, max_note_seconds)`` and every note is clipped to
        ``max_note_seconds``; the piece has no beats (its seconds are at 120 bpm). The beat
        vocabulary: notes on the grid at ``clock``'s tempo (their length is in the tokens)."""
        if self.is_notes:
            decode = ensemble.decode_notes if self.instruments else beat.decode
            return decode(tokens, self.config, clock, program)
        cfg = self.config
        if max_note_seconds is not None:
            cfg = replace(cfg, max_hanging_seconds=min(cfg.max_hanging_seconds,
                                                       max_note_seconds))
        notes = (ensemble.decode_performance if self.instruments else perf.decode)(
            tokens, cfg, program)
        if max_note_seconds is not None:
            notes["end"] = np.minimum(notes["end"], notes["start"] + max_note_seconds)
        duration = float(notes["end"].max()) if len(notes) else 0.0
        return Piece(notes, duration)


def vocabulary_of(d: Mapping[str, Any] | Events | EventConfig | NoteEventConfig) -> Events:
    """The :class:`Events` of a saved ``events`` dict (see :meth:`Events.from_dict`), or of
    a config object."""
    if isinstance(d, Events):
        return d
    if isinstance(d, EventConfig):
        return Events(PERFORMANCE, d)
    if isinstance(d, NoteEventConfig):
        return Events(NOTES, d)
    return Events.from_dict(d)


def clock_from(us_per_quarter: float | None, numerator: int = 4, denominator: int = 4) -> Clock:
    """A Clock from stored values (None: the default 120 bpm, 4/4)."""
    if not us_per_quarter:
        return beat.DEFAULT_CLOCK
    return Clock(int(round(us_per_quarter)), int(numerator), int(denominator))
