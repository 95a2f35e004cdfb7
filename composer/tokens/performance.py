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
and DRUM ids after VELOCITY (:func:`instrument_ranges`), encoded by :mod:`composer.tokens.ensemble`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from composer.core.config import OMIT_DEFAULT, Config
from composer.core.messages import ComposerError, is_int, is_number, require
from composer.midi.io import NOTE_DTYPE, NoteInput, as_note_array, join_notes

NOTE_ON = "NOTE_ON"
NOTE_OFF = "NOTE_OFF"
TIME_SHIFT = "TIME_SHIFT"
VELOCITY = "VELOCITY"
KINDS = (NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY)  # id order of the range table
PROGRAM, DRUM = "PROGRAM", "DRUM"  # instruments=True: after VELOCITY, in this order

# MIDI velocity of a NOTE_ON decoded before any VELOCITY token (it gets the representative
# velocity of this velocity's bin: 63 with 32 bins).
DEFAULT_VELOCITY = 64
MAX_VOCAB_SIZE = 1 << 16  # token ids are stored as uint16


class VocabularyError(ComposerError):
    """A config, event, token id or note that the event vocabulary cannot represent."""


_require = functools.partial(require, error=VocabularyError)


class KindRange(NamedTuple):
    kind: str
    count: int  # number of ids of this kind
    first_value: int  # Event.value of the kind's first id


def _range_table(config: EventConfig) -> tuple[KindRange, ...]:
    """The one ordered table that lays out token ids (order = KINDS, then PROGRAM, DRUM)."""
    return (
        KindRange(NOTE_ON, config.n_pitches, config.min_pitch),  # value: MIDI pitch
        KindRange(NOTE_OFF, config.n_pitches, config.min_pitch),  # value: MIDI pitch
        KindRange(TIME_SHIFT, config.max_shift_steps, 1),  # value: steps
        KindRange(VELOCITY, config.velocity_bins, 0),  # value: bin index
        *instrument_ranges(config),
    )


