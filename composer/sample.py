"""Seeds in, MIDI files out: what :mod:`composer.generate` continues and what it writes.

- Seeds: a MIDI file's opening (:func:`seed_from_midi`), a pitch list of numbers and/or
  note names (:func:`seed_from_pitches`, :func:`parse_pitches`: ``C4,E4,G4``, ``60,F#3``),
  or the start context (:func:`composer.generate.start_tokens`).
- Outputs: :func:`to_piece` / :func:`to_notes` decode a generated row in the model's
  vocabulary (performance events: hanging notes closed after ``max_note_seconds``; the
  beat vocabulary: notes on the grid at a given tempo), :func:`compose` generates and
  writes ``OUT/PREFIX-NNN.mid`` files.
- :func:`find_checkpoint`: the model to use (an explicit path, ``$COMPOSER_CHECKPOINT``, or
  the default model shipped inside the package); :func:`resolve_checkpoint_path` lets a
  training folder stand for its ``best`` checkpoint.
- Ctrl-C during :func:`compose` writes the continuations drawn so far (valid MIDI files,
  cut where they were) and re-raises :class:`~composer.generate.GenerationInterrupted`
  with them in ``outputs``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from composer import ComposerError, GenerateError, MidiError, is_int
from composer._steppers import Stepper
from composer.bounds import MAX_SEED_NOTES, MAX_SEED_PITCHES, MAX_UNISON
from composer.checkpoint import META_FILE, resolve_checkpoint_path  # noqa: F401 (re-exported)
from composer.events import DEFAULT_CONFIG, EventConfig, VocabularyError
from composer.generate import (
    NO_GUARDS,
    Generation,
    GenerationInterrupted,
    SampleConfig,
    generate,
    start_tokens,
)
from composer.guards import DEFAULT_MAX_NOTE_SECONDS, Guards
from composer.instruments import Ensemble
from composer.midi import (
    MIDI_SUFFIXES,
    NOTE_DTYPE,
    LoadConfig,
    Piece,
    load,
    merge_unisons,
    piece_from_beats,
    save,
)
from composer.midi import parse_pitch as midi_pitch
from composer.model import ComposerLSTM
from composer.musicstats import silence_fraction
from composer.notes import DEFAULT_CLOCK, Clock, beats_of, clock_of, shift_slots
from composer.steering import ControlPlan
from composer.timing import BEAT_DTYPE, constant_tempo, seconds_to_beats
from composer.vocab import Events, vocabulary_of

SEED_VELOCITY = 80  # velocity of pitch-list seeds
CHORD_SECONDS, ARPEGGIO_SECONDS = 0.5, 0.25


# ------------------------------------------------------------------------------- seeds


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


def _load_seed(path: str | os.PathLike[str], keep_drums: bool = False) -> Piece:
    try:
        return load(path, LoadConfig(keep_drums=keep_drums))
    except MidiError as e:
        raise GenerateError(f"seed {path}: {e}") from None


def seed_from_midi(path: str | os.PathLike[str], seconds: float | None = None,
                   event_config: EventConfig | Events = DEFAULT_CONFIG,
                   max_notes: int = MAX_SEED_NOTES) -> np.ndarray:
    """Tokens of the first ``seconds`` of a MIDI file (all of it when None): notes starting
    before that time are kept and cut off at it, stacks of over MAX_UNISON notes on one key
    of one instrument merged (:func:`~composer.midi.merge_unisons`), then encoded (the beat
    vocabulary: in the file's own beats). GenerateError when the file cannot be read, holds
    no notes there, or more than ``max_notes``."""
    if seconds is not None and not seconds > 0:
        raise GenerateError(f"seed seconds must be > 0, got {seconds}")
    piece = _load_seed(path, vocabulary_of(event_config).instruments)
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


def seed_clock(spec: str | None) -> Clock | None:
    """The tempo and time signature of a CLI ``--seed`` that is a MIDI file (None for a
    pitch list or no seed): beat-vocabulary output is written at its tempo."""
    path = seed_file(spec)
    return None if path is None else clock_of(_load_seed(path))


def seed_instruments(spec: str | None) -> Ensemble | None:
    """The instruments of a CLI ``--seed`` that is a MIDI file (its pitched programs, and
    drums if it has drum notes); None for a pitch list, no seed, or a seed of drums only."""
    path = seed_file(spec)
    if path is None:
        return None
    notes = _load_seed(path, keep_drums=True).notes
    programs = tuple(sorted(set(notes["program"][~notes["is_drum"]].tolist())))
    return Ensemble(programs, bool(notes["is_drum"].any())) if programs else None


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
    """A MIDI pitch from a number or a note name (:func:`composer.midi.parse_pitch`: ``"60"``,
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
    if spec is None:
        return start_tokens(event_config)
    path = seed_file(spec)
    if path is not None:
        return seed_from_midi(path, seconds, event_config)
    check_seed_spec(spec)
    return seed_from_pitches(spec, style, event_config)


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


def shipped_model(name: str = "default") -> Path:
    """A model shipped inside the package (``composer/models/NAME``: weights and
    checkpoint.json; its resumable training state stays in the source tree)."""
    return Path(str(resources.files("composer") / "models" / name))


def default_checkpoint() -> Path:
    """The default model shipped inside the package (``composer/models/default``)."""
    return shipped_model("default")


def shipped_names() -> list[str]:
    """Names of the models shipped inside the package (``--checkpoint NAME``)."""
    root = shipped_model("default").parent
    return sorted(p.name for p in root.iterdir() if (p / "checkpoint.json").is_file())


def find_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """``path`` (a folder, or the name of a model shipped in the package when no such
    folder exists), else $COMPOSER_CHECKPOINT, else the package's
    :func:`default_checkpoint`."""
    if path is not None:
        named = str(path)
        if not Path(path).exists() and named in shipped_names():
            return shipped_model(named)
        return Path(path)
    if os.environ.get("COMPOSER_CHECKPOINT"):
        return Path(os.environ["COMPOSER_CHECKPOINT"])
    default = default_checkpoint()
    if not (default / "checkpoint.json").is_file():
        raise GenerateError(f"no default model is installed ({default} is missing); pass "
                            "--checkpoint or set COMPOSER_CHECKPOINT")
    return default


# ------------------------------------------------------------------------ outputs


def to_notes(tokens: Sequence[int] | np.ndarray, event_config: EventConfig | Events, *,
             seed_len: int = 0, include_seed: bool = True,
             max_note_seconds: float = DEFAULT_MAX_NOTE_SECONDS, program: int = 0,
             clock: Clock = DEFAULT_CLOCK) -> np.ndarray:
    """Notes (NOTE_DTYPE) of a generated row: :func:`to_piece`'s."""
    return to_piece(tokens, event_config, seed_len=seed_len, include_seed=include_seed,
                    max_note_seconds=max_note_seconds, program=program, clock=clock).notes


def to_piece(tokens: Sequence[int] | np.ndarray, event_config: EventConfig | Events, *,
             seed_len: int = 0, include_seed: bool = True,
             max_note_seconds: float = DEFAULT_MAX_NOTE_SECONDS, program: int = 0,
             clock: Clock = DEFAULT_CLOCK) -> Piece:
    """The piece of a generated row. Performance events: ``events.decode`` with hanging
    notes closed after at most ``max_note_seconds``, every note clipped to that length (no
    beats: written at 120 bpm). Beat vocabulary: notes on the grid at ``clock``'s tempo.
    Without ``include_seed`` only notes starting after the first ``seed_len`` tokens are
    kept, moved so that the continuation starts at 0."""
    events = vocabulary_of(event_config)
    tokens = np.asarray(tokens, dtype=np.int64)
    try:
        piece = events.decode(tokens, clock, program, max_note_seconds)
    except VocabularyError as e:
        raise GenerateError(str(e)) from None
    if include_seed:
        return piece
    t0 = events.seconds_of(tokens[:seed_len], clock)
    keep = piece.notes["start"] >= t0 - 1e-9
    notes = piece.notes[keep].copy()
    if piece.beats is not None:
        beats = piece.beats[keep].copy()
        b0 = float(events.token_steps()[tokens[:seed_len]].sum()) / events.config.steps_per_quarter
        beats["start"] -= b0
        beats["end"] -= b0
        return piece_from_beats(notes, beats, constant_tempo(clock.us_per_quarter),
                                piece.time_signatures)
    notes["start"] -= t0
    notes["end"] -= t0
    return Piece(notes, float(notes["end"].max()) if len(notes) else 0.0)


@dataclass
class Output:
    """One written continuation."""

    path: Path
    seconds: float  # duration: end of the last note
    notes: int
    silence: float  # metrics.silence_fraction over [0, seconds]
    tokens: int  # events drawn (seed not counted)
    seed_seconds: float  # music time of the seed (0 without one)


def output_paths(out_dir: str | os.PathLike[str], prefix: str, num: int,
                 force: bool = False) -> list[Path]:
    """``num`` paths ``OUT/PREFIX-NNN.mid``: from 001 on when ``force`` (overwriting), else
    the lowest numbers not taken yet, so earlier outputs are never overwritten.
    GenerateError if the prefix is not a plain file name."""
    if not prefix or Path(prefix).name != prefix or prefix in (".", ".."):
        raise GenerateError(f"prefix {prefix!r} must be a plain file name")
    paths: list[Path] = []
    i = 1
    while len(paths) < num:
        path = Path(out_dir) / f"{prefix}-{i:03d}.mid"
        if force or not path.exists():
            paths.append(path)
        i += 1
    return paths


def compose(model: ComposerLSTM, event_config: EventConfig | Events,
            out_dir: str | os.PathLike[str],
            seed: Sequence[int] | np.ndarray | None = None, num: int = 1,
            config: SampleConfig = SampleConfig(), *, rng_seed: int | None = None,
            prefix: str = "composer", include_seed: bool = True, program: int = 0,
            force: bool = False, engine: str | Stepper = "auto", threads: int | None = 1,
            progress: Callable[[int, int], None] | None = None, clock: Clock = DEFAULT_CLOCK,
            guards: Guards = NO_GUARDS, controls: ControlPlan | None = None
            ) -> tuple[list[Output], Generation]:
    """Generate ``num`` continuations of ``seed`` and write them as ``OUT/PREFIX-NNN.mid``
    (:func:`output_paths`); returns one :class:`Output` per file and the tokens. The beat
    vocabulary's files are written at ``clock``'s tempo and time signature, notes on the
    grid; ``guards``, ``controls``: see :func:`~composer.generate.generate`."""
    if not is_int(program) or not 0 <= program <= 127:
        raise GenerateError(f"program must be in 0..127, got {program!r}")
    paths = output_paths(out_dir, prefix, config.check_num(num), force)
    events = vocabulary_of(event_config)
    try:
        gen = generate(model, events, seed, num, config, rng_seed, engine, threads=threads,
                       progress=progress, clock=clock, guards=guards, controls=controls)
    except GenerationInterrupted as stop:  # keep what was drawn: written, then re-raised
        if stop.generation is not None:
            stop.outputs = _write(stop.generation, paths, events, out_dir, include_seed,
                                  program, clock)
        raise
    return _write(gen, paths, events, out_dir, include_seed, program, clock), gen


def _write(gen: Generation, paths: list[Path], events: Events,
           out_dir: str | os.PathLike[str], include_seed: bool, program: int, clock: Clock
           ) -> list[Output]:
    """Write each row of ``gen`` to its path; one Output each. A failed write (a full disk)
    raises its one-line error naming the files written before it."""
    seed_seconds = events.seconds_of(gen.tokens[0][: gen.seed_len], clock)
    outputs = []
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for path, tokens in zip(paths, gen.tokens, strict=True):
            piece = to_piece(tokens, events, seed_len=gen.seed_len, include_seed=include_seed,
                             max_note_seconds=gen.max_note_seconds, program=program,
                             clock=clock)
            save(piece, path)
            notes = piece.notes
            end = float(notes["end"].max()) if len(notes) else 0.0
            outputs.append(Output(path, end, len(notes), silence_fraction(notes),
                                  len(tokens) - gen.seed_len, seed_seconds))
    except (OSError, ComposerError) as e:  # e.g. the disk filled up: say what is there
        kept = (f" ({len(outputs)} written before it: {', '.join(str(o.path) for o in outputs)})"
                if outputs else " (no file was written)")
        if isinstance(e, OSError):
            raise GenerateError(f"cannot write to {out_dir}: {e.strerror or e}{kept}") from None
        raise type(e)(f"{e}{kept}") from None
    return outputs
