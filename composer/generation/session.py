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
from composer.generation.config import GenerateRequest
from composer.generation.loop import Generation
from composer.generation.output import Output, compose
from composer.generation.seeds import read_seed, restrict_seed
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


def generate_music(request: GenerateRequest, model: LoadedModel | None = None,
                   seed: Seed | None = None, progress: Progress | None = None,
                   notify: Notify = quiet) -> Composed:
    """Carry out ``request`` (``composer generate``): load its model (:func:`load_model`,
    unless ``model`` is given loaded; a training folder stands for its best checkpoint, said
    through ``notify``), resolve its seed (``seed``, parsed already, else the request's
    ``--seed`` string), make the control plan of its control request and plan file
    (:func:`~composer.controls.plan.make_plan`), choose the instruments
    (:func:`choose_instruments`), :func:`~composer.generation.output.compose` the files,
    then render, plot and copy-check them as asked. Ctrl-C raises
    :class:`~composer.generation.loop.GenerationInterrupted` holding the partial files
    written."""
    if request.seed_seconds is not None and request.seed is None:
        raise ComposerError("--seed-seconds needs --seed")
    model = model or load_model(request.checkpoint, request.device)
    if model.notice:
        notify(model.notice)
    ckpt, events = model.ckpt, model.events
    plan = make_plan(ckpt.model_config.controls, request.control_request,
                     read_plan(request.plan_file) if request.plan_file else ())
    if seed is not None:
        tokens, clock, seeded = seed.tokens, seed.clock, None
    else:  # a MIDI file is loaded once for its tokens, clock and instruments
        tokens, clock, seeded = read_seed(request.seed, events, request.seed_seconds,
                                          request.seed_style)
    ensemble = choose_instruments(events, request.instruments, seeded, notify, ckpt.data)
    if ensemble is not None:
        tokens = restrict_seed(tokens, events, ensemble.programs)
        sample = dataclasses.replace(request.sample, instruments=ensemble.programs,
                                     drums=ensemble.drums)
        program = (request.program if request.program in ensemble.programs
                   else ensemble.programs[0])
        request = dataclasses.replace(request, sample=sample, program=program)
    clock = clock or clock_from(ckpt.data.get("tempo"))  # the beat vocabulary's
    if plan is not None and plan.tempo is not None:  # the tempo asked for is the output's
        clock = clock._replace(us_per_quarter=round(60e6 / plan.tempo))
    if request.plot_roll:  # a missing extra is said before the work, not after it
        matplotlib_part("matplotlib.figure")
    outputs, gen = compose(ckpt.model, events, tokens, request, clock=clock,
                           guards=model.guards, plan=plan, progress=progress)
    done = Composed(outputs, gen)
    for o in outputs:
        if request.render_audio:
            done.renders.append(render(o.path, o.path.with_suffix(".wav"), force=True))
        if request.plot_roll:
            shade = o.seed_seconds if request.include_seed else 0
            done.plots.append(plot_piano_roll(o.path, o.path.with_suffix(".png"),
                                              shade or None, force=True))
    if request.copy_warn > 0:
        done.copies, done.copy_check = copy_check(ckpt, events, done, clock, request.copy_warn)
    return done


def copy_check(ckpt: Checkpoint, events: Events, done: Composed, clock: Clock,
               warn_seconds: float) -> tuple[list[tuple[Output, str]], str | None]:
    """The outputs of ``done`` that repeat ``warn_seconds`` of the training corpus (file,
    warning), and why the check did not run (None: it did)."""
    copy, copies, why = CopyConfig(warn_seconds=warn_seconds), [], None
    try:
        index = training_copy_index(ckpt.data, events, copy)
    except ComposerError as e:  # e.g. a cache of an older format: generation still counts
        index, why = None, f"copy check skipped: {e}"
    if index is None and not why and any(ckpt.data.get(k) for k in ("corpus", "source",
                                                                    "sources")):
        why = f"copy check skipped: the training corpus ({missing_corpus(ckpt.data)}) is not here"
    for o, row in zip(done.outputs, done.generation.tokens, strict=True) if index else ():
        warning = copy_warning(index.longest_copy(row, o.seed_seconds, clock), copy)
        if warning:
            copies.append((o, warning))
    return copies, why


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
