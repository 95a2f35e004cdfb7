"""From a MIDI folder to a trained model: open or prepare the corpus, choose the model size
for the device and the budget, decide the run's length, train (``composer train``)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.controls.features import choose_spec
from composer.core.bounds import free_cpus
from composer.core.device import resolve_device
from composer.core.messages import ComposerError, Notify, Progress, quiet
from composer.corpus.facts import PrepareReport
from composer.corpus.sources import open_or_prepare
from composer.model.checkpoint import (
    find_checkpoint,
    read_configs,
    resolve_checkpoint_path,
)
from composer.model.config import ModelConfig
from composer.model.transfer import transferable
from composer.tokens.vocab import Events
from composer.training.config import (
    AUTO_BASE,
    BASE_MODEL,
    BRIEF_CPU_MINUTES,
    FINE_TUNE_PASSES,
    NO_BASE,
    NO_STEP_CAP,
    TrainConfig,
    TrainRequest,
    TrainResult,
)
from composer.training.loop import train, validation_split
from composer.training.soup import cook

# ---------------------------------------------------------------------------------- train


def steps_for_epochs(epochs: float, train_events: int, config: TrainConfig) -> int:
    """Optimizer steps that make ``epochs`` passes over ``train_events`` events."""
    return max(1, round(epochs * train_events / (config.batch_size * config.seq_len)))


def choose_model(preset: str, device: str, vocab_size: int, minutes: float = 0.0,
                 **sizes: Any) -> ModelConfig:
    """The preset's model config (``auto``: ``default`` on a GPU; on a CPU ``brief`` for a
    budget of at most BRIEF_CPU_MINUTES ``minutes``, else (or with no budget: 0) ``small``)
    with the given sizes (layers, hidden, embed_dim, dropout; None: the preset's) replaced."""
    if preset == "auto":
        brief = 0 < minutes <= BRIEF_CPU_MINUTES
        preset = ("default" if resolve_device(device).type == "cuda"
                  else "brief" if brief else "small")
    base = ModelConfig.preset(preset, vocab_size=vocab_size)
    return dataclasses.replace(base, **{k: v for k, v in sizes.items() if v is not None})


def base_model(request: TrainRequest, events: Events) -> Path | None:
    """The checkpoint a run starts from: ``request.init_from`` (a folder or a shipped
    model's name); None for ``none`` or a resumed run's ``auto``; ``auto``: the shipped
    BASE_MODEL for a CPU run whose size is left to the preset (``auto``, no layers, hidden
    or embedding size; a dropout may be given: a fine-tune takes it too) when its
    vocabulary fits ``events`` (:func:`~composer.model.transfer.transferable`), else None."""
    r = request
    if r.init_from in (None, NO_BASE) or (r.resume and r.init_from == AUTO_BASE):
        return None
    if r.init_from != AUTO_BASE:  # a shipped model's name, or a training folder's best
        return resolve_checkpoint_path(find_checkpoint(r.init_from))[0]
    sized = any(r.sizes.get(k) is not None for k in ("layers", "hidden", "embed_dim"))
    if r.preset != "auto" or sized or resolve_device(r.device).type != "cpu":
        return None
    path = resolve_checkpoint_path(find_checkpoint(BASE_MODEL))[0]
    return path if transferable(read_configs(path)[1], events) else None


CPU_BUDGET_MINUTES = 30.0  # a run on a CPU given no --steps, --epochs or --minutes


def run_length(config: TrainConfig, *, steps: int | None, epochs: float | None,
               minutes: float | None, train_events: int, device: str,
               max_passes: float | None = None) -> TrainConfig:
    """``config`` with its length set from at most one of ``steps``, ``epochs`` (passes over
    ``train_events``) and ``minutes`` (a wall-clock budget); with none, a CPU gets a
    :data:`CPU_BUDGET_MINUTES` budget and a GPU ``config.steps``. A budget ends at
    ``max_passes`` passes when they come first (a fine-tune: :data:`FINE_TUNE_PASSES`)."""
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
    if minutes is not None:  # the budget decides; steps only as a cap
        cap = NO_STEP_CAP if max_passes is None else min(
            NO_STEP_CAP, steps_for_epochs(max_passes, train_events, config))
        return dataclasses.replace(config, minutes=minutes, steps=cap)
    return config


@dataclass
class TrainCallbacks:
    """How a training job reports while it runs (all optional)."""

    notify: Notify = quiet  # one-line notes for the user
    plan: Notify | None = None  # the line that says what the run is about to do
    ingest: Progress | None = None  # files prepared of all, while a MIDI folder is prepared
    prepared: Callable[[PrepareReport], None] | None = None  # the report of that preparation
    progress: Callable[[int, int, dict], None] | None = None  # (step, total, metrics)


def train_model(request: TrainRequest, callbacks: TrainCallbacks | None = None
                ) -> TrainResult:
    """``composer train``: carry out ``request``: open or prepare its corpus (a MIDI folder
    is prepared first with ``request.corpus``), choose the model of a fresh run (preset and
    sizes, conditioned on ``request.controls``:
    :func:`~composer.controls.features.choose_spec`), set the run's length
    (:func:`run_length`) and the CPU threads (None:
    :func:`~composer.core.bounds.free_cpus`, the cores not kept busy by other work), train.
    A fine-tune that ends at its pass cap with time left trains more runs and averages them
    (:func:`~composer.training.soup.cook`)."""
    r, cb = request, callbacks or TrainCallbacks()
    corpus = open_or_prepare(r.source, r.corpus, workers=r.workers, progress=cb.ingest,
                             report=cb.prepared)
    if len(corpus.paths) and validation_split(corpus) == "train":
        cb.notify("no file fell in the validation split; validating on the train split "
                  "(`composer prepare --valid` sets the share)")
    out = Path(r.out) if r.out is not None else \
        Path("checkpoints") / Path(r.source).resolve().name
    init_from = base_model(r, corpus.events)
    if init_from is not None and cb.plan and r.init_from == AUTO_BASE:
        cb.plan(f"Fine-tuning the shipped model {BASE_MODEL!r} (--init-from none trains "
                "from scratch)")
    run: TrainConfig | None = r.config
    if r.resume and r.steps is None and r.epochs is None and r.minutes is None:
        run = None  # the saved run's own length and budget
    else:
        train_events = int(corpus.index["length"][corpus.files("train")].sum())
        run = run_length(r.config, steps=r.steps, epochs=r.epochs, minutes=r.minutes,
                         train_events=train_events, device=r.device,
                         max_passes=None if init_from is None else FINE_TUNE_PASSES)
    model_config = None
    if not r.resume:
        if init_from is None:
            model_config = choose_model(r.preset, r.device, corpus.events.size,
                                        run.minutes if run else 0.0, **r.sizes)
        else:  # a fine-tune keeps the base's sizes; a dropout given applies
            base = read_configs(init_from)[0]
            dropout = r.sizes.get("dropout")
            model_config = dataclasses.replace(
                base, dropout=base.dropout if dropout is None else dropout)
        model_config = dataclasses.replace(  # the corpus's own vocabulary and controls
            model_config, vocab_size=corpus.events.size,
            controls=choose_spec(r.controls, corpus.events, corpus.paths))
    threads = r.threads
    if threads is None and resolve_device(r.device).type == "cpu":
        threads = free_cpus()
    # a fine-tune capped at its passes may leave time for more runs, averaged (soup.py)
    capped = init_from is not None and run is not None and run.minutes > 0 \
        and run.steps < NO_STEP_CAP and int(os.environ.get("WORLD_SIZE", "1")) <= 1

    def train_into(folder: Path, config: TrainConfig | None, **first: Any) -> TrainResult:
        return train(corpus, folder, model_config, config, device=r.device,
                     init_from=init_from, progress=cb.progress, threads=threads,
                     recall=not capped, **first)

    start = time.perf_counter()
    result = train_into(out, run, resume=r.resume, force=r.force, notify=cb.plan)
    if not capped or result.stopped not in ("done", "early stop"):
        return result
    return cook(corpus, out, result, time.perf_counter() - start, train_into, run,
                model_config.controls, r.device, cb.plan)
