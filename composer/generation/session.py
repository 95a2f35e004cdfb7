"""One library function per CLI command that is more than one call: the top of the package.

:mod:`composer.cli.main` parses options, calls one of these (or a module's own function), and
prints what comes back. Everything here is usable without click:

- :func:`train_model`: open or prepare a corpus, pick the model size, train.
- :func:`generate_music`: load a model, seed, generate, write, render, plot, copy-check;
  :func:`load_model` and :class:`Seed` let a caller (``composer serve``) load a model once
  and pass a seed it parsed itself.
- :func:`judge_music`: music statistics against a reference and the copy check.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from composer.controls.plan import make_plan, read_plan
from composer.core.device import resolve_device
from composer.core.messages import ComposerError, Notify, Progress, quiet
from composer.corpus.facts import Guards
from composer.corpus.sources import missing_corpus
from composer.evaluation.copycheck import (
    CopyConfig,
    copy_warning,
    training_copy_index,
)
from composer.generation.config import SampleConfig
from composer.generation.loop import Generation
from composer.generation.output import Output, compose
from composer.generation.seeds import read_seed, restrict_seed, seed_file
from composer.midi.instruments import Ensemble, program_name
from composer.midi.render import RenderResult, matplotlib_part, plot_piano_roll, render
from composer.model.checkpoint import (
    Checkpoint,
    find_checkpoint,
    load_checkpoint,
    resolve_checkpoint_path,
)
from composer.tokens.beats import Clock, clock_from
from composer.tokens.vocab import Events, vocabulary_of

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
    """The model :func:`~composer.model.checkpoint.find_checkpoint` finds for ``checkpoint``, loaded
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
                   progress: Progress | None = None, notify: Notify = quiet,
                   instruments: Ensemble | None = None, **compose_args: Any) -> Composed:
    """``composer generate``: load the model (:func:`load_model`, unless given loaded; a
    training folder stands for its best checkpoint, said through ``notify``), resolve the
    seed (a CLI ``--seed`` string, or a :class:`Seed`), :func:`~composer.generation.output.compose`
    the files (``compose_args``: num, rng_seed, prefix, include_seed, program, force,
    threads) under the ``controls`` asked for (flags: density, key, pitch_classes, style,
    tempo) and the JSON ``plan`` file (:func:`~composer.controls.plan.make_plan`), then render,
    plot and copy-check them as asked. ``instruments``: the ensemble an instrument-aware
    model may play (default: a MIDI seed's instruments; see :func:`choose_instruments`).
    Ctrl-C raises :class:`~composer.generation.loop.GenerationInterrupted` holding the partial
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
    ensemble = choose_instruments(events, instruments, seeded, notify, ckpt.data)
    if ensemble is not None:
        config = dataclasses.replace(config, instruments=ensemble.programs, drums=ensemble.drums)
        tokens = restrict_seed(tokens, events, ensemble.programs)
        if compose_args.get("program", 0) not in ensemble.programs:
            compose_args["program"] = ensemble.programs[0]
    clock = clock or clock_from(ckpt.data.get("tempo"))  # the beat vocabulary's
    if steer is not None and steer.tempo is not None:  # the tempo asked for is the output's
        clock = clock._replace(us_per_quarter=round(60e6 / steer.tempo))
    if plot_roll:  # a missing extra is said before the work, not after it
        matplotlib_part("matplotlib.figure")
    # Each name is claimed with its .wav/.png free, so those are this run's to write.
    companions = (".wav",) * render_audio + (".png",) * plot_roll
    given = seed_file(seed) if isinstance(seed, str) else None
    outputs, gen = compose(ckpt.model, events, out, tokens, config=config, progress=progress,
                           clock=clock, guards=model.guards, controls=steer,
                           companions=companions, inputs=[given] if given else [],
                           **compose_args)
    done = Composed(outputs, gen)
    for o in outputs:
        if render_audio:
            done.renders.append(render(o.path, o.path.with_suffix(".wav"), force=True))
        if plot_roll:
            shade = o.seed_seconds if compose_args.get("include_seed", True) else 0
            done.plots.append(plot_piano_roll(o.path, o.path.with_suffix(".png"),
                                              shade or None, force=True))
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
                       notify: Notify = quiet, data: dict[str, Any] | None = None
                       ) -> Ensemble | None:
    """The ensemble a continuation is restricted to: ``given`` (``--instruments``), else
    ``seeded``, the instruments of a MIDI seed (:func:`~composer.generation.seeds.read_seed`), else
    None (any). ComposerError naming what the model takes for ``given`` with a model without
    instruments, with no pitched instrument, or with one outside the programs (or drums)
    its training corpus held, when ``data`` (the checkpoint's) records them."""
    if not events.instruments:
        if given is not None:
            raise ComposerError("this model was trained without instruments (prepare/train "
                                "--instruments), so --instruments cannot choose them; it "
                                "plays one part (--program sets the output's instrument)")
        return None
    if given is not None and not given.programs:
        raise ComposerError("--instruments needs at least one pitched instrument (drums "
                            "alone are not supported)")
    known, drums = (data or {}).get("programs"), (data or {}).get("drums")
    if given is not None and isinstance(known, list) and known:
        takes = Ensemble(tuple(sorted(known)), drums is not False).describe()
        outside = [program_name(p) for p in given.programs if p not in known]
        if given.drums and drums is False:
            outside.append("Drums")
        if outside:
            raise ComposerError(f"this model never learnt {', '.join(outside)} (it takes "
                                f"{takes})")
    chosen = given or seeded
    if chosen is not None:
        notify(f"instruments: {chosen.describe()}" + ("" if given else " (from the seed)"))
    return chosen
