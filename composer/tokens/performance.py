"""Performance events: the token vocabulary composer's model reads and writes.

A piece becomes one flat sequence of integer tokens, in the style of Performance RNN
(Oore et al. 2018; Magenta's ``performance_lib``)::

    NOTE_ON_p         start a note of MIDI pitch p
    NOTE_OFF_p        end the oldest sounding note of pitch p (first in, first out)
    TIME_SHIFT_<t>ms  advance time by 1..max_shift_steps steps (printed in milliseconds)
    VELOCITY_b        velocity bin b for the NOTE_ONs that follow

Token ids come from one ordered range table (NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY); with
the default :class:`EventConfig` that is Magenta's 388-token layout: NOTE_ON_p = p,
NOTE_OFF_p = 128 + p, TIME_SHIFT of k steps = 255 + k, VELOCITY_b = 356 + b.

Encoding is lossy (times snap to steps, velocities to bins; program and drum flags are
dropped). :func:`quantise` applies exactly that loss, so ``decode(encode(x))`` equals
``quantise(x)`` field by field for every note array ``x``. ``instruments=True`` adds PROGRAM
and DRUM ids after VELOCITY (:func:`composer.tokens.vocab.instrument_ranges`), the option of
:mod:`composer.tokens.ensemble`. :class:`Performance` is this kind of
:class:`composer.tokens.vocab.Events`; the module's ``encode``/``decode``/``quantise`` are it
for one config.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from composer.core.config import OMIT_DEFAULT, Config
from composer.core.messages import is_int, is_number, require
from composer.midi.io import NOTE_DTYPE, NoteInput, Piece, as_note_array
from composer.tokens.ensemble import DRUM, DRUM_SECONDS, PROGRAM
from composer.tokens.vocab import (
    MAX_VOCAB_SIZE,
    PERFORMANCE,
    VELOCITY,
    Events,
    KindRange,
    VocabularyError,
    instrument_ranges,
)

NOTE_ON = "NOTE_ON"
NOTE_OFF = "NOTE_OFF"
TIME_SHIFT = "TIME_SHIFT"
KINDS = (NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY)  # id order of the range table

# MIDI velocity of a NOTE_ON decoded before any VELOCITY token (it gets the representative
# velocity of this velocity's bin: 63 with 32 bins).
DEFAULT_VELOCITY = 64

_require = functools.partial(require, error=VocabularyError)


def _range_table(config: EventConfig) -> tuple[KindRange, ...]:
    """The one ordered table that lays out token ids (order = KINDS, then PROGRAM, DRUM)."""
    return (
        KindRange(NOTE_ON, config.n_pitches, config.min_pitch),  # value: MIDI pitch
        KindRange(NOTE_OFF, config.n_pitches, config.min_pitch),  # value: MIDI pitch
        KindRange(TIME_SHIFT, config.max_shift_steps, 1),  # value: steps
        KindRange(VELOCITY, config.velocity_bins, 0),  # value: bin index
        *instrument_ranges(config),
    )


@dataclass(frozen=True)
class EventConfig(Config):
    """Parameters of the event representation; saved with every corpus and model."""

    _error = VocabularyError
    _name = "event config"

    steps_per_second: int = 100  # time resolution: 100 steps per second = 10 ms
    max_shift_steps: int = 100  # longest single TIME_SHIFT: 100 steps = 1 s
    velocity_bins: int = 32  # MIDI velocities 1..127 fall into this many bins
    min_pitch: int = 0  # lowest MIDI pitch represented (inclusive); others are dropped
    max_pitch: int = 127  # highest MIDI pitch represented (inclusive)
    max_hanging_seconds: float = 5.0  # decode: longest a note never switched off may last
    # PROGRAM and DRUM tokens: notes keep their instrument, drums are kept
    # (composer.tokens.ensemble)
    instruments: bool = field(default=False, metadata={OMIT_DEFAULT: True})

    def __post_init__(self) -> None:
        _require(self.instruments in (False, True), "event config: instruments must be a bool")
        for f in fields(self)[:-1]:
            value, number = getattr(self, f.name), f.name == "max_hanging_seconds"
            _require(is_number(value) if number else is_int(value), f"event config: {f.name} "
                     f"must be {'a number' if number else 'an integer'}, got {value!r}")
        _require(self.steps_per_second >= 1, "event config: steps_per_second must be >= 1")
        _require(self.max_shift_steps >= 1, "event config: max_shift_steps must be >= 1")
        _require(1 <= self.velocity_bins <= 127,
                 f"event config: velocity_bins must be in 1..127, got {self.velocity_bins}")
        # Every bin must hold some velocity, or bin(representative(b)) != b for the top bins.
        used = math.ceil(127 / self.velocity_bin_size)
        _require(self.velocity_bins == used,
                 f"event config: velocity_bins={self.velocity_bins} gives bins of"
                 f" {self.velocity_bin_size} velocities, which fill only {used} bins; use {used}")
        _require(0 <= self.min_pitch <= 127 and 0 <= self.max_pitch <= 127,
                 f"event config: pitches must be in 0..127, got {self.min_pitch}..{self.max_pitch}")
        _require(self.min_pitch <= self.max_pitch, f"event config: min_pitch ({self.min_pitch})"
                 f" is above max_pitch ({self.max_pitch})")
        _require(math.isfinite(self.max_hanging_seconds) and self.max_hanging_seconds > 0,
                 f"event config: max_hanging_seconds must be > 0, got {self.max_hanging_seconds}")
        n_tokens = sum(r.count for r in _range_table(self))
        _require(n_tokens <= MAX_VOCAB_SIZE,
                 f"event config: vocabulary of {n_tokens} tokens does not fit uint16 ids")

    @property
    def n_pitches(self) -> int:
        """Number of pitches represented (max_pitch - min_pitch + 1)."""
        return self.max_pitch - self.min_pitch + 1

    @property
    def velocity_bin_size(self) -> int:
        """MIDI velocities per bin: ceil(127 / velocity_bins) (4 with 32 bins)."""
        return -(-127 // self.velocity_bins)

    @property
    def max_hanging_steps(self) -> int:
        """``max_hanging_seconds`` in steps (rounded like note times, at least 1)."""
        return max(1, int(np.rint(self.max_hanging_seconds * self.steps_per_second)))


DEFAULT_CONFIG = EventConfig()


@dataclass(frozen=True)
class Event:
    """One event: ``kind`` (one of KINDS, PROGRAM, DRUM) and ``value`` (pitch, steps, bin,
    program or drum key). ``steps_per_second`` only affects how a TIME_SHIFT prints (in ms);
    it takes no part in equality or hashing."""

    kind: str
    value: int
    steps_per_second: int = field(default=DEFAULT_CONFIG.steps_per_second, compare=False)

    def __post_init__(self) -> None:
        _require(self.kind in (*KINDS, PROGRAM, DRUM), f"unknown event kind {self.kind!r}")

    def __str__(self) -> str:
        if self.kind != TIME_SHIFT:
            return f"{self.kind}_{self.value}"
        ms, rest = divmod(self.value * 1000, self.steps_per_second)
        return f"{TIME_SHIFT}_{ms if rest == 0 else self.value * 1000 / self.steps_per_second}ms"


class Vocabulary:
    """The bijection between events and token ids ``0 .. size-1`` for one :class:`EventConfig`."""

    _table = staticmethod(_range_table)  # config -> range table (a subclass: its own layout)

    def __init__(self, config: EventConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        table = self._table(config)
        starts = np.cumsum([0] + [r.count for r in table])  # (K+1,) first id of each kind, size
        self.ranges: dict[str, range] = {  # kind -> its ids, in id order
            r.kind: range(int(a), int(b)) for r, a, b in zip(table, starts[:-1], starts[1:],
                                                              strict=True)}
        self.size = int(starts[-1])
        self._first_value = {r.kind: r.first_value for r in table}

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size}, config={self.config!r})"

    def offset(self, kind: str) -> int:
        """Id of the first event of ``kind``."""
        _require(kind in self.ranges, f"unknown event kind {kind!r}; expected {[*self.ranges]}")
        return self.ranges[kind].start

    def encode_event(self, event: Any) -> int:
        """Token id of ``event``; VocabularyError if its value is out of range."""
        ids, first = self.ranges[event.kind], self._first_value[event.kind]
        index = event.value - first
        _require(0 <= index < len(ids), f"{event} is outside the vocabulary"
                 f" ({event.kind} values {first}..{first + len(ids) - 1})")
        return ids[index]

    def decode_event(self, token: int) -> Event:
        """The event of token id ``token``; VocabularyError outside ``0 .. size-1``."""
        token = operator.index(token)
        for kind, ids in self.ranges.items():
            if token in ids:
                value = token - ids.start + self._first_value[kind]
                return Event(kind, value, self.config.steps_per_second)
        raise VocabularyError(f"token id {token} is outside the vocabulary (0..{self.size - 1})")

    def token_str(self, token: int) -> str:
        """Readable name of a token id, e.g. ``NOTE_ON_60`` or ``TIME_SHIFT_250ms``."""
        return str(self.decode_event(token))

    def ids(self, kind: str, values: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`encode_event` for values known to be in range."""
        return values - self._first_value[kind] + self.ranges[kind].start

    def split(self, ids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Vectorised :meth:`decode_event` for ids known to be in range: mask per kind, values."""
        starts = np.array([r.start for r in self.ranges.values()])  # (K,)
        firsts = np.array(list(self._first_value.values()))  # (K,)
        kind = np.searchsorted(starts, ids, side="right") - 1  # (T,) index into KINDS
        masks = {name: kind == i for i, name in enumerate(self.ranges)}
        return masks, ids - starts[kind] + firsts[kind]


def shift_tokens(gap: np.ndarray, after: np.ndarray, vocab: Vocabulary, dtype: Any
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TIME_SHIFT gap splitting of :func:`encode` (and ``data``'s time-stretch): for each
    event, its ``gap`` (steps since the previous one) as full shifts then the remainder,
    followed by ``after`` (E,) free slots for the event's own tokens. Returns the token array
    (free slots hold full shifts until filled), each event's first free slot (E,) and its
    token count (E,)."""
    r = vocab.ranges[TIME_SHIFT]
    n_full, rest = np.divmod(gap, vocab.config.max_shift_steps)
    n_shift = n_full + (rest > 0)  # TIME_SHIFT tokens before each event
    count = n_shift + after
    first = np.cumsum(count) - count  # (E,) position of each event's first token
    tokens = np.full(int(count.sum()), r.stop - 1, dtype=dtype)  # unset slots: full shifts
    has_rest = rest > 0
    tokens[(first + n_full)[has_rest]] = r.start - 1 + rest[has_rest]
    return tokens, first + n_shift, count


def velocity_to_bin(velocity: Any, config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Velocity bin of MIDI velocities (clipped to 1..127 first): ``(v - 1) // bin_size``.
    Works elementwise; returns int64 of the input's shape (0-d for a scalar)."""
    v = np.clip(np.asarray(velocity, dtype=np.int64), 1, 127)
    return (v - 1) // config.velocity_bin_size


def bin_to_velocity(vbin: Any, config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Representative MIDI velocity of bins: ``min(127, 1 + b * bin_size + bin_size // 2)``.
    ``velocity_to_bin(bin_to_velocity(b)) == b`` for every bin. Elementwise; int64."""
    size = config.velocity_bin_size
    return np.minimum(127, 1 + np.asarray(vbin, dtype=np.int64) * size + size // 2)


def canonical_order(notes: np.ndarray) -> np.ndarray:
    """NOTE_DTYPE ``notes`` sorted by (start, pitch, end, velocity), then program, is_drum."""
    keys = ("is_drum", "program", "velocity", "end", "pitch", "start")  # last = primary
    return notes[np.lexsort([notes[k] for k in keys])]


def note_steps(notes: NoteInput, config: EventConfig) -> tuple[np.ndarray, ...]:
    """Notes in the pitch range as int64 arrays (n,): pitch, velocity bin, start/end step,
    and the mask of the input notes that are kept."""
    arr = as_note_array(notes)
    kept = (arr["pitch"] >= config.min_pitch) & (arr["pitch"] <= config.max_pitch)
    arr = np.compress(kept, arr)  # a mask indexing packed records is many times slower
    _require(bool(np.isfinite(arr["start"]).all() and np.isfinite(arr["end"]).all()),
             "note times must be finite")
    sps = config.steps_per_second
    start = np.rint(arr["start"] * sps).astype(np.int64)
    _require(not (start < 0).any(), "note start times must be >= 0")
    end = np.maximum(np.rint(arr["end"] * sps).astype(np.int64), start + 1)  # >= 1 step long
    vbin = velocity_to_bin(arr["velocity"], config)
    return arr["pitch"].astype(np.int64), vbin, start, end, kept


def make_notes(pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray, end: np.ndarray,
               config: EventConfig, program: Any = 0, is_drum: Any = False) -> np.ndarray:
    """NOTE_DTYPE array, canonical order, from int arrays (n,) of pitch, bin and steps (and
    a program and drum flag, each one value or (n,))."""
    notes = np.zeros(len(pitch), dtype=NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = pitch, bin_to_velocity(vbin, config)
    notes["start"] = start.astype(np.float64) / config.steps_per_second
    notes["end"] = end.astype(np.float64) / config.steps_per_second
    notes["program"], notes["is_drum"] = program, is_drum
    return canonical_order(notes)




class Performance(Events):
    """Performance events (``kind`` "performance"): a note is a NOTE_ON and a NOTE_OFF,
    events sit on a grid of ``steps_per_second``, gaps are TIME_SHIFTs of 1..max_shift_steps.

    Encoding: events ordered by (step, NOTE_OFF before NOTE_ON, program, pitch, velocity
    bin); before each event come TIME_SHIFTs for the gap since the previous one (as many
    full shifts as fit, then the remainder) and, before a NOTE_ON, a VELOCITY token when its
    bin differs from the last one emitted (always before the first NOTE_ON).

    Quantising: times snap to the nearest step (``np.rint``, halves to even) and every note
    lasts at least one step; notes outside ``min_pitch..max_pitch`` are dropped; velocities
    become their bin's representative. Notes of one pitch are then re-paired first in,
    first out as a MIDI reader would: onsets sorted by (start, program, velocity bin), the
    i-th onset takes the i-th earliest end.

    Decoding: each NOTE_OFF ends the oldest sounding note of its pitch; a NOTE_OFF with none
    sounding is ignored; a note whose OFF comes at the step of its ON lasts one step instead
    (so it is not lost); a note still sounding at the end ends with the sequence, but at
    most ``max_hanging_seconds`` (and ``max_note_seconds``) and at least one step after its
    start; every note is clipped to ``max_note_seconds``. The piece has no beats."""

    kind, saves_kind = PERFORMANCE, False  # dicts without "kind" are performance events
    config_type = EventConfig
    vocabulary_type = Vocabulary
    time_kind, start_kind, end_kind = TIME_SHIFT, NOTE_ON, NOTE_OFF

    def grid(self) -> str:
        return f"{1000 / self.config.steps_per_second:g} ms"

    def steps_per_second(self, clock: Any = None) -> float:
        return float(self.config.steps_per_second)

    def shift_values(self) -> np.ndarray:
        return np.arange(1, self.config.max_shift_steps + 1)

    def default_bin(self) -> int:
        return int(velocity_to_bin(DEFAULT_VELOCITY, self.config))

    def drum_steps(self) -> int:
        return max(1, round(DRUM_SECONDS * self.config.steps_per_second))

    def _steps(self, notes: np.ndarray, times: np.ndarray | None, config: Any
               ) -> tuple[np.ndarray, ...]:
        return note_steps(notes, config)[:4]

    def _time_tokens(self, gap: np.ndarray, after: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return shift_tokens(gap, after, self.vocab, np.uint16)

    def _quantised(self, pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray,
                   last: np.ndarray, prog: np.ndarray) -> tuple[np.ndarray, ...]:
        # Notes of one pitch are re-paired first in, first out as a MIDI reader would:
        # onsets by (start, program, bin), the i-th onset takes the i-th earliest end.
        onsets, offsets = np.lexsort((vbin, prog, start, pitch)), np.lexsort((last, pitch))
        return pitch[onsets], vbin[onsets], start[onsets], last[offsets], prog[onsets]

    def _pitched(self, is_kind: dict[str, np.ndarray], value: np.ndarray, step: np.ndarray,
                 vbin: np.ndarray, prog: np.ndarray, max_note_seconds: float | None
                 ) -> tuple[np.ndarray, ...]:
        at = np.flatnonzero(is_kind[NOTE_ON] | is_kind[NOTE_OFF])  # the only events looped over
        sounding: defaultdict[int, deque[tuple[int, int, int]]] = defaultdict(deque)
        rows: list[tuple[int, int, int, int, int]] = []  # (pitch, bin, start, end, program)
        for on, p, s, b, g in zip(is_kind[NOTE_ON][at].tolist(), value[at].tolist(),
                                  step[at].tolist(), vbin[at].tolist(), prog[at].tolist(),
                                  strict=True):
            if on:
                sounding[p].append((s, b, g))
            elif sounding[p]:
                s0, b0, g0 = sounding[p].popleft()
                rows.append((p, b0, s0, s, g0))
        n_closed, final = len(rows), int(step[-1]) if len(step) else 0
        rows.extend((p, b0, s0, final, g0) for p, queue in sounding.items() for s0, b0, g0 in queue)
        pitch, nbin, start, end, nprog = np.array(rows, dtype=np.int64).reshape(-1, 5).T
        config = self.config
        if max_note_seconds is not None:
            config = replace(config, max_hanging_seconds=min(config.max_hanging_seconds,
                                                             max_note_seconds))
        hanging = np.arange(len(rows)) >= n_closed
        end = np.where(hanging, np.minimum(end, start + config.max_hanging_steps), end)
        return pitch, nbin, start, np.maximum(end, start + 1), nprog

    def _piece(self, pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray, end: np.ndarray,
               prog: np.ndarray, drum: np.ndarray, clock: Any) -> Piece:
        notes = make_notes(pitch, vbin, start, end, self.config, prog, drum)
        return Piece(notes, float(notes["end"].max()) if len(notes) else 0.0)

    def decode(self, tokens: Sequence[int] | np.ndarray, clock: Any = None, program: int = 0,
               max_note_seconds: float | None = None) -> Piece:
        piece = super().decode(tokens, clock, program, max_note_seconds)
        if max_note_seconds is None:
            return piece
        notes = piece.notes
        notes["end"] = np.minimum(notes["end"], notes["start"] + max_note_seconds)
        return Piece(notes, float(notes["end"].max()) if len(notes) else 0.0)


def quantise(notes: NoteInput, config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The notes :func:`encode` represents: exactly what ``decode(encode(notes))`` returns
    (NOTE_DTYPE in :func:`canonical_order`; see :class:`Performance`)."""
    return Performance(config).quantise(notes).notes


def encode(notes: NoteInput, config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Token ids (uint16, 1-D) of ``notes``; time starts at 0 (see :class:`Performance`)."""
    return Performance(config).encode(notes)


def encode_many(pieces: Sequence[NoteInput], config: EventConfig = DEFAULT_CONFIG
                ) -> list[np.ndarray]:
    """``[encode(p, config) for p in pieces]``, computed in one vectorised pass (bulk ingest)."""
    return Performance(config).encode_many(pieces)


def decode(tokens: Sequence[int] | np.ndarray, config: EventConfig = DEFAULT_CONFIG,
           program: int = 0) -> np.ndarray:
    """Notes (NOTE_DTYPE, canonical order) of any token sequence a model could emit (see
    :class:`Performance`); a NOTE_ON before any VELOCITY gets the velocity of
    DEFAULT_VELOCITY's bin; all notes get ``program``, none is a drum (without instruments)."""
    return Performance(config).decode(tokens, program=program).notes
