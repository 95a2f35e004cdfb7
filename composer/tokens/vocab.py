"""The vocabulary base: one pipeline from note arrays to token ids and back, shared by both
kinds, each of which overrides a few hooks (as MidiTok's tokenizer base does).

- ``performance`` (:class:`composer.tokens.performance.Performance`): NOTE_ON / NOTE_OFF /
  TIME_SHIFT / VELOCITY on a 10 ms grid; right for performed, unquantised MIDI.
- ``notes`` (:class:`composer.tokens.beats.BeatNotes`): PITCH / DURATION / SHIFT / VELOCITY
  in fractions of a beat, with the tempo and time signature (a
  :class:`~composer.tokens.beats.Clock`) kept beside the tokens; right for quantised MIDI.

:class:`Events` owns what both share: the id table (one ordered range table per config, see
:class:`composer.tokens.performance.Vocabulary`), the checks of token ids, encoding (note
events sorted, time tokens between them, PROGRAM and VELOCITY tokens where they change, the
note's own tokens), decoding (time, velocity and program state per token, then the notes),
quantising, start tokens and the saved dict. A kind sets its token kinds (``time_kind``,
``start_kind``, ``end_kind`` or ``length_kind``) and overrides the hooks, most of them one
line: ``_steps`` (notes on its grid; ``_times``: what else it reads of a piece),
``_time_tokens`` (gaps as shifts), ``_pitched`` (the notes of decoded tokens: how a note
ends), ``_quantised`` (the note ends encoding keeps), ``_piece`` (notes in steps to a
Piece; ``clock_of``), ``shift_values``, ``steps_per_second``, ``default_bin``,
``drum_steps``, ``grid``. Instruments are an option
composed in, not a kind: :mod:`composer.tokens.ensemble`'s ``SOLO`` or ``ENSEMBLE`` by
``config.instruments``.

The dict form (saved with every corpus and checkpoint as ``events``) is the config's own
dict, plus ``"kind": "notes"`` for the beat vocabulary: a dict without ``kind`` (every
checkpoint written before the beat vocabulary existed) is performance events, exactly as
before; ``instruments`` is in it only when true, so older dicts load with the same ids.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np

from composer.core.messages import ComposerError, require
from composer.midi.io import NoteInput, Piece, as_note_array, join_records
from composer.tokens.ensemble import (
    DRUM,
    DRUM_PROGRAM_KEY,
    ENSEMBLE,
    PROGRAM,
    SOLO,
    Solo,
    changes,
    changes_among,
    last_value,
)

PERFORMANCE, NOTES = "performance", "notes"
KINDS = (PERFORMANCE, NOTES)
CHOICES = (*KINDS, "auto")  # what prepare / train accept
VELOCITY = "VELOCITY"  # velocity bin of the notes that follow (both kinds)
MAX_VOCAB_SIZE = 1 << 16  # token ids are stored as uint16
END, START, HIT = 0, 1, 2  # encoding: what an event is (note end, note start, drum hit)


class VocabularyError(ComposerError):
    """A config, event, token id or note that an event vocabulary cannot represent."""


_require = functools.partial(require, error=VocabularyError)


class KindRange(NamedTuple):
    kind: str
    count: int  # number of ids of this kind
    first_value: int  # Event.value of the kind's first id


def instrument_ranges(config: Any) -> tuple[KindRange, ...]:
    """The kinds ``config.instruments`` adds after VELOCITY: PROGRAM_g (GM program g of the
    pitched notes that follow) and DRUM_k (a drum hit of GM drum key k), 128 ids each."""
    return tuple(KindRange(k, 128, 0) for k in (ENSEMBLE if config.instruments else SOLO).kinds)


def check_ids(tokens: Sequence[int] | np.ndarray, size: int, program: int = 0) -> np.ndarray:
    """Token ids as int64 (1-D, each in ``0 .. size-1``; a program in 0..127 beside them),
    or VocabularyError saying what is wrong (the first id outside, and where)."""
    program = operator.index(program)
    _require(0 <= program <= 127, f"program must be in 0..127, got {program}")
    ids = np.asarray(tokens)
    _require(ids.ndim == 1, f"tokens must be a 1-D sequence, got shape {ids.shape}")
    _require(ids.size == 0 or ids.dtype.kind in "iu",
             f"token ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    bad = np.flatnonzero((ids < 0) | (ids >= size))
    if bad.size:
        i = int(bad[0])
        raise VocabularyError(f"token id {ids[i]} at position {i} is outside the vocabulary "
                              f"(0..{size - 1})")
    return ids


def _sorted_rows(parts: Sequence[Sequence[np.ndarray | int]]) -> list[np.ndarray]:
    """The rows of ``parts`` (each a list of columns: int64 arrays (n,) >= 0, at least one,
    or scalars) end to end, sorted by their columns (major first), as one int64 array per
    column: one sort of one packed int64 key, unpacked (much faster than np.lexsort and
    gathering every column); VocabularyError when the key would not fit."""
    parts = [[np.asarray(c, np.int64) for c in part] for part in parts]
    sizes = [max(c.size for c in part if c.ndim) for part in parts]
    full = [part for part, n in zip(parts, sizes, strict=True) if n]  # parts with rows
    bits = [max((int(c.max()) for c in column), default=0).bit_length()
            for column in zip(*full, strict=True)] if full else [0] * len(parts[0])
    _require(sum(bits) <= 62, "notes lie too far apart in time to encode")
    keys = [np.zeros(0, np.int64)]
    for part, n in zip(full, [n for n in sizes if n], strict=True):
        key = np.zeros(n, np.int64)
        for column, b in zip(part, bits, strict=True):
            if b:  # a column of zeros (no programs, no lengths) orders nothing
                key = (key << b) | column
        keys.append(key)
    key = np.sort(np.concatenate(keys), kind="stable")  # timsort: runs (pieces) help
    out, shift = [], sum(bits)
    for b in bits:
        shift -= b
        out.append((key >> shift) & ((1 << b) - 1))
    return out


@dataclass(frozen=True, init=False)
class Events:
    """One event vocabulary: a kind (a subclass) and its config. ``Events(kind, config)``
    builds the subclass of that kind; ``Performance(config)`` / ``BeatNotes(config)`` too."""

    config: Any

    kind: ClassVar[str]  # the name saved in dicts (one of KINDS)
    config_type: ClassVar[type]
    vocabulary_type: ClassVar[type]  # the id table of a config
    time_kind: ClassVar[str]  # the kind that advances time (value order = shift_values)
    start_kind: ClassVar[str]  # the kind that starts a note (pitch order)
    end_kind: ClassVar[str | None] = None  # the kind that ends one, if any (pitch order)
    length_kind: ClassVar[str | None] = None  # the kind right after a start giving its length
    saves_kind: ClassVar[bool] = True  # to_dict names the kind (performance: no, as of old)
    _kinds: ClassVar[dict[str, type[Events]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Events._kinds[cls.kind] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> Events:
        if cls is Events:  # Events(kind, config): the subclass of that kind
            kind = args[0] if args else kwargs.get("kind")
            if kind not in Events._kinds:
                raise VocabularyError(f"unknown event vocabulary {kind!r}; expected one of"
                                      f" {KINDS}")
            cls = Events._kinds[kind]
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = ("kind", "config") if len(args) == 2 else ("config",)
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        config = given.get("config")
        if given.get("kind", self.kind) != self.kind or not isinstance(config, self.config_type):
            raise VocabularyError(f"event vocabulary {given.get('kind', self.kind)!r} with"
                                  f" {config!r}")
        object.__setattr__(self, "config", config)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Events:
        """From :meth:`to_dict` form; no ``kind``: performance events (older checkpoints)."""
        d = dict(d)
        kind = d.pop("kind", PERFORMANCE)
        if kind not in Events._kinds:
            raise VocabularyError(f"unknown event vocabulary {kind!r}; expected one of {KINDS}")
        sub = Events._kinds[kind]
        return sub(sub.config_type.from_dict(d))

    def to_dict(self) -> dict[str, Any]:
        """The config's dict, with ``kind`` unless the kind predates it (performance)."""
        d = self.config.to_dict()
        return {"kind": self.kind, **d} if self.saves_kind else d

    @property
    def is_notes(self) -> bool:
        """Whether this is the beat vocabulary."""
        return self.kind == NOTES

    @functools.cached_property
    def vocab(self) -> Any:
        """The token-id bijection of the config (built once)."""
        return self.vocabulary_type(self.config)

    @property
    def size(self) -> int:
        """Number of token ids."""
        return self.vocab.size

    @property
    def instruments(self) -> bool:
        """Whether notes carry their instrument (PROGRAM and DRUM tokens)."""
        return self.config.instruments

    @property
    def option(self) -> Solo:
        """The instrument option composed in: ENSEMBLE with ``instruments``, else SOLO."""
        return ENSEMBLE if self.config.instruments else SOLO

    def describe(self) -> str:
        """One phrase: ``notes (1/12 beat)`` or ``performance (10 ms, instruments)``."""
        return f"{self.kind} ({self.grid()}{', instruments' if self.instruments else ''})"

    def pitch_ids(self) -> list[range]:
        """The id ranges whose tokens carry a pitch, each in pitch order (transposition adds
        k semitones by adding k to such an id)."""
        return [self.vocab.ranges[k] for k in (self.start_kind, self.end_kind) if k]

    def note_start_ids(self) -> range:
        """The ids that start a note (NOTE_ON or PITCH), in pitch order."""
        return self.vocab.ranges[self.start_kind]

    def instrument_ids(self) -> tuple[range, range]:
        """The PROGRAM ids (program order) and the DRUM ids (key order); empty ranges for a
        vocabulary without instruments."""
        r, end = self.vocab.ranges, range(self.size, self.size)
        return r.get(PROGRAM, end), r.get(DRUM, end)

    def token_steps(self) -> np.ndarray:
        """(V,) int64: the time steps each token advances (shifts; 0 for the rest)."""
        out = np.zeros(self.size, np.int64)
        out[self.vocab.ranges[self.time_kind]] = self.shift_values()
        return out

    def seconds_of(self, tokens: Sequence[int] | np.ndarray, clock: Any = None) -> float:
        """Seconds of music a token sequence spans (the sum of its shifts; the beat
        vocabulary at ``clock``'s tempo, 120 bpm when None)."""
        steps = self.token_steps()[np.asarray(tokens, dtype=np.int64)]
        return float(steps.sum()) / self.steps_per_second(clock)

    def start_tokens(self) -> np.ndarray:
        """The context of an unseeded continuation: one VELOCITY token, the bin of
        DEFAULT_VELOCITY (encoded pieces carry one before their first note); a vocabulary
        without velocities gets the shortest shift instead."""
        r = self.vocab.ranges
        if not r[VELOCITY]:
            return np.array([r[self.time_kind][0]], np.int64)
        return np.array([r[VELOCITY][self.default_bin()]], np.int64)

    # ------------------------------------------------------------------ the pipeline

    @functools.cached_property
    def _wide(self) -> Any:
        """The config with every pitch in range (drum keys are all kept)."""
        return replace(self.config, min_pitch=0, max_pitch=127)

    def _split(self, pieces: Sequence[NoteInput]) -> tuple[tuple[np.ndarray, ...], ...]:
        """The notes of pieces on the grid as the instrument option splits them: pitched
        notes (pitch, bin, start, end value), their programs and pieces, and drum hits
        (key, bin, start) and their pieces; int64 arrays."""
        arrays = [as_note_array(p) for p in pieces]
        notes = join_records(arrays)
        group = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])  # (n,) piece
        times = self._times(pieces)  # (n,) or None
        pitched, drum, program = self.option.parts(notes, self.config.min_pitch,
                                                   self.config.max_pitch)
        # np.compress: indexing packed records with a mask is many times slower
        hits = self._steps(np.compress(drum, notes), None if times is None else times[drum],
                           self._wide)
        pitch = self._steps(np.compress(pitched, notes), None if times is None else times[pitched],
                            self.config)
        return pitch, (program[pitched], group[pitched]), (*hits[:3], group[drum])

    def encode(self, piece: NoteInput) -> np.ndarray:
        """Token ids (uint16) of a piece."""
        return self.encode_many([piece])[0]

    def encode_many(self, pieces: Sequence[NoteInput]) -> list[np.ndarray]:
        """Token ids (uint16) of each piece, in one vectorised pass over all their events,
        ordered by (step, note ends first, program (drum hits last), pitch, length, velocity
        bin)."""
        if not pieces:
            return []
        (pitch, vbin, start, last), (prog, pgroup), (key, dbin, dstart, dgroup) = \
            self._split(pieces)
        e = len(pitch) * bool(self.end_kind)  # END events
        length = last if self.length_kind else 0
        # per event (the note ends, the note starts, the drum hits): piece, step, what,
        # program (drums after all), pitch or drum key, length index (a DURATION), bin
        group, step, what, prog, pitch, length, vbin = _sorted_rows([
            (pgroup[:e], last[:e], END, 0, pitch[:e], 0, vbin[:e]),
            (pgroup, start, START, prog, pitch, length, vbin),
            (dgroup, dstart, HIT, DRUM_PROGRAM_KEY, key, 0, dbin)])
        gap = np.where(changes(group, group), step, np.diff(step, prepend=0))
        starts = what == START
        new_prog = self.option.program_flags(starts, prog, group)
        new_bin = changes_among(what != END, vbin, group) & bool(self.vocab.ranges[VELOCITY])
        own = 1 + starts * bool(self.length_kind)  # the event's own tokens
        tokens, at, count = self._time_tokens(gap, own + new_prog + new_bin)
        for mask, kind, values in ((new_prog, PROGRAM, prog), (new_bin, VELOCITY, vbin)):
            self._put(tokens, at, mask, kind, values)
            at = at + mask
        pitch = np.clip(pitch, 0, 127)
        for w, kind in ((END, self.end_kind), (START, self.start_kind), (HIT, DRUM)):
            self._put(tokens, at, starts if w == START else what == w, kind, pitch)
        if self.length_kind:
            self._put(tokens, at + 1, starts, self.length_kind, length)
        per_piece = np.bincount(group, weights=count, minlength=len(pieces)).astype(np.int64)
        return np.split(tokens, np.cumsum(per_piece)[:-1])

    def _put(self, tokens: np.ndarray, at: np.ndarray, mask: np.ndarray, kind: Any,
             values: np.ndarray) -> None:
        """``tokens[at[mask]]`` = the ids of ``kind`` of ``values[mask]``."""
        if mask.any():
            tokens[at[mask]] = self.vocab.ids(kind, values[mask])

    def quantise(self, piece: NoteInput) -> Piece:
        """What encoding keeps of a piece: ``decode(encode(piece))`` (the beat vocabulary
        at the piece's own clock)."""
        pitched, (prog, _), hits = self._split([piece])
        return self._assemble(self._quantised(*pitched, prog), hits[:3], self.clock_of(piece))

    def decode(self, tokens: Sequence[int] | np.ndarray, clock: Any = None, program: int = 0,
               max_note_seconds: float | None = None) -> Piece:
        """The piece of any token sequence a model could emit (ids outside the vocabulary
        raise VocabularyError): time is the sum of the shifts so far; a note gets the
        velocity bin of the last VELOCITY (DEFAULT_VELOCITY's before any) and, with
        instruments, the program of the last PROGRAM (``program`` before any; without
        instruments every note gets ``program``); a DRUM token is a drum hit. How tokens
        make notes is the kind's (``_pitched``); ``clock``: the beat vocabulary's tempo and
        time signature; ``max_note_seconds``: performance events' longest note."""
        ids = check_ids(tokens, self.size, program)
        is_kind, value = self.vocab.split(ids)
        step = np.cumsum(self.token_steps()[ids])  # (T,) time after each token
        vbin = last_value(is_kind, value, VELOCITY, self.default_bin())
        prog = self.option.programs(is_kind, value, program)
        d = self.option.drums(is_kind)
        pitched = self._pitched(is_kind, value, step, vbin, prog, max_note_seconds)
        return self._assemble(pitched, (value[d], vbin[d], step[d]), clock)

    def _assemble(self, pitched: Sequence[np.ndarray], hits: Sequence[np.ndarray], clock: Any
                  ) -> Piece:
        """The piece of pitched notes (pitch, bin, start, end, program) and drum hits (key,
        bin, start; :meth:`drum_steps` long, program 0), in canonical order."""
        (pitch, vbin, start, end, prog), (key, dbin, dstart) = pitched, hits
        n, m = len(pitch), len(key)
        return self._piece(np.concatenate([pitch, key]), np.concatenate([vbin, dbin]),
                           np.concatenate([start, dstart]),
                           np.concatenate([end, dstart + self.drum_steps()]),
                           np.concatenate([prog, np.zeros(m, np.int64)]),
                           np.arange(n + m) >= n, clock)

    # ------------------------------------------------------------------ the hooks

    def clock_of(self, piece: NoteInput) -> Any:
        """The clock a piece's quantised form keeps (None: the kind has none)."""
        return None

    def grid(self) -> str:
        """The time grid in words, e.g. ``10 ms``."""
        raise NotImplementedError

    def steps_per_second(self, clock: Any = None) -> float:
        """Time steps per second of music (at ``clock``'s tempo for the beat vocabulary)."""
        raise NotImplementedError

    def shift_values(self) -> np.ndarray:
        """Steps of each ``time_kind`` value, in id order."""
        raise NotImplementedError

    def default_bin(self) -> int:
        """The velocity bin of a note before any VELOCITY token."""
        raise NotImplementedError

    def drum_steps(self) -> int:
        """Steps a decoded drum hit lasts."""
        raise NotImplementedError

    def _times(self, pieces: Sequence[NoteInput]) -> np.ndarray | None:
        """The times of all the pieces' notes (concatenated) that ``_steps`` reads beside
        their seconds (the beat vocabulary: beats), or None."""
        return None

    def _steps(self, notes: np.ndarray, times: np.ndarray | None, config: Any
               ) -> tuple[np.ndarray, ...]:
        """Notes in ``config``'s pitch range on the grid as int64 arrays (n,): pitch, velocity
        bin, start step, end value (the end step or a length index)."""
        raise NotImplementedError

    def _time_tokens(self, gap: np.ndarray, after: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each event's gap (steps) as time tokens, then ``after`` free slots: the uint16
        tokens, each event's first free slot and its token count."""
        raise NotImplementedError

    def _quantised(self, pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray,
                   last: np.ndarray, prog: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pitched notes as decoding returns them: (pitch, bin, start, end step, program)."""
        raise NotImplementedError

    def _pitched(self, is_kind: dict[str, np.ndarray], value: np.ndarray, step: np.ndarray,
                 vbin: np.ndarray, prog: np.ndarray, max_note_seconds: float | None
                 ) -> tuple[np.ndarray, ...]:
        """The pitched notes of decoded tokens: (pitch, bin, start, end step, program)."""
        raise NotImplementedError

    def _piece(self, pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray, end: np.ndarray,
               prog: np.ndarray, drum: np.ndarray, clock: Any) -> Piece:
        """The Piece of notes given in steps, in canonical order."""
        raise NotImplementedError


def vocabulary_of(d: Mapping[str, Any] | Events | Any) -> Events:
    """The :class:`Events` of a saved ``events`` dict (see :meth:`Events.from_dict`), or of
    a config object."""
    if isinstance(d, Events):
        return d
    for sub in Events._kinds.values():
        if isinstance(d, sub.config_type):
            return sub(d)
    return Events.from_dict(d)
