"""Seeds: what a continuation starts from, in the model's tokens.

- a MIDI file's opening (:func:`seed_from_midi`; :func:`read_seed` loads the file once for
  its tokens, tempo and metre, and instruments);
- a pitch list of numbers and/or note names (:func:`seed_from_pitches`,
  :func:`parse_pitches`: ``C4,E4,G4``, ``60,F#3``), played as a chord or an arpeggio;
- or the start context (:meth:`composer.tokens.vocab.Events.start_tokens`).

:func:`resolve_seed` reads a CLI ``--seed`` (a file, else pitches); :func:`check_seed_spec`
says in one line why a ``--seed`` is neither. Seeds are bounded (:mod:`composer.core.bounds`):
at most MAX_SEED_PITCHES pitches, MAX_SEED_NOTES notes, stacks of over MAX_UNISON notes on
one key merged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from composer.core.bounds import MAX_SEED_NOTES, MAX_SEED_PITCHES, MAX_UNISON
from composer.core.messages import GenerateError, MidiError
from composer.midi.instruments import Ensemble
from composer.midi.io import (
    MIDI_SUFFIXES,
    NOTE_DTYPE,
    LoadConfig,
    Piece,
    load,
    merge_unisons,
    piece_from_beats,
)
from composer.midi.io import parse_pitch as midi_pitch
from composer.midi.timing import BEAT_DTYPE, seconds_to_beats
from composer.tokens.beats import Clock, beats_of, clock_of, shift_slots
from composer.tokens.performance import DEFAULT_CONFIG, EventConfig
from composer.tokens.vocab import Events, VocabularyError, vocabulary_of

SEED_VELOCITY = 80  # velocity of pitch-list seeds
CHORD_SECONDS, ARPEGGIO_SECONDS = 0.5, 0.25


def _encode_seed(notes: np.ndarray | Piece, event_config: EventConfig | Events, what: str
                 ) -> np.ndarray:
    events = vocabulary_of(event_config)
    try:
        tokens = events.encode(notes).astype(np.int64)
    except VocabularyError as e:
        raise GenerateError(f"{what}: {e}") from None
    if not np.isin(tokens, events.note_start_ids()).any():
        raise GenerateError(f"{what} has no notes in the model's pitch range "
                            f"{events.config.min_pitch}..{events.config.max_pitch}")
    if events.is_notes:  # time moves on to the seed's end, as NOTE_OFFs take it there
        end = round(float(beats_of(notes)["end"].max()) * events.config.steps_per_quarter)
        gap = end - int(events.token_steps()[tokens].sum())
        if gap > 0:
            shifts = shift_slots(np.array([gap]), np.array([0]), events.vocab)[0]
            tokens = np.concatenate([tokens, shifts.astype(np.int64)])
    return tokens


def _load_seed(path: str | os.PathLike[str]) -> Piece:
    """The seed file, drums included (:func:`_pitched` leaves them out where they do not
    belong); GenerateError naming it when it cannot be read."""
    try:
        return load(path, LoadConfig(keep_drums=True))
    except MidiError as e:
        raise GenerateError(f"seed {path}: {e}") from None


class SeedFacts(NamedTuple):
    """A seed read once: its tokens and, for a MIDI file, its tempo and metre and the
    instruments it plays."""

    tokens: np.ndarray  # (T,) token ids
    clock: Clock | None = None  # a MIDI seed's tempo and metre (None: the model's)
    instruments: Ensemble | None = None  # a MIDI seed's pitched programs (+ drums)


def read_seed(spec: str | None, event_config: EventConfig | Events,
              seconds: float | None = None, style: str = "chord",
              max_notes: int = MAX_SEED_NOTES) -> SeedFacts:
    """A CLI ``--seed`` (None: the start context; an existing file; else pitches, see
    :func:`check_seed_spec`), a MIDI file loaded once for its tokens
    (:func:`seed_from_piece`), clock and instruments."""
    if spec is None:
        return SeedFacts(vocabulary_of(event_config).start_tokens())
    path = seed_file(spec)
    if path is None:
        check_seed_spec(spec)
        return SeedFacts(seed_from_pitches(spec, style, event_config))
    piece = _load_seed(path)
    return SeedFacts(seed_from_piece(piece, path, seconds, event_config, max_notes),
                     clock_of(_pitched(piece)), _instruments(piece.notes))


def seed_from_midi(path: str | os.PathLike[str], seconds: float | None = None,
                   event_config: EventConfig | Events = DEFAULT_CONFIG,
                   max_notes: int = MAX_SEED_NOTES) -> np.ndarray:
    """Tokens of the first ``seconds`` of a MIDI file (:func:`seed_from_piece`)."""
    return seed_from_piece(_load_seed(path), path, seconds, event_config,
                           max_notes)


def seed_from_piece(piece: Piece, path: str | os.PathLike[str], seconds: float | None,
                    event_config: EventConfig | Events = DEFAULT_CONFIG,
                    max_notes: int = MAX_SEED_NOTES) -> np.ndarray:
    """Tokens of the first ``seconds`` of the piece loaded from ``path`` (all of it when
    None; drums only for an instrument-aware vocabulary): notes starting before that time
    are kept and cut off at it, stacks of over MAX_UNISON notes on one key of one instrument
    merged (:func:`~composer.midi.io.merge_unisons`), then encoded (the beat vocabulary: in the
    file's own beats). GenerateError when it holds no notes there, or more than
    ``max_notes``."""
    if seconds is not None and not seconds > 0:
        raise GenerateError(f"seed seconds must be > 0, got {seconds}")
    if not vocabulary_of(event_config).instruments:
        piece = _pitched(piece)
    notes, beats = piece.notes, beats_of(piece)
    if seconds is not None:
        keep = notes["start"] < seconds
        notes, beats = notes[keep].copy(), beats[keep].copy()
        notes["end"] = np.minimum(notes["end"], seconds)
        beats["end"] = np.minimum(beats["end"], seconds_to_beats(np.array(seconds),
                                                                 piece.tempos))
    span = "" if seconds is None else f" in its first {seconds:g} s"
    if len(notes) == 0:
        raise GenerateError(f"seed {path} has no notes{span}")
    in_beats = notes.copy()  # a stack of notes on one key sounds as one: merged (in beats)
    in_beats["start"], in_beats["end"] = beats["start"], beats["end"]
    in_beats = merge_unisons(in_beats, above=MAX_UNISON)
    if len(in_beats) > max_notes:
        raise GenerateError(f"seed {path} has {len(in_beats):,} notes{span}; a seed takes "
                            f"at most {max_notes:,} (use fewer seconds of it)")
    beats = np.empty(len(in_beats), BEAT_DTYPE)
    beats["start"], beats["end"] = in_beats["start"], in_beats["end"]
    cut = piece_from_beats(in_beats, beats, piece.tempos, piece.time_signatures)
    return _encode_seed(cut, event_config, f"seed {path}{span}")


def _pitched(piece: Piece) -> Piece:
    """``piece`` without its drum notes (as loading it without ``keep_drums`` gives)."""
    keep = ~piece.notes["is_drum"]
    if keep.all():
        return piece
    return replace(piece, notes=piece.notes[keep], beats=beats_of(piece)[keep],
                   drums_left_out=piece.drums_left_out + int((~keep).sum()))


def _instruments(notes: np.ndarray) -> Ensemble | None:
    """Pitched programs and drums of ``notes``; None when it has no pitched note."""
    programs = tuple(sorted(set(notes["program"][~notes["is_drum"]].tolist())))
    return Ensemble(programs, bool(notes["is_drum"].any())) if programs else None


def seed_clock(spec: str | None) -> Clock | None:
    """The tempo and time signature of a CLI ``--seed`` that is a MIDI file (None for a
    pitch list or no seed): beat-vocabulary output is written at its tempo."""
    path = seed_file(spec)
    return None if path is None else clock_of(_pitched(_load_seed(path)))


def seed_instruments(spec: str | None) -> Ensemble | None:
    """The instruments of a CLI ``--seed`` that is a MIDI file (its pitched programs, and
    drums if it has drum notes); None for a pitch list, no seed, or a seed of drums only."""
    path = seed_file(spec)
    return None if path is None else _instruments(_load_seed(path).notes)


def restrict_seed(tokens: np.ndarray, events: Events, programs: Sequence[int]) -> np.ndarray:
    """Seed tokens of an instrument-aware vocabulary that end on one of ``programs``: when
    the seed's last PROGRAM (if any) is not among them, a PROGRAM of ``programs[0]`` is
    appended, so that the continuation's first notes are played by a chosen instrument."""
    ids = events.instrument_ids()[0]
    given = tokens[(tokens >= ids.start) & (tokens < ids.stop)]
    if len(given) and int(given[-1]) - ids.start in programs:
        return tokens
    return np.append(tokens, ids[programs[0]]).astype(tokens.dtype)


def parse_pitch(word: str) -> int:
    """A MIDI pitch from a number or a note name (:func:`composer.midi.io.parse_pitch`: ``"60"``,
    ``"C4"`` = 60, ``"F#3"``, ``"Bb2"``); GenerateError naming the word when it is neither."""
    try:
        return midi_pitch(word)
    except MidiError as e:
        raise GenerateError(str(e)) from None


def parse_pitches(text: str) -> list[int]:
    """Pitches of a list like ``"60,64,67"``, ``"C4,E4,G4"`` or ``"c4 64 G4"`` (commas and/or
    spaces); GenerateError naming the first word that is not a pitch."""
    words = [w for w in re.split(r"[,\s]+", text.strip()) if w]
    if not words:
        raise GenerateError("seed pitch list is empty")
    if len(words) > MAX_SEED_PITCHES:
        raise GenerateError(f"seed pitch list has {len(words):,} pitches; at most "
                            f"{MAX_SEED_PITCHES} (use a MIDI file for a longer seed)")
    return [parse_pitch(w) for w in words]


def seed_from_pitches(pitches: str | Sequence[int], style: str = "chord",
                      event_config: EventConfig | Events = DEFAULT_CONFIG) -> np.ndarray:
    """Tokens of a pitch list such as ``"60,64,67"`` or ``"C4,E4,G4"``
    (:func:`parse_pitches`) at velocity SEED_VELOCITY.

    ``chord``: all pitches together (each once) for CHORD_SECONDS (0.5 s). ``arpeggio``: one after
    another, each starting ARPEGGIO_SECONDS (0.25 s) after the previous and lasting that long.
    """
    if isinstance(pitches, str):
        pitches = parse_pitches(pitches)
    if len(pitches) == 0:
        raise GenerateError("seed pitch list is empty")
    cfg = vocabulary_of(event_config).config
    lo, hi = cfg.min_pitch, cfg.max_pitch
    for p in pitches:
        if not lo <= p <= hi:
            raise GenerateError(f"seed pitch {p} is outside the model's pitch range {lo}..{hi}")
    if style not in ("chord", "arpeggio"):
        raise GenerateError(f"seed style must be chord or arpeggio, got {style!r}")
    if style == "chord":  # a chord sounds each pitch once (a stack on one key is no chord)
        pitches = list(dict.fromkeys(pitches))
    notes = np.zeros(len(pitches), NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = pitches, SEED_VELOCITY
    step = ARPEGGIO_SECONDS if style == "arpeggio" else 0.0
    notes["start"] = np.arange(len(pitches)) * step
    notes["end"] = notes["start"] + (ARPEGGIO_SECONDS if step else CHORD_SECONDS)
    return _encode_seed(notes, event_config, f"seed {pitches}")


def resolve_seed(spec: str | None, event_config: EventConfig | Events, seconds: float | None = None,
                 style: str = "chord") -> np.ndarray:
    """Seed tokens of a CLI ``--seed``: None (start context), an existing file, or else a
    pitch list like ``60,64,67`` or ``C4,E4,G4``. A missing path (one with a folder or a
    MIDI suffix) and a word that is no pitch raise GenerateError naming it."""
    return read_seed(spec, event_config, seconds, style).tokens


def seed_file(spec: str | None) -> Path | None:
    """The file a ``--seed`` names, when it names an existing regular file; None otherwise
    (no seed, pitches, a name too long to be a file)."""
    if not spec:
        return None
    try:
        return Path(spec) if Path(spec).is_file() else None
    except OSError:  # e.g. ENAMETOOLONG: a long pitch list is no file name
        return None


def check_seed_spec(spec: str) -> None:
    """GenerateError, one line, unless ``spec`` is an existing file or a pitch list: it is
    empty, a folder or other non-file, a missing file, or a word that is no pitch."""
    if seed_file(spec) is not None:
        return
    if not spec.strip():
        raise GenerateError("seed is empty: give a MIDI file or pitches such as C4,E4,G4")
    try:
        there = Path(spec).exists()
    except OSError:
        there = False
    if there:
        kind = "a folder" if Path(spec).is_dir() else "not a regular file"
        raise GenerateError(f"{spec} is {kind}, not a MIDI file")
    if looks_like_path(spec):
        raise GenerateError(f"seed file {spec} does not exist")
    try:
        parse_pitches(spec)
    except GenerateError as e:
        raise GenerateError(f"{e}; nor is it a file") from None


def looks_like_path(spec: str) -> bool:
    """Whether a ``--seed`` names a file rather than pitches: it holds a folder separator
    or ends in a MIDI suffix."""
    return "/" in spec or os.sep in spec or spec.lower().endswith(MIDI_SUFFIXES)
