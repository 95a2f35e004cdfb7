"""One library function per CLI command that is more than one call: the top of the package.

:mod:`composer.cli` parses options, calls one of these (or a module's own function), and
prints what comes back. Everything here is usable without click:

- :func:`train_model`: open or prepare a corpus, pick the model size, train.
- :func:`generate_music`: load a model, seed, generate, write, render, plot, copy-check;
  :func:`load_model` and :class:`Seed` let a caller (``composer serve``) load a model once
  and pass a seed it parsed itself.
- :func:`judge_music`: music statistics against a reference and the copy check.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from composer import ComposerError, MetricsError
from composer.checkpoint import Checkpoint, load_checkpoint
from composer.controls import NONE, choose_spec
from composer.copycheck import (
    CopyConfig,
    CopyIndex,
    CopyMatch,
    copy_warning,
    training_copy_index,
)
from composer.corpus import CorpusConfig, PrepareReport
from composer.device import resolve_device
from composer.generate import Generation, SampleConfig
from composer.guards import Guards
from composer.instruments import Ensemble
from composer.model import ModelConfig
from composer.musicstats import MusicConfig, compare_sets
from composer.notes import Clock, clock_of
from composer.render import RenderResult, plot_distributions, plot_piano_roll, render
from composer.sample import (
    Output,
    compose,
    find_checkpoint,
    read_seed,
    resolve_checkpoint_path,
    restrict_seed,
)
from composer.sources import load_folder, missing_corpus, open_or_prepare
from composer.steering import make_plan, read_plan
from composer.train import TrainConfig, TrainResult, train, validation_split
from composer.vocab import Events, clock_from, vocabulary_of

Notify = Callable[[str], None]  # one line for the user (the CLI prints "Note: ...")
Progress = Callable[[int, int], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------- train


def steps_for_epochs(epochs: float, train_events: int, config: TrainConfig) -> int:
    """Optimizer steps that make ``epochs`` passes over ``train_events`` events."""
    return max(1, round(epochs * train_events / (config.batch_size * config.seq_len)))


def choose_model(preset: str, device: str, vocab_size: int, **sizes: Any) -> ModelConfig:
    """The preset's model config (``auto``: ``default`` on a GPU, ``small`` on a CPU) with
    the given sizes (layers, hidden, embed_dim, dropout; None: the preset's) replaced."""
    if preset == "auto":
        preset = "default" if resolve_device(device).type == "cuda" else "small"
    base = ModelConfig.preset(preset, vocab_size=vocab_size)
    return dataclasses.replace(base, **{k: v for k, v in sizes.items() if v is not None})


CPU_BUDGET_MINUTES = 30.0  # a run on a CPU given no --steps, --epochs or --minutes


def run_length(config: TrainConfig, *, steps: int | None, epochs: float | None,
               minutes: float | None, train_events: int, device: str) -> TrainConfig:
    """``config`` with its length set from at most one of ``steps``, ``epochs`` (passes over
    ``train_events``) and ``minutes`` (a wall-clock budget); with none, a CPU gets a
    :data:`CPU_BUDGET_MINUTES` budget and a GPU ``config.steps``."""
    given = [name for name, v in (("--steps", steps), ("--epochs", epochs),
                                  ("--minutes", minutes)) if v is not None]
    if len(given) > 1:
        raise ComposerError(f"give one of {', '.join(given)}, not {len(given)}")
    if steps is not None:
        return dataclasses.replace(config, steps=steps, minutes=0.0)
    if epochs is not None:
        if not (math.isfinite(epochs) and 0 < epochs <= 1e6):
            raise ComposerError(f"epochs must be a finite number > 0 and <= 1e6, got {epochs!r}")
        return dataclasses.replace(config, minutes=0.0,
                                   steps=steps_for_epochs(epochs, train_events, config))
    if minutes is None and resolve_device(device).type == "cpu":
        minutes = CPU_BUDGET_MINUTES
    if minutes is not None:  # the budget decides; steps only as a far cap
        return dataclasses.replace(config, minutes=minutes, steps=10**9)
    return config


def train_model(source: str | os.PathLike, out: str | os.PathLike | None = None, *,
                config: TrainConfig = TrainConfig(), steps: int | None = None,
                epochs: float | None = None, minutes: float | None = None,
                preset: str = "auto", sizes: dict[str, Any] | None = None,
                device: str = "auto", resume: bool = False, force: bool = False,
                init_from: str | os.PathLike | None = None, workers: int | None = None,
                corpus_config: CorpusConfig | None = None, notify: Notify = _quiet,
                plan: Notify | None = None, threads: int | None = 1,
                ingest: Progress | None = None,
                prepared: Callable[[PrepareReport], None] | None = None,
                progress: Callable[[int, int, dict], None] | None = None,
                controls: str = NONE) -> TrainResult:
    """``composer train``: train on ``source`` (a MIDI folder, prepared first, or a prepared
    corpus) into ``out`` (default ``checkpoints/NAME`` of the source). The run's length is
    one of ``steps``, ``epochs`` and ``minutes`` (:func:`run_length`; a resumed run given
    none keeps its own); ``preset``/``sizes`` choose the model of a fresh run; ``prepared``
    is called with the report when a MIDI folder was prepared first (with
    ``corpus_config``); ``plan`` gets the line that says what the run is about to do;
    ``controls``: what a fresh model is conditioned on (:func:`~composer.controls.choose_spec`:
    ``none``, ``auto`` or a comma list of density, pitch-classes, style, tempo)."""
    corpus = open_or_prepare(source, corpus_config, workers=workers, progress=ingest,
                             report=prepared)
    if len(corpus.paths) and validation_split(corpus) == "train":
        notify("no file fell in the validation split; validating on the train split "
               "(`composer prepare --valid` sets the share)")
    out = Path(out) if out is not None else Path("checkpoints") / Path(source).resolve().name
    model_config = None
    if init_from is None and not resume:
        model_config = choose_model(preset, device, corpus.events.size, **(sizes or {}))
        spec = choose_spec(controls, corpus.events, corpus.paths)
        model_config = dataclasses.replace(model_config, controls=spec)
    run: TrainConfig | None = config
    if resume and steps is None and epochs is None and minutes is None:
        run = None  # the saved run's own length and budget
    else:
        train_events = int(corpus.index["length"][corpus.files("train")].sum())
        run = run_length(config, steps=steps, epochs=epochs, minutes=minutes,
                         train_events=train_events, device=device)
    return train(corpus, out, model_config, run, device=device, resume=resume,
                 force=force, init_from=init_from, progress=progress, notify=plan,
                 threads=threads)


# ------------------------------------------------------------------------------- generate


@dataclass
class Composed:
    """What :func:`generate_music` did."""

    outputs: list[Output]
    generation: Generation
    renders: list[RenderResult] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    copies: list[tuple[Output, str]] = field(default_factory=list)  # (file, warning)
    copy_check: str | None = None  # why the copy check did not run, when it was asked for


@dataclass
class LoadedModel:
    """A checkpoint loaded for generation, reusable across :func:`generate_music` calls."""

    ckpt: Checkpoint
    events: Events  # its event vocabulary
    guards: Guards  # the guards measured on its training corpus
    notice: str | None  # why a training folder stood for its best checkpoint, else None


def load_model(checkpoint: str | os.PathLike | None = None, device: str = "auto"
               ) -> LoadedModel:
    """The model :func:`~composer.sample.find_checkpoint` finds for ``checkpoint``, loaded
    on ``device`` (a training folder stands for its best checkpoint)."""
    path, why = resolve_checkpoint_path(find_checkpoint(checkpoint))
    ckpt = load_checkpoint(path, map_location=resolve_device(device))
    return LoadedModel(ckpt, vocabulary_of(ckpt.event_config),
                       Guards.from_dict(ckpt.data.get("guards")), why)


class Seed(NamedTuple):
    """A seed already in the model's tokens (e.g. parsed in an isolated worker)."""

    tokens: np.ndarray  # (T,) token ids
    clock: Clock | None = None  # a MIDI seed's tempo and metre (None: the model's)


def generate_music(checkpoint: str | os.PathLike | LoadedModel | None = None,
                   seed: str | Seed | None = None, *,
                   controls: dict[str, Any] | None = None,
                   plan: str | os.PathLike | None = None,
                   seed_seconds: float | None = None, seed_style: str = "chord",
                   config: SampleConfig = SampleConfig(), out: str | os.PathLike = ".",
                   device: str = "auto", render_audio: bool = False, plot_roll: bool = False,
                   copy_warn: float = CopyConfig.warn_seconds,
                   progress: Progress | None = None, notify: Notify = _quiet,
                   instruments: Ensemble | None = None, **compose_args: Any) -> Composed:
    """``composer generate``: load the model (:func:`load_model`, unless given loaded; a
    training folder stands for its best checkpoint, said through ``notify``), resolve the
    seed (a CLI ``--seed`` string, or a :class:`Seed`), :func:`~composer.sample.compose`
    the files (``compose_args``: num, rng_seed, prefix, include_seed, program, force,
    threads) under the ``controls`` asked for (flags: density, key, pitch_classes, style,
    tempo) and the JSON ``plan`` file (:func:`~composer.steering.make_plan`), then render,
    plot and copy-check them as asked. ``instruments``: the ensemble an instrument-aware
    model may play (default: a MIDI seed's instruments; see :func:`choose_instruments`).
    Ctrl-C raises :class:`~composer.generate.GenerationInterrupted` holding the partial
    files written."""
    if seed_seconds is not None and not isinstance(seed, str):
        raise ComposerError("--seed-seconds needs --seed")
    model = checkpoint if isinstance(checkpoint, LoadedModel) else load_model(checkpoint,
                                                                             device)
    if model.notice:
        notify(model.notice)
    ckpt, events = model.ckpt, model.events
    steer = make_plan(ckpt.model_config.controls, controls, read_plan(plan) if plan else ())
    if isinstance(seed, Seed):
        tokens, clock, seeded = seed.tokens, seed.clock, None
    else:  # a MIDI file is loaded once for its tokens, clock and instruments
        tokens, clock, seeded = read_seed(seed, events, seed_seconds, seed_style)
    ensemble = choose_instruments(events, instruments, seeded, notify)
    if ensemble is not None:
        config = dataclasses.replace(config, instruments=ensemble.programs, drums=ensemble.drums)
        tokens = restrict_seed(tokens, events, ensemble.programs)
        if compose_args.get("program", 0) not in ensemble.programs:
            compose_args["program"] = ensemble.programs[0]
    clock = clock or clock_from(ckpt.data.get("tempo"))  # the beat vocabulary's
    if steer is not None and steer.tempo is not None:  # the tempo asked for is the output's
        clock = clock._replace(us_per_quarter=round(60e6 / steer.tempo))
    outputs, gen = compose(ckpt.model, events, out, tokens, config=config, progress=progress,
                           clock=clock, guards=model.guards, controls=steer, **compose_args)
    done = Composed(outputs, gen)
    for o in outputs:
        if render_audio:
            done.renders.append(render(o.path, o.path.with_suffix(".wav")))
        if plot_roll:
            shade = o.seed_seconds if compose_args.get("include_seed", True) else 0
            done.plots.append(plot_piano_roll(o.path, o.path.with_suffix(".png"),
                                              shade or None))
    if copy_warn > 0:
        copy = CopyConfig(warn_seconds=copy_warn)
        try:
            index = training_copy_index(ckpt.data, events, copy)
        except ComposerError as e:  # e.g. a cache of an older format: generation still counts
            index, done.copy_check = None, f"copy check skipped: {e}"
        if index is None and not done.copy_check and (ckpt.data.get("corpus")
                                                      or ckpt.data.get("source")):
            done.copy_check = (f"copy check skipped: the training corpus "
                               f"({missing_corpus(ckpt.data)}) is not here")
        for o, row in zip(outputs, gen.tokens, strict=True) if index else ():
            warning = copy_warning(index.longest_copy(row, o.seed_seconds, clock), copy)
            if warning:
                done.copies.append((o, warning))
    return done


def choose_instruments(events: Events, given: Ensemble | None, seeded: Ensemble | None,
                       notify: Notify = _quiet) -> Ensemble | None:
    """The ensemble a continuation is restricted to: ``given`` (``--instruments``), else
    ``seeded``, the instruments of a MIDI seed (:func:`~composer.seeds.read_seed`), else None
    (any). ComposerError for ``given`` with a model without instruments, or with no pitched
    instrument."""
    if not events.instruments:
        if given is not None:
            raise ComposerError("this model was trained without instruments (prepare/train "
                                "--instruments), so --instruments cannot choose them; use "
                                "--program for the output's instrument")
        return None
    if given is not None and not given.programs:
        raise ComposerError("--instruments needs at least one pitched instrument (drums "
                            "alone are not supported)")
    chosen = given or seeded
    if chosen is not None:
        notify(f"instruments: {chosen.describe()}" + ("" if given else " (from the seed)"))
    return chosen


# -------------------------------------------------------------------------------- judge


@dataclass
class Judged:
    """What :func:`judge_music` found (``result``: everything, JSON-ready)."""

    result: dict[str, Any]
    music: dict[str, Any] | None = None  # compare_sets' result
    corpus: Path | None = None  # the corpus of the copy check
    matches: list[CopyMatch] = field(default_factory=list)
    warnings: list[str | None] = field(default_factory=list)
    figure: Path | None = None


def judge_music(generated: str | os.PathLike, reference: str | os.PathLike | None = None,
                corpus: str | os.PathLike | None = None, *, figure: str | os.PathLike | None
                = None, seed_seconds: float = 0.0, copy: CopyConfig = CopyConfig(),
                music: MusicConfig = MusicConfig(), notify: Notify = _quiet,
                ingest: Progress | None = None) -> Judged:
    """``composer evaluate --generated``: music statistics of the MIDI files in ``generated``
    against ``reference`` (:func:`~composer.musicstats.compare_sets`, ``figure``: their
    densities) and/or the copy check against the train split of ``corpus`` (a prepared
    corpus or a MIDI folder, prepared first), ignoring each file's first ``seed_seconds``."""
    def pieces_of(folder: str | os.PathLike) -> tuple[list[str], list]:
        names, pieces, skipped = load_folder(folder)
        for name, reason in skipped:
            notify(f"skipped {Path(folder) / name}: {reason}")
        return names, pieces

    names, pieces = pieces_of(generated)
    if not pieces:
        raise MetricsError(f"no readable MIDI files in {generated}")
    done = Judged({"generated": str(generated), "files": names})
    if reference:
        done.music = compare_sets(pieces, pieces_of(reference)[1], music)
        if figure:
            done.figure = plot_distributions(done.music, figure)
        done.result["music"] = {"reference": str(reference), **done.music}
    if corpus:
        data = open_or_prepare(corpus, progress=ingest)
        index = CopyIndex.from_corpus(data, ("train",), copy)
        done.corpus = data.cache_dir
        done.matches = [index.longest_copy(data.events.encode(p), seed_seconds,
                                           clock_of(p))
                        for p in pieces]
        done.warnings = [copy_warning(m, copy) for m in done.matches]
        done.result["copies"] = [{"file": n, **vars(m), "fraction": m.fraction, "warning": w}
                                 for n, m, w in zip(names, done.matches, done.warnings,
                                                    strict=True)]
    return done
