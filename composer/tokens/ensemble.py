"""Instrument-aware event vocabularies: notes keep their instrument, drums are kept.

Both vocabularies (``instruments=True`` in :class:`~composer.tokens.performance.EventConfig` or
:class:`~composer.tokens.beats.NoteEventConfig`) gain two kinds after VELOCITY (see
:func:`composer.tokens.performance.instrument_ranges`)::

    PROGRAM_g   the pitched notes that follow are played by General MIDI program g
    DRUM_k      a drum hit (General MIDI channel 10) of drum key k, now

Encoding (one piece): events in time order as without instruments, and at one time the
note starts grouped by program (ascending), drum hits last. A PROGRAM token comes before a
note start whose program differs from the last PROGRAM written (always before the first
pitched note); VELOCITY works as without instruments, for drum hits too. So a token group
is ``[shifts] [PROGRAM] [VELOCITY] NOTE_ON_p`` (performance events; a NOTE_OFF needs no
PROGRAM) or ``[shifts] [PROGRAM] [VELOCITY] PITCH_p DURATION_d`` (the beat vocabulary), and
``[shifts] [VELOCITY] DRUM_k`` for a drum hit.

Rules (what :func:`quantise` applies, so ``decode(encode(x)) == quantise(x)``):

- A note's instrument is its program and drum flag as loaded (:func:`composer.midi.io.load`:
  the last program change on its track and channel at or before its start, so a program
  change mid-track switches the instrument of the notes after it; a channel without a
  program change is program 0, piano; channel 10 is drums whatever its program).
- Drum hits keep their key (any 0..127: DRUM ids are not pitches and are never transposed
  by :mod:`composer.training.data`), start and velocity; their length is not kept (GM drums are
  one-shots): decoded hits last DRUM_SECONDS (performance) or a sixteenth (beats); their
  program is 0.
- Performance events: NOTE_OFF_p ends the oldest sounding note of pitch p of any instrument
  (first in, first out across instruments). Two instruments holding one pitch at once
  (a unison) are re-paired like that, so the earlier-started one ends first; notes of one
  pitch starting at one step are taken in program order.
- Decoding: pitched notes before any PROGRAM get the ``program`` argument.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from composer.midi.io import NoteInput, Piece, as_note_array
from composer.tokens.beats import (
    DEFAULT_CLOCK,
    DURATION,
    PITCH,
    SHIFT,
    Clock,
    NoteEventConfig,
    NoteVocabulary,
    beats_of,
    clock_of,
    make_piece,
    shift_slots,
)
from composer.tokens.beats import note_steps as beat_steps
from composer.tokens.performance import (
    DEFAULT_VELOCITY,
    DRUM,
    NOTE_OFF,
    NOTE_ON,
    PROGRAM,
    TIME_SHIFT,
    VELOCITY,
    EventConfig,
    Vocabulary,
    check_ids,
    make_notes,
    note_steps,
    shift_tokens,
    velocity_to_bin,
)

DRUM_SECONDS = 0.1  # performance events: a decoded drum hit lasts this long
DRUM_PROGRAM_KEY = 128  # drums sort after every program at one time


def drum_steps(config: EventConfig | NoteEventConfig) -> int:
    """Steps a decoded drum hit lasts: DRUM_SECONDS, or a sixteenth note (at least 1)."""
    if isinstance(config, NoteEventConfig):
        return max(1, config.steps_per_quarter // 4)
    return max(1, round(DRUM_SECONDS * config.steps_per_second))


def _split_notes(notes: np.ndarray, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Masks (n,) of the pitched notes in the pitch range and of the drum notes."""
    drum = notes["is_drum"].astype(bool)
    inside = (notes["pitch"] >= config.min_pitch) & (notes["pitch"] <= config.max_pitch)
    return ~drum & inside, drum


def _wide(config: Any) -> Any:
    """``config`` with every pitch in range (drum keys are all kept)."""
    return replace(config, min_pitch=0, max_pitch=127)


