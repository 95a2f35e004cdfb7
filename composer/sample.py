"""Seeds in, MIDI files out: what :mod:`composer.generate` continues and what it writes.

- Seeds (:mod:`composer.seeds`, re-exported here): a MIDI file's opening, a pitch list, or
  the start context.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from composer import ComposerError, GenerateError, is_int
from composer._steppers import Stepper
from composer.checkpoint import META_FILE, resolve_checkpoint_path  # noqa: F401 (re-exported)
from composer.events import EventConfig, VocabularyError
from composer.generate import (
    NO_GUARDS,
    Generation,
    GenerationInterrupted,
    SampleConfig,
    generate,
)
from composer.guards import DEFAULT_MAX_NOTE_SECONDS, Guards
from composer.midi import (
    Piece,
    piece_from_beats,
    save,
)
from composer.model import ComposerLSTM
from composer.musicstats import silence_fraction
from composer.notes import DEFAULT_CLOCK, Clock
from composer.seeds import (  # noqa: F401 (the seed functions: re-exported)
    ARPEGGIO_SECONDS,
    CHORD_SECONDS,
    SEED_VELOCITY,
    SeedFacts,
    check_seed_spec,
    looks_like_path,
    parse_pitch,
    parse_pitches,
    read_seed,
    resolve_seed,
    restrict_seed,
    seed_clock,
    seed_file,
    seed_from_midi,
    seed_from_piece,
    seed_from_pitches,
    seed_instruments,
)
from composer.steering import ControlPlan
from composer.timing import constant_tempo
from composer.vocab import Events, vocabulary_of


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
