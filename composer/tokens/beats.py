"""The beat vocabulary: notes with durations, timed in fractions of a beat.

Beside the performance events of :mod:`composer.tokens.performance` (right for performed,
unquantised MIDI), this vocabulary writes a piece as notes on a grid of
``steps_per_quarter`` steps per quarter note (12 by default: sixteenths are 3 steps,
triplet eighths 4)::

    SHIFT_<b>      advance time by b beats (quarter notes; e.g. SHIFT_1/4, SHIFT_3/2)
    VELOCITY_v     velocity bin v for the notes that follow (absent with velocity_bins=0)
    PITCH_p        a note of MIDI pitch p starts now ...
    DURATION_<b>   ... and lasts b beats: the token right after its PITCH

A note's end is decided when it starts, so nothing can hang. Durations and shifts share one
set of step values: every step up to ``fine_steps``, then multiples of ``coarse_steps`` up
to ``max_steps``. A longer gap is written as several shifts (exactly); a duration snaps to
the nearest value (ties to the shorter one; longer ones to ``max_steps``).

Token ids come from one ordered range table (PITCH, DURATION, SHIFT, VELOCITY) and the
:class:`composer.tokens.performance.Vocabulary` machinery; a DURATION or SHIFT event's
``value`` is the index of its step value (see :meth:`NoteEventConfig.step_values`). The
default layout (264 ids): PITCH_p = p, DURATION bins 128..179, SHIFT bins 180..231,
VELOCITY_b = 232 + b.
With ``instruments=True``, PROGRAM_g = 264 + g and DRUM_k = 392 + k follow (520 ids; see
:mod:`composer.tokens.ensemble`).

Tempo and time signature are not tokens: they are per-piece values (a :class:`Clock`) kept
beside the tokens, so that decoding writes notes in beats and in seconds at the piece's own
tempo. Encoding is lossy only as :func:`quantise` says, so ``decode(encode(x),
clock=clock_of(x))`` equals ``quantise(x)`` exactly (notes, beats, tempo, time signature).
:class:`BeatNotes` is this kind of :class:`composer.tokens.vocab.Events`; the module's
``encode``/``decode``/``quantise`` are it for one config.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from composer.core.config import OMIT_DEFAULT, Config
from composer.core.messages import is_int, require
from composer.midi.io import (
    NOTE_DTYPE,
    SAVE_TICKS_PER_BEAT,
    NoteInput,
    Piece,
    as_note_array,
    join_records,
    piece_from_beats,
)
from composer.midi.timing import (
    BEAT_DTYPE,
    TIMESIG_DTYPE,
    constant_tempo,
    dominant_tempo,
    seconds_to_beats,
)
from composer.tokens.ensemble import DRUM, PROGRAM
from composer.tokens.performance import (
    DEFAULT_VELOCITY,
    EventConfig,
    Vocabulary,
    bin_to_velocity,
    velocity_to_bin,
)
from composer.tokens.vocab import (
    MAX_VOCAB_SIZE,
    NOTES,
    VELOCITY,
    Events,
    KindRange,
    VocabularyError,
    instrument_ranges,
)

PITCH = "PITCH"
DURATION = "DURATION"
SHIFT = "SHIFT"
KINDS = (PITCH, DURATION, SHIFT, VELOCITY)  # id order of the range table
_require = functools.partial(require, error=VocabularyError)


@dataclass(frozen=True)
class NoteEventConfig(Config):
    """Parameters of the beat vocabulary; to be saved with every corpus and model."""

    _error = VocabularyError
    _name = "note event config"

    steps_per_quarter: int = 12  # grid: 12 steps per quarter fits sixteenths and triplets
    fine_steps: int = 24  # durations and shifts of 1..24 steps (2 quarters), every step
    coarse_steps: int = 6  # beyond fine_steps: multiples of 6 steps (an eighth note) ...
    max_steps: int = 192  # ... up to 192 steps (16 quarters: 4 bars of 4/4)
    velocity_bins: int = 32  # as in EventConfig; 0: no VELOCITY tokens, every note velocity 64
    min_pitch: int = 0  # lowest MIDI pitch represented (inclusive); others are dropped
    max_pitch: int = 127  # highest MIDI pitch represented (inclusive)
    # PROGRAM and DRUM tokens: notes keep their instrument, drums are kept
    # (composer.tokens.ensemble)
    instruments: bool = field(default=False, metadata={OMIT_DEFAULT: True})

    def __post_init__(self) -> None:
        _require(self.instruments in (False, True), "note event config: instruments must be a bool")
        for f in fields(self)[:-1]:
            value = getattr(self, f.name)
            _require(is_int(value), f"note event config: {f.name} must be an integer, got"
                     f" {value!r}")
        _require(self.steps_per_quarter >= 1, "note event config: steps_per_quarter must be >= 1")
        _require(1 <= self.coarse_steps <= self.fine_steps <= self.max_steps,
                 "note event config: need 1 <= coarse_steps <= fine_steps <= max_steps")
        _require(self.max_steps % self.coarse_steps == 0,
                 "note event config: max_steps must be a multiple of coarse_steps")
        _require(self.velocity_bins >= 0, "note event config: velocity_bins must be >= 0")
        if self.velocity_bins:  # the performance vocabulary's rules for bins
            EventConfig(velocity_bins=self.velocity_bins)
        _require(0 <= self.min_pitch <= self.max_pitch <= 127,
                 f"note event config: need 0 <= min_pitch <= max_pitch <= 127, got"
                 f" {self.min_pitch}..{self.max_pitch}")
        size = sum(r.count for r in _range_table(self))
        _require(size <= MAX_VOCAB_SIZE,
                 f"note event config: vocabulary of {size} tokens does not fit uint16 ids")

    @property
    def n_pitches(self) -> int:
        """Number of pitches represented (max_pitch - min_pitch + 1)."""
        return self.max_pitch - self.min_pitch + 1

    def step_values(self) -> np.ndarray:
        """The steps of each DURATION / SHIFT bin, ascending (int64): 1..fine_steps, then
        multiples of coarse_steps up to max_steps."""
        coarse = np.arange(self.coarse_steps, self.max_steps + 1, self.coarse_steps)
        return np.concatenate([np.arange(1, self.fine_steps + 1), coarse[coarse > self.fine_steps]])

    def velocity_config(self) -> EventConfig:
        """The EventConfig whose velocity bins these are (velocity_bins >= 1)."""
        return EventConfig(velocity_bins=max(1, self.velocity_bins))


def _range_table(config: NoteEventConfig) -> tuple[KindRange, ...]:
    """The one ordered table that lays out token ids (order = KINDS, then PROGRAM, DRUM)."""
    n_bins = len(config.step_values())
    return (
        KindRange(PITCH, config.n_pitches, config.min_pitch),  # value: MIDI pitch
        KindRange(DURATION, n_bins, 0),  # value: index into step_values()
        KindRange(SHIFT, n_bins, 0),  # value: index into step_values()
        KindRange(VELOCITY, config.velocity_bins, 0),  # value: velocity bin
        *instrument_ranges(config),
    )


DEFAULT_NOTE_CONFIG = NoteEventConfig()


@dataclass(frozen=True)
class NoteEvent:
    """One event of the beat vocabulary: ``kind`` (one of KINDS) and ``value`` (pitch,
    velocity bin, or index of a DURATION / SHIFT step value). ``label`` is how the value
    prints (beats for DURATION and SHIFT); it takes no part in equality."""

    kind: str
    value: int
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _require(self.kind in (*KINDS, PROGRAM, DRUM), f"unknown event kind {self.kind!r}")

    def __str__(self) -> str:
        return f"{self.kind}_{self.label or self.value}"


class NoteVocabulary(Vocabulary):
    """The bijection between beat events and token ids for one :class:`NoteEventConfig`."""

    def __init__(self, config: NoteEventConfig = DEFAULT_NOTE_CONFIG) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.steps = config.step_values()  # (n_bins,) steps of each DURATION / SHIFT value

    _table = staticmethod(_range_table)

    def decode_event(self, token: int) -> NoteEvent:  # type: ignore[override]
        """The event of token id ``token``; VocabularyError outside ``0 .. size-1``."""
        token = operator.index(token)
        _require(0 <= token < self.size,
                 f"token id {token} is outside the vocabulary (0..{self.size - 1})")
        is_kind, value = self.split(np.array([token]))
        kind, v = next(k for k, mask in is_kind.items() if mask[0]), int(value[0])
        if kind in (DURATION, SHIFT):
            steps = Fraction(int(self.steps[v]), self.config.steps_per_quarter)
            return NoteEvent(kind, v, str(steps))
        return NoteEvent(kind, v)

    def __repr__(self) -> str:
        return f"NoteVocabulary(size={self.size}, config={self.config!r})"


class Clock(NamedTuple):
    """The per-piece values kept beside the tokens: tempo and time signature."""

    us_per_quarter: int = 500_000  # MIDI tempo: microseconds per quarter note (120 bpm)
    numerator: int = 4
    denominator: int = 4

    @property
    def bpm(self) -> float:
        """The tempo in quarter notes per minute."""
        return 60e6 / self.us_per_quarter


DEFAULT_CLOCK = Clock()


def clock_of(piece: NoteInput) -> Clock:
    """A piece's dominant tempo (the one lasting the most beats) and first time signature
    (4/4 when it has none). A bare note array: 120 bpm, 4/4."""
    if not isinstance(piece, Piece):
        return DEFAULT_CLOCK
    sigs = piece.time_signatures
    num, den = (int(sigs["numerator"][0]), int(sigs["denominator"][0])) if len(sigs) else (4, 4)
    many = len(piece.tempos) > 1  # one tempo dominates whatever the end
    end = float(beats_of(piece)["end"].max()) if many and len(piece.notes) else 0.0
    return Clock(dominant_tempo(piece.tempos, end), num, den)


def beats_of(piece: NoteInput) -> np.ndarray:
    """Start and end of every note in beats (BEAT_DTYPE): the Piece's own, else from seconds
    at 120 bpm (bare note arrays, pieces without beats)."""
    if isinstance(piece, Piece) and piece.beats is not None:
        return piece.beats
    notes = piece.notes if isinstance(piece, Piece) else as_note_array(piece)
    beats = np.empty(len(notes), BEAT_DTYPE)
    beats["start"] = seconds_to_beats(notes["start"], constant_tempo())
    beats["end"] = seconds_to_beats(notes["end"], constant_tempo())
    return beats


def note_steps(piece: NoteInput, config: NoteEventConfig) -> tuple[np.ndarray, ...]:
    """Notes in the pitch range as int64 arrays (n,): pitch, velocity bin, start step,
    duration bin index."""
    notes = piece.notes if isinstance(piece, Piece) else as_note_array(piece)
    beats = beats_of(piece)
    kept = (notes["pitch"] >= config.min_pitch) & (notes["pitch"] <= config.max_pitch)
    notes, beats = np.compress(kept, notes), beats[kept]  # compress: fast on records
    _require(bool(np.isfinite(beats["start"]).all() and np.isfinite(beats["end"]).all()),
             "note times must be finite")
    spq = config.steps_per_quarter
    start = np.rint(beats["start"] * spq).astype(np.int64)
    _require(not (start < 0).any(), "note start times must be >= 0")
    length = np.maximum(np.rint(beats["end"] * spq).astype(np.int64) - start, 1)
    values = config.step_values()
    hi = np.minimum(np.searchsorted(values, length), len(values) - 1)  # first value >= length
    lo = np.maximum(hi - 1, 0)
    dbin = np.where(length - values[lo] <= values[hi] - length, lo, hi)  # ties: the shorter
    dbin = np.where(length >= values[-1], len(values) - 1, dbin)
    if config.velocity_bins:
        vbin = velocity_to_bin(notes["velocity"], config.velocity_config())
    else:
        vbin = np.zeros(len(notes), np.int64)
    return notes["pitch"].astype(np.int64), vbin, start, dbin


def make_piece(pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray, end: np.ndarray,
               config: NoteEventConfig, clock: Clock, program: Any = 0, is_drum: Any = False
               ) -> Piece:
    """A Piece in canonical order (start, pitch, end, velocity, program, drum) from int arrays
    (n,) of pitch, velocity bin, start and end step (program, drum flag: a value or (n,))."""
    program, is_drum = np.broadcast_to(program, pitch.shape), np.broadcast_to(is_drum, pitch.shape)
    order = np.lexsort((is_drum, program, vbin, end, pitch, start))
    pitch, vbin, start, end = pitch[order], vbin[order], start[order], end[order]
    notes = np.zeros(len(pitch), NOTE_DTYPE)
    notes["pitch"], notes["program"], notes["is_drum"] = pitch, program[order], is_drum[order]
    if config.velocity_bins:
        notes["velocity"] = bin_to_velocity(vbin, config.velocity_config())
    else:
        notes["velocity"] = DEFAULT_VELOCITY
    beats = np.empty(len(pitch), BEAT_DTYPE)
    spq = config.steps_per_quarter
    beats["start"], beats["end"] = start / spq, end / spq
    sigs = np.array([(0.0, clock.numerator, clock.denominator)], TIMESIG_DTYPE)
    return piece_from_beats(notes, beats, constant_tempo(clock.us_per_quarter), sigs)


def shift_split(gap: np.ndarray, config: NoteEventConfig) -> tuple[np.ndarray, ...]:
    """Split gaps (steps) into SHIFT values: (full, coarse, fine) with gap = full * max_steps
    + coarse + fine, coarse 0 or a value above fine_steps, fine 0 or a value up to fine_steps."""
    full, rest = np.divmod(gap, config.max_steps)
    big = rest > config.fine_steps
    coarse = np.where(big, rest - rest % config.coarse_steps, 0)
    return full, coarse, rest - coarse


def shift_slots(gap: np.ndarray, after: np.ndarray, vocab: NoteVocabulary
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SHIFT gap splitting of :func:`encode`: for each note, its ``gap`` (steps since the
    previous one) as SHIFTs (:func:`shift_split`), followed by ``after`` (n,) free slots for
    the note's own tokens. Returns the uint16 token array (free slots unset), each note's
    first free slot (n,) and its token count (n,)."""
    full, coarse, fine = shift_split(gap, vocab.config)
    count = full + (coarse > 0) + (fine > 0) + after  # (n,) tokens per note
    first = np.cumsum(count) - count  # (n,) position of each note's first token
    tokens = np.full(int(count.sum()), vocab.ranges[SHIFT][-1], dtype=np.uint16)  # full shifts
    at = first + full
    for part in (coarse, fine):
        has = part > 0
        if has.any():
            tokens[at[has]] = vocab.ids(SHIFT, np.searchsorted(vocab.steps, part[has]))
        at = at + has
    return tokens, at, count