def instrument_ranges(config: Any) -> tuple[KindRange, ...]:
    """The kinds ``config.instruments`` adds after VELOCITY: PROGRAM_g (GM program g of the
    pitched notes that follow) and DRUM_k (a drum hit of GM drum key k), 128 ids each."""
    return (KindRange(PROGRAM, 128, 0), KindRange(DRUM, 128, 0)) if config.instruments else ()


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

    def _ids(self, kind: str, values: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`encode_event` for values known to be in range."""
        return values - self._first_value[kind] + self.ranges[kind].start

    def split(self, ids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Vectorised :meth:`decode_event` for ids known to be in range: mask per kind, values."""
        starts = np.array([r.start for r in self.ranges.values()])  # (K,)
        firsts = np.array(list(self._first_value.values()))  # (K,)
        kind = np.searchsorted(starts, ids, side="right") - 1  # (T,) index into KINDS
        masks = {name: kind == i for i, name in enumerate(self.ranges)}
        return masks, ids - starts[kind] + firsts[kind]


def shift_steps(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Steps each token id advances time by (0 unless a TIME_SHIFT), same shape as tokens."""
    r = vocab.ranges[TIME_SHIFT]
    return np.where((tokens >= r.start) & (tokens < r.stop), tokens - r.start + 1, 0)


def seconds_of(tokens: np.ndarray, config: EventConfig) -> float:
    """Music time (seconds) that token ids (T,) span."""
    steps = shift_steps(np.asarray(tokens), Vocabulary(config)).sum()
    return float(steps) / config.steps_per_second


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
    arr = arr[kept]
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


def quantise(notes: NoteInput, config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The notes :func:`encode` represents: exactly what ``decode(encode(notes))`` returns.
    Times snap to the nearest step (``np.rint``, halves to even) and every note lasts at
    least one step; notes outside ``min_pitch..max_pitch`` are dropped; velocities become
    their bin's representative; program 0, not drum. Notes of one pitch are then re-paired
    first in, first out as a MIDI reader would: onsets sorted by (start, velocity bin), the
    i-th onset takes the i-th earliest end. Returns NOTE_DTYPE in :func:`canonical_order`."""
    pitch, vbin, start, end, _ = note_steps(notes, config)
    onsets = np.lexsort((vbin, start, pitch))  # (n,) per pitch, by (start, bin)
    offsets = np.lexsort((end, pitch))  # (n,) per pitch, by end; same pitch at each index
    return make_notes(pitch[onsets], vbin[onsets], start[onsets], end[offsets], config)


def encode(notes: NoteInput, config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Token ids (uint16, 1-D) of ``notes``; time starts at 0. Vectorised over all notes.
    Events are ordered by (step, NOTE_OFF before NOTE_ON, pitch, velocity bin). Before each
    event come TIME_SHIFTs for the gap since the previous one (as many full shifts as fit,
    then the remainder) and, before a NOTE_ON, a VELOCITY token when its bin differs from
    the last one emitted (always before the first NOTE_ON)."""
    return encode_many([notes], config)[0]


def _order_by(group: np.ndarray, step: np.ndarray, minor: np.ndarray,
              config: EventConfig) -> np.ndarray:
    """Stable argsort by (group, step, minor) via one int64 key (faster than np.lexsort)."""
    minor_bits = (2 * config.n_pitches * config.velocity_bins - 1).bit_length()
    step_bits = int(step.max(initial=0)).bit_length()
    group_bits = int(group.max(initial=0)).bit_length()
    _require(group_bits + step_bits + minor_bits <= 62, "notes lie too far apart in time to encode")
    key = (((group << step_bits) | step) << minor_bits) | minor
    return np.argsort(key, kind="stable")


def encode_many(pieces: Sequence[NoteInput], config: EventConfig = DEFAULT_CONFIG
                ) -> list[np.ndarray]:
    """``[encode(p, config) for p in pieces]``, computed in one vectorised pass (bulk ingest)."""
    vocab = Vocabulary(config)
    arrays = [as_note_array(p) for p in pieces]
    if not arrays:
        return []
    group = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])  # (n,) piece of note
    notes = join_notes(arrays)
    pitch, vbin, start, end, kept = note_steps(notes, config)
    group, n = group[kept], len(pitch)
    # One ON and one OFF event per note; arrays (2n,) in event order, piece by piece.
    step = np.concatenate([start, end])
    is_on = np.concatenate([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)])
    pitch, vbin, group = np.tile(pitch, 2), np.tile(vbin, 2), np.tile(group, 2)
    minor = (is_on * config.n_pitches + pitch - config.min_pitch) * config.velocity_bins + vbin
    order = _order_by(group, step, minor, config)  # OFF (False) before ON (True)
    step, is_on, pitch, vbin = step[order], is_on[order], pitch[order], vbin[order]
    group = group[order]
    first_of_piece = np.append(True, group[1:] != group[:-1])  # (2n,)

    gap = np.where(first_of_piece, step, np.diff(step, prepend=0))  # time starts at 0
    on_bins, on_group = vbin[is_on], group[is_on]  # (n,)
    new_bin = np.zeros(2 * n, dtype=bool)  # VELOCITY token before this event?
    new_bin[is_on] = np.concatenate([[True], (on_bins[1:] != on_bins[:-1])
                                     | (on_group[1:] != on_group[:-1])])[: len(on_bins)]
    tokens, vel_at, count = shift_tokens(gap, new_bin + 1, vocab, np.uint16)
    tokens[vel_at[new_bin]] = vocab._ids(VELOCITY, vbin[new_bin])
    tokens[vel_at + new_bin] = np.where(
        is_on, vocab._ids(NOTE_ON, pitch), vocab._ids(NOTE_OFF, pitch)
    )
    per_piece = np.bincount(group, weights=count, minlength=len(arrays)).astype(np.int64)
    return np.split(tokens, np.cumsum(per_piece)[:-1])


def check_ids(tokens: Sequence[int] | np.ndarray, vocab: Vocabulary, program: int = 0
              ) -> np.ndarray:
    """Token ids as int64 (1-D, each in the vocabulary; a program in 0..127 beside them), or
    VocabularyError saying what is wrong (the first id outside, and where)."""
    program = operator.index(program)
    _require(0 <= program <= 127, f"program must be in 0..127, got {program}")
    ids = np.asarray(tokens)
    _require(ids.ndim == 1, f"tokens must be a 1-D sequence, got shape {ids.shape}")
    _require(ids.size == 0 or ids.dtype.kind in "iu",
             f"token ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    bad = np.flatnonzero((ids < 0) | (ids >= vocab.size))
    if bad.size:
        i = int(bad[0])
        raise VocabularyError(f"token id {ids[i]} at position {i} is outside the vocabulary "
                              f"(0..{vocab.size - 1})")
    return ids


def decode(tokens: Sequence[int] | np.ndarray, config: EventConfig = DEFAULT_CONFIG,
           program: int = 0) -> np.ndarray:
    """Notes (NOTE_DTYPE, canonical order) of any token sequence a model could emit.
    Ids outside the vocabulary raise VocabularyError. Each NOTE_OFF ends the oldest sounding
    note of its pitch; a NOTE_OFF with none sounding is ignored. A NOTE_ON before any
    VELOCITY gets the velocity of DEFAULT_VELOCITY's bin. A note whose OFF comes at the step
    of its ON lasts one step instead (so it is not lost). A note still sounding at the end
    ends with the sequence, but at most ``max_hanging_seconds`` and at least one step after
    its start. All notes get ``program``; none is a drum."""
    vocab = Vocabulary(config)
    ids = check_ids(tokens, vocab, program)
    if ids.size == 0:
        return np.zeros(0, dtype=NOTE_DTYPE)
    is_kind, value = vocab.split(ids)
    step = np.cumsum(np.where(is_kind[TIME_SHIFT], value, 0))  # (T,) time after each token
    last_vel = np.maximum.accumulate(np.where(is_kind[VELOCITY], np.arange(ids.size), -1))
    vbin = np.where(last_vel >= 0, value[last_vel], velocity_to_bin(DEFAULT_VELOCITY, config))

    at = np.flatnonzero(is_kind[NOTE_ON] | is_kind[NOTE_OFF])  # the only events looped over
    sounding: defaultdict[int, deque[tuple[int, int]]] = defaultdict(deque)  # (start, bin)
    rows: list[tuple[int, int, int, int]] = []  # (pitch, bin, start step, end step)
    for on, p, s, b in zip(is_kind[NOTE_ON][at].tolist(), value[at].tolist(),
                           step[at].tolist(), vbin[at].tolist(), strict=True):
        if on:
            sounding[p].append((s, b))
        elif sounding[p]:
            s0, b0 = sounding[p].popleft()
            rows.append((p, b0, s0, s))
    n_closed = len(rows)
    final = int(step[-1])
    rows.extend((p, b0, s0, final) for p, queue in sounding.items() for s0, b0 in queue)

    pitch, nbin, start, end = np.array(rows, dtype=np.int64).reshape(-1, 4).T  # each (n,)
    hanging = np.arange(len(rows)) >= n_closed
    end = np.where(hanging, np.minimum(end, start + config.max_hanging_steps), end)
    end = np.maximum(end, start + 1)  # zero-length and end-of-sequence notes: one step
    return make_notes(pitch, nbin, start, end, config, program)