def _firsts(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(n,) bool: where a value differs from the previous one of its group (or starts it)."""
    out = np.ones(len(values), dtype=bool)
    out[1:] = (values[1:] != values[:-1]) | (group[1:] != group[:-1])
    return out


def _flags(mask: np.ndarray, values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(E,) bool over all events: at the events of ``mask``, whether ``values`` changes
    there (among the masked events of its piece)."""
    out = np.zeros(len(mask), dtype=bool)
    out[mask] = _firsts(values[mask], group[mask])
    return out


def _state(is_kind: dict[str, np.ndarray], value: np.ndarray, kind: str, default: int
           ) -> np.ndarray:
    """(T,) the value of the last ``kind`` token at or before each position, else default."""
    last = np.maximum.accumulate(np.where(is_kind[kind], np.arange(len(value)), -1))
    return np.where(last >= 0, value[np.maximum(last, 0)], default)


# ------------------------------------------------------------------ performance events


def _perf_events(notes: np.ndarray, config: EventConfig) -> tuple[np.ndarray, ...]:
    """One piece's notes as int64 arrays: pitched (pitch, bin, start, end, program) and
    drums (key, bin, start)."""
    pitched, drum = _split_notes(notes, config)
    pitch, vbin, start, end, _ = note_steps(notes[pitched], config)
    key, dbin, dstart, _, _ = note_steps(notes[drum], _wide(config))
    return pitch, vbin, start, end, notes["program"][pitched].astype(np.int64), key, dbin, dstart


def quantise_performance(notes: NoteInput, config: EventConfig) -> np.ndarray:
    """The notes :func:`encode_performance` represents (see the module docstring): as
    :func:`composer.tokens.performance.quantise` per pitch across instruments (onsets by start,
    program,
    bin), each onset keeping its program; drum hits DRUM_SECONDS long, program 0."""
    pitch, vbin, start, end, prog, key, dbin, dstart = _perf_events(as_note_array(notes), config)
    onsets = np.lexsort((vbin, prog, start, pitch))
    offsets = np.lexsort((end, pitch))
    n, m = len(pitch), len(key)
    return make_notes(np.concatenate([pitch[onsets], key]), np.concatenate([vbin[onsets], dbin]),
                      np.concatenate([start[onsets], dstart]),
                      np.concatenate([end[offsets], dstart + drum_steps(config)]), config,
                      np.concatenate([prog[onsets], np.zeros(m, np.int64)]),
                      np.arange(n + m) >= n)


def encode_performance(pieces: Sequence[NoteInput], config: EventConfig) -> list[np.ndarray]:
    """Token ids (uint16) of each piece in the instrument-aware performance vocabulary."""
    vocab = Vocabulary(config)
    cols: list[list[np.ndarray]] = [[] for _ in range(6)]  # group, step, kind, program, pitch, bin
    for g, piece in enumerate(pieces):
        pitch, vbin, start, end, prog, key, dbin, dstart = _perf_events(as_note_array(piece),
                                                                        config)
        n, m = len(pitch), len(key)
        for col, part in zip(cols, (np.full(2 * n + m, g), np.concatenate([end, start, dstart]),
                                    np.repeat([0, 1, 2], [n, n, m]),  # OFF, ON, DRUM
                                    np.concatenate([np.zeros(n, np.int64), prog,
                                                    np.full(m, DRUM_PROGRAM_KEY)]),
                                    np.concatenate([pitch, pitch, key]),
                                    np.concatenate([vbin, vbin, dbin])), strict=True):
            col.append(part.astype(np.int64))
    if not pieces:
        return []
    group, step, kind, prog, pitch, vbin = (np.concatenate(c) for c in cols)
    order = np.lexsort((vbin, pitch, prog, kind > 0, step, group))  # OFFs first at a step
    group, step, kind, prog, pitch, vbin = (a[order] for a in (group, step, kind, prog, pitch,
                                                               vbin))
    gap = np.where(_firsts(group, group), step, np.diff(step, prepend=0))
    new_prog = _flags(kind == 1, prog, group)
    new_bin = _flags(kind > 0, vbin, group)
    tokens, at, count = shift_tokens(gap, 1 + new_prog + new_bin, vocab, np.uint16)
    tokens[at[new_prog]] = vocab._ids(PROGRAM, prog[new_prog])
    at = at + new_prog
    tokens[at[new_bin]] = vocab._ids(VELOCITY, vbin[new_bin])
    at = at + new_bin
    tokens[at] = np.select([kind == 0, kind == 1],
                           [vocab._ids(NOTE_OFF, pitch), vocab._ids(NOTE_ON, pitch)],
                           vocab._ids(DRUM, np.clip(pitch, 0, 127)))
    per_piece = np.bincount(group, weights=count, minlength=len(pieces)).astype(np.int64)
    return np.split(tokens, np.cumsum(per_piece)[:-1])


def decode_performance(tokens: Sequence[int] | np.ndarray, config: EventConfig,
                       program: int = 0) -> np.ndarray:
    """Notes (NOTE_DTYPE, canonical order) of any instrument-aware performance token
    sequence: as :func:`composer.tokens.performance.decode`, each note with the program of the last
    PROGRAM before its NOTE_ON (``program`` before any), and a drum note per DRUM token."""
    vocab = Vocabulary(config)
    ids = check_ids(tokens, vocab, program)
    is_kind, value = vocab.split(ids)
    step = np.cumsum(np.where(is_kind[TIME_SHIFT], value, 0))  # (T,) time after each token
    vbin = _state(is_kind, value, VELOCITY, int(velocity_to_bin(DEFAULT_VELOCITY, config)))
    prog = _state(is_kind, value, PROGRAM, program)
    at = np.flatnonzero(is_kind[NOTE_ON] | is_kind[NOTE_OFF])
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
    n_closed, final = len(rows), int(step[-1]) if ids.size else 0
    rows.extend((p, b0, s0, final, g0) for p, queue in sounding.items() for s0, b0, g0 in queue)
    pitch, nbin, start, end, nprog = np.array(rows, dtype=np.int64).reshape(-1, 5).T
    hanging = np.arange(len(rows)) >= n_closed
    end = np.where(hanging, np.minimum(end, start + config.max_hanging_steps), end)
    end = np.maximum(end, start + 1)
    d = np.flatnonzero(is_kind[DRUM])
    n, m = len(pitch), len(d)
    return make_notes(np.concatenate([pitch, value[d]]), np.concatenate([nbin, vbin[d]]),
                      np.concatenate([start, step[d]]),
                      np.concatenate([end, step[d] + drum_steps(config)]), config,
                      np.concatenate([nprog, np.zeros(m, np.int64)]), np.arange(n + m) >= n)


# ------------------------------------------------------------------ the beat vocabulary


def _beat_notes(piece: NoteInput, config: NoteEventConfig) -> tuple[np.ndarray, ...]:
    """One piece as int64 arrays: pitched (pitch, bin, start, duration bin, program) and
    drums (key, bin, start)."""
    notes = piece.notes if isinstance(piece, Piece) else as_note_array(piece)
    beats = beats_of(piece)
    pitched, drum = _split_notes(notes, config)
    pitch, vbin, start, dur = beat_steps(Piece(notes[pitched], 0.0, beats=beats[pitched]), config)
    key, dbin, dstart, _ = beat_steps(Piece(notes[drum], 0.0, beats=beats[drum]), _wide(config))
    return pitch, vbin, start, dur, notes["program"][pitched].astype(np.int64), key, dbin, dstart


def _beat_piece(pitch: np.ndarray, vbin: np.ndarray, start: np.ndarray, dur: np.ndarray,
                prog: np.ndarray, key: np.ndarray, dbin: np.ndarray, dstart: np.ndarray,
                config: NoteEventConfig, clock: Clock) -> Piece:
    """The Piece of pitched notes (duration bins) and drum hits, in canonical order."""
    n, m = len(pitch), len(key)
    end = start + config.step_values()[dur]
    return make_piece(np.concatenate([pitch, key]), np.concatenate([vbin, dbin]),
                      np.concatenate([start, dstart]),
                      np.concatenate([end, dstart + drum_steps(config)]), config, clock,
                      np.concatenate([prog, np.zeros(m, np.int64)]), np.arange(n + m) >= n)


def quantise_notes(piece: NoteInput, config: NoteEventConfig) -> Piece:
    """The piece :func:`encode_notes` represents: :func:`composer.tokens.beats.quantise` with each
    note's program kept, drum hits a sixteenth long (program 0)."""
    return _beat_piece(*_beat_notes(piece, config), config, clock_of(piece))


def encode_notes(pieces: Sequence[NoteInput], config: NoteEventConfig) -> list[np.ndarray]:
    """Token ids (uint16) of each piece in the instrument-aware beat vocabulary."""
    vocab = NoteVocabulary(config)
    if not pieces:
        return []
    cols: list[list[np.ndarray]] = [[] for _ in range(6)]  # group, start, program, pitch, dur, bin
    for g, piece in enumerate(pieces):
        pitch, vbin, start, dur, prog, key, dbin, dstart = _beat_notes(piece, config)
        m = len(key)
        for col, part in zip(cols, (np.full(len(pitch) + m, g), np.concatenate([start, dstart]),
                                    np.concatenate([prog, np.full(m, DRUM_PROGRAM_KEY)]),
                                    np.concatenate([pitch, key]),
                                    np.concatenate([dur, np.zeros(m, np.int64)]),
                                    np.concatenate([vbin, dbin])), strict=True):
            col.append(part.astype(np.int64))
    group, start, prog, pitch, dur, vbin = (np.concatenate(c) for c in cols)
    order = np.lexsort((vbin, dur, pitch, prog, start, group))
    group, start, prog, pitch, dur, vbin = (a[order] for a in (group, start, prog, pitch, dur,
                                                               vbin))
    drum = prog == DRUM_PROGRAM_KEY
    gap = np.where(_firsts(group, group), start, np.diff(start, prepend=0))
    new_prog = _flags(~drum, prog, group)
    new_bin = _firsts(vbin, group) if config.velocity_bins else np.zeros(len(vbin), dtype=bool)
    tokens, at, count = shift_slots(gap, 2 + new_prog + new_bin - drum, vocab)
    tokens[at[new_prog]] = vocab._ids(PROGRAM, prog[new_prog])
    at = at + new_prog
    tokens[at[new_bin]] = vocab._ids(VELOCITY, vbin[new_bin])
    at = at + new_bin
    tokens[at] = np.where(drum, vocab._ids(DRUM, np.clip(pitch, 0, 127)), vocab._ids(PITCH, pitch))
    tokens[(at + 1)[~drum]] = vocab._ids(DURATION, dur[~drum])
    per_piece = np.bincount(group, weights=count, minlength=len(pieces)).astype(np.int64)
    return np.split(tokens, np.cumsum(per_piece)[:-1])


def decode_notes(tokens: Sequence[int] | np.ndarray, config: NoteEventConfig,
                 clock: Clock = DEFAULT_CLOCK, program: int = 0) -> Piece:
    """The piece of any instrument-aware beat-vocabulary token sequence: as
    :func:`composer.tokens.beats.decode`, each note with the program of the last PROGRAM before its
    PITCH (``program`` before any), and a drum hit per DRUM token."""
    vocab = NoteVocabulary(config)
    ids = check_ids(tokens, vocab, program)
    is_kind, value = vocab.split(ids)
    shift = is_kind[SHIFT]
    step = np.cumsum(np.where(shift, vocab.steps[np.where(shift, value, 0)], 0))
    default_bin = int(velocity_to_bin(DEFAULT_VELOCITY, config.velocity_config()))
    vbin = _state(is_kind, value, VELOCITY, default_bin)
    prog = _state(is_kind, value, PROGRAM, program)
    note = np.flatnonzero(is_kind[PITCH][:-1] & is_kind[DURATION][1:])  # PITCH positions
    d = np.flatnonzero(is_kind[DRUM])
    return _beat_piece(value[note], vbin[note], step[note], value[note + 1], prog[note],
                       value[d], vbin[d], step[d], config, clock)