class BeatNotes(Events):
    """The beat vocabulary (``kind`` "notes") on the base pipeline.

    Encoding: notes in canonical order (start, program, pitch, duration, velocity bin).
    Before each note whose start is later than the previous note's come SHIFT tokens for
    the gap (as many longest shifts as fit, then the rest: one SHIFT if it is a value, else
    a coarse SHIFT and a fine one: :func:`shift_split`), then a VELOCITY token when its bin
    differs from the last one emitted (always before the first note), then PITCH and
    DURATION. Time starts at beat 0; a bare note array is read at 120 bpm.

    Quantising: starts and ends snap to the nearest grid step (``np.rint``, halves to
    even); a note lasts at least one step, and its length then snaps to the nearest
    DURATION value (ties to the shorter; longer than ``max_steps``: ``max_steps``). Notes
    outside the pitch range are dropped; velocities become their bin's representative (or
    64 without bins). The piece gets one tempo and one time signature, those of
    :func:`clock_of`; seconds follow from the beats at that tempo.

    Decoding: a PITCH directly followed by a DURATION is a note; a PITCH without one and a
    DURATION without a PITCH are ignored. Seconds follow from ``clock``'s tempo (120 bpm,
    4/4 when None), which with its time signature is the piece's only one.
    """

    kind = NOTES
    config_type = NoteEventConfig
    vocabulary_type = NoteVocabulary
    time_kind, start_kind, length_kind = SHIFT, PITCH, DURATION

    def clock_of(self, piece: NoteInput) -> Clock:
        return clock_of(piece)

    def grid(self) -> str:
        return f"1/{self.config.steps_per_quarter} beat"

    def steps_per_second(self, clock: Clock | None = None) -> float:
        return self.config.steps_per_quarter * 1e6 / (clock or DEFAULT_CLOCK).us_per_quarter

    def shift_values(self) -> np.ndarray:
        return self.config.step_values()

    def default_bin(self) -> int:
        return int(velocity_to_bin(DEFAULT_VELOCITY, self.config.velocity_config()))

    def drum_steps(self) -> int:
        return max(1, self.config.steps_per_quarter // 4)  # a sixteenth

    def _times(self, pieces: Sequence[NoteInput]) -> np.ndarray:
        return join_records([beats_of(p) for p in pieces])

    def _steps(self, notes: np.ndarray, times: np.ndarray | None, config: Any
               ) -> tuple[np.ndarray, ...]:
        return note_steps(Piece(notes, 0.0, beats=times), config)

    def _time_tokens(self, gap: np.ndarray, after: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return shift_slots(gap, after, self.vocab)

    def _quantised(self, pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray,
                   last: np.ndarray, prog: np.ndarray) -> tuple[np.ndarray, ...]:
        return pitch, vbin, start, start + self.vocab.steps[last], prog

    def _pitched(self, is_kind: dict[str, np.ndarray], value: np.ndarray, step: np.ndarray,
                 vbin: np.ndarray, prog: np.ndarray, max_note_seconds: float | None
                 ) -> tuple[np.ndarray, ...]:
        note = np.flatnonzero(is_kind[PITCH][:-1] & is_kind[DURATION][1:])  # PITCH positions
        start = step[note]
        return value[note], vbin[note], start, start + self.vocab.steps[value[note + 1]], prog[note]

    def _piece(self, pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray, end: np.ndarray,
               prog: np.ndarray, drum: np.ndarray, clock: Clock | None) -> Piece:
        return make_piece(pitch, vbin, start, end, self.config, clock or DEFAULT_CLOCK, prog,
                          drum)


def quantise(piece: NoteInput, config: NoteEventConfig = DEFAULT_NOTE_CONFIG) -> Piece:
    """The piece :func:`encode` represents: ``decode(encode(p), clock=clock_of(p))``; notes
    of program 0, not drums, without instruments (see :class:`BeatNotes`)."""
    return BeatNotes(config).quantise(piece)


def encode(piece: NoteInput, config: NoteEventConfig = DEFAULT_NOTE_CONFIG) -> np.ndarray:
    """Token ids (uint16, 1-D) of a piece (see :class:`BeatNotes`)."""
    return BeatNotes(config).encode(piece)


def encode_many(pieces: Sequence[NoteInput], config: NoteEventConfig = DEFAULT_NOTE_CONFIG
                ) -> list[np.ndarray]:
    """``[encode(p, config) for p in pieces]``, computed in one vectorised pass (bulk ingest)."""
    return BeatNotes(config).encode_many(pieces)


def decode(tokens: Sequence[int] | np.ndarray, config: NoteEventConfig = DEFAULT_NOTE_CONFIG,
           clock: Clock = DEFAULT_CLOCK, program: int = 0) -> Piece:
    """The piece (notes in seconds, beats, tempo, time signature) of any token sequence (see
    :class:`BeatNotes`); all notes get ``program`` without instruments; ids outside the
    vocabulary raise VocabularyError."""
    return BeatNotes(config).decode(tokens, clock, program)


def clock_from(us_per_quarter: float | None, numerator: int = 4, denominator: int = 4) -> Clock:
    """A Clock from stored values (None: the default 120 bpm, 4/4)."""
    if not us_per_quarter:
        return DEFAULT_CLOCK
    return Clock(int(round(us_per_quarter)), int(numerator), int(denominator))


def grid_counts(piece: Piece, steps_per_quarter: int = 12, tolerance_ticks: float = 1.0
                ) -> tuple[int, int]:
    """(onsets on the grid, onsets): a note's start is on the grid of ``steps_per_quarter``
    steps per quarter when it lies within ``tolerance_ticks`` ticks of the file's time
    division (of 480 per quarter when the piece has none, e.g. SMPTE) of a grid point."""
    return grid_counts_many([piece], steps_per_quarter, tolerance_ticks)[0]


def grid_counts_many(pieces: Sequence[Piece], steps_per_quarter: int = 12,
                     tolerance_ticks: float = 1.0) -> list[tuple[int, int]]:
    """:func:`grid_counts` of each piece, in one vectorised pass (bulk ingest)."""
    starts = [beats_of(p)["start"] for p in pieces]
    sizes = [len(b) for b in starts]
    limit = [tolerance_ticks / (p.ticks_per_beat or SAVE_TICKS_PER_BEAT) * steps_per_quarter
             + 1e-9 for p in pieces]  # steps off a grid point, per piece
    steps = np.concatenate([np.zeros(0), *starts]) * steps_per_quarter  # (n,)
    on = np.abs(steps - np.rint(steps)) <= np.repeat(limit, sizes)
    counts = np.bincount(np.repeat(np.arange(len(pieces)), sizes)[on], minlength=len(pieces))
    return list(zip(counts.tolist(), sizes, strict=True))


def grid_fraction(piece: Piece, steps_per_quarter: int = 12, tolerance_ticks: float = 1.0
                  ) -> float:
    """Share of note onsets on the beat grid (see :func:`grid_counts`); 1.0 with no notes."""
    on, total = grid_counts(piece, steps_per_quarter, tolerance_ticks)
    return on / total if total else 1.0


def is_quantised(piece: Piece, steps_per_quarter: int = 12, threshold: float = 0.9) -> bool:
    """Whether a piece is written on a beat grid: a file with quarter notes (not SMPTE) with
    at least ``threshold`` of its onsets on the grid (see :func:`grid_fraction`)."""
    return piece.ticks_per_beat > 0 and grid_fraction(piece, steps_per_quarter) >= threshold
