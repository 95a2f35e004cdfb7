"""Seeds in, MIDI files out: what :mod:`composer.generation.loop` continues and what it writes.

- Seeds (:mod:`composer.generation.seeds`, re-exported here): a MIDI file's opening, a pitch list,
or
  the start context.
- Outputs: :func:`to_piece` / :func:`to_notes` decode a generated row in the model's
  vocabulary (performance events: hanging notes closed after ``max_note_seconds``; the
  beat vocabulary: notes on the grid at a given tempo), :func:`compose` generates and
  writes ``OUT/PREFIX-NNN.mid`` files.
- :func:`find_checkpoint`: the model to use (an explicit path, ``$COMPOSER_CHECKPOINT``, or
  the default model shipped inside the package); :func:`resolve_checkpoint_path` lets a
  training folder stand for its ``best`` checkpoint.
- Ctrl-C during :func:`compose` writes the continuations drawn so far (valid MIDI files,
  cut where they were) and re-raises :class:`~composer.generation.loop.GenerationInterrupted`
  with them in ``outputs``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from composer.controls.plan import ControlPlan
from composer.core.files import FileTaken, check_output
from composer.core.messages import ComposerError, GenerateError, is_int
from composer.corpus.facts import DEFAULT_MAX_NOTE_SECONDS, Guards
from composer.evaluation.musicstats import silence_fraction
from composer.generation.config import GenerateRequest
from composer.generation.loop import NO_GUARDS, Generation, GenerationInterrupted, generate
from composer.generation.seeds import seed_file
from composer.midi.io import Piece, piece_from_beats, save
from composer.midi.timing import constant_tempo
from composer.model.lstm import ComposerLSTM
from composer.tokens.beats import DEFAULT_CLOCK, Clock
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, VocabularyError, vocabulary_of

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
                 force: bool = False, companions: Sequence[str] = (),
                 inputs: Sequence[str | os.PathLike[str]] = ()) -> list[Path]:
    """``num`` paths ``OUT/PREFIX-NNN.mid``: from 001 on when ``force`` (overwriting, but
    never one of ``inputs``: FileTaken), else the lowest numbers not taken yet (by the
    .mid or one of its ``companions``, suffixes such as ``.wav``). These are candidates
    only: without ``force`` each name is claimed when its file is written (:func:`_claim`).
    GenerateError if the prefix is not a plain file name."""
    if not prefix or Path(prefix).name != prefix or prefix in (".", ".."):
        raise GenerateError(f"prefix {prefix!r} must be a plain file name")
    paths: list[Path] = []
    i = 0
    while len(paths) < num:
        i = i + 1 if force else _free(out_dir, prefix, i + 1, companions)
        paths.append(check_output(_numbered(out_dir, prefix, i), inputs, force=True))
    return paths


def _numbered(out_dir: str | os.PathLike[str], prefix: str, i: int) -> Path:
    return Path(out_dir) / f"{prefix}-{i:03d}.mid"


def _free(out_dir: str | os.PathLike[str], prefix: str, i: int, companions: Sequence[str]
          ) -> int:
    """The first number from ``i`` on whose .mid and companions do not exist."""
    def taken(path: Path) -> bool:
        return any(p.exists() or p.is_symlink()
                   for p in (path, *(path.with_suffix(c) for c in companions)))

    while taken(_numbered(out_dir, prefix, i)):
        i += 1
    return i


def _claim(piece: Piece, path: Path, force: bool, companions: Sequence[str]) -> Path:
    """Write ``piece`` at ``path`` (``force``: replacing it), else at the first free
    number from ``path``'s on, claimed atomically: another process writing the same names
    at once takes the next one, and no file there is ever replaced."""
    if force:
        save(piece, path)
        return path
    prefix, number = path.stem.rsplit("-", 1)
    i = int(number)
    while True:
        i = _free(path.parent, prefix, i, companions)
        try:
            save(piece, _numbered(path.parent, prefix, i), replace=False)
            return _numbered(path.parent, prefix, i)
        except FileTaken:
            i += 1


def compose(model: ComposerLSTM, event_config: EventConfig | Events,
            seed: Sequence[int] | np.ndarray | None, request: GenerateRequest, *,
            clock: Clock = DEFAULT_CLOCK, guards: Guards = NO_GUARDS,
            plan: ControlPlan | None = None,
            progress: Callable[[int, int], None] | None = None
            ) -> tuple[list[Output], Generation]:
    """Generate ``request.num`` continuations of ``seed`` (token ids; None: the start
    context) as ``request.sample`` says and write them as ``OUT/PREFIX-NNN.mid``
    (:func:`output_paths`; without ``request.force`` each name is claimed atomically when
    written, the next free number taken when another process got it first, so concurrent
    runs never overwrite each other; the names of the .wav/.png the request also makes
    must be free too, and a seed file is never written over); returns one :class:`Output`
    per file and the tokens. The beat
    vocabulary's files are written at ``clock``'s tempo and time signature, notes on the
    grid; ``guards``, ``plan``: see :func:`~composer.generation.loop.generate`."""
    program, out_dir = request.program, request.out
    if not is_int(program) or not 0 <= program <= 127:
        raise GenerateError(f"program must be in 0..127, got {program!r}")
    companions = (".wav",) * request.render_audio + (".png",) * request.plot_roll
    given = seed_file(request.seed) if isinstance(request.seed, str) else None
    paths = output_paths(out_dir, request.prefix, request.sample.check_num(request.num),
                         request.force, companions, [given] if given else [])
    claim = functools.partial(_claim, force=request.force, companions=companions)
    events = vocabulary_of(event_config)
    try:
        gen = generate(model, events, seed, request.num, request.sample, request.rng_seed,
                       request.engine, threads=request.threads, progress=progress,
                       clock=clock, guards=guards, plan=plan)
    except GenerationInterrupted as stop:  # keep what was drawn: written, then re-raised
        if stop.generation is not None:
            stop.outputs = _write(stop.generation, paths, events, out_dir,
                                  request.include_seed, program, clock, claim)
        raise
    return _write(gen, paths, events, out_dir, request.include_seed, program, clock,
                  claim), gen


def _write(gen: Generation, paths: list[Path], events: Events,
           out_dir: str | os.PathLike[str], include_seed: bool, program: int, clock: Clock,
           claim: Callable[[Piece, Path], Path]) -> list[Output]:
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
            path = claim(piece, path)
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
