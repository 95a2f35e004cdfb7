"""A fine-tune's spare time spent on more fine-tunes, averaged into one model (a "soup").

A fine-tune of a small corpus ends at :data:`~composer.training.config.FINE_TUNE_PASSES`
passes over it, long before its time budget: 300 Essen songs take 90 s of a 4-minute
budget, and ``composer train``'s CPU default is 30 minutes. More passes only overfit
(``benchmarks/RECIPE.md``). Fine-tunes of the same base with other seeds (other windows,
dropout and transpositions) end near each other, and the average of their weights is a
better model than each of them (Wortsman et al. 2022, "model soups"); runs from scratch
end far apart, and their average is not.

So when a fine-tune stops at its pass cap with time left for another (the first one's
time, and :data:`SOUP_MARGIN` more), :func:`cook` trains more, seeds ``seed + 1``,
``seed + 2``, ... into ``OUT/soup/K`` (at most :data:`SOUP_MEMBERS` runs in all), then
averages their best checkpoints, all of them alike: on a small corpus the validation split
is small too (11 Essen songs), and choosing runs by it (a greedy soup) chose worse on the
test songs: of five runs of 10 passes, the two it kept scored 2.645 nats/note, four
averaged alike 2.628; of runs of 15 passes, the one it kept 2.650, four alike 2.623.
``OUT/best`` becomes the average if it validates better than every run alone, else
the best run (a later one's, when it beat the first); its metrics record ``soup``: the
seeds of the runs in it.
``OUT/latest`` stays the first run's; a resumed run trains no more runs, and
replaces the average only with a better model. Weights only: the
runs share one config, vocabulary and controls.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from composer.controls.features import ControlSpec, open_controls
from composer.core.device import resolve_device
from composer.core.messages import ComposerError
from composer.corpus.cache import Corpus
from composer.model.checkpoint import load_checkpoint, save_checkpoint
from composer.model.lstm import ComposerLSTM
from composer.training.config import TrainConfig, TrainResult
from composer.training.loop import evaluate, fit_run_recall, validation_split

# fine-tunes averaged at most, the first one included: on the Essen songs 8 runs (11.7
# minutes of the CPU default's 30) scored no better than 2 or 4 (2.624 nats/note; 2.629, 2.598)
SOUP_MEMBERS = 4
SOUP_MARGIN = 1.1  # another run starts only with this many times a run's time left
SOUP_DIR = "soup"  # OUT/soup/K: the runs after the first


def average(models: list[ComposerLSTM]) -> dict[str, torch.Tensor]:
    """The mean of ``models``' weights (same config), entry by entry."""
    states = [m.state_dict() for m in models]
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(states[0][k].dtype)
            for k in states[0]}


def choose(models: list[ComposerLSTM], losses: list[float],
           validate: Callable[[ComposerLSTM], float]) -> tuple[ComposerLSTM, list[int], float]:
    """The average of all ``models`` if ``validate`` (a model's loss: lower is better)
    scores it better than each of them (their ``losses``), else the best one alone. Returns
    the model (a new one holding the average, or one of ``models``), the indices of the
    models in it, and its loss."""
    soup = ComposerLSTM(models[0].config).to(next(models[0].parameters()).device).eval()
    soup.load_state_dict(average(models))
    loss, best = validate(soup), min(range(len(models)), key=losses.__getitem__)
    if loss < losses[best]:
        return soup, list(range(len(models))), loss
    return models[best], [best], losses[best]


def cook(corpus: Corpus, out: Path, first: TrainResult, spent: float,
         train_member: Callable[[Path, TrainConfig], TrainResult], config: TrainConfig,
         spec: ControlSpec, device: torch.device | str,
         notify: Callable[[str], None] | None = None) -> TrainResult:
    """After ``first``, a fine-tune into ``out`` that ended at its pass cap ``spent``
    seconds into its ``config.minutes`` budget: train more runs (``train_member(folder,
    config)``, the next seeds, the time left) while there is time for one, average them
    into ``out/best`` (:func:`choose`) and fit its recall (models with controls ``spec``). Returns
    the result to report: ``first``'s, with ``soup`` (the seeds of the runs averaged) and
    their validation loss when they beat the first run, stopped "interrupted" when a run
    was."""
    left, members, results = config.minutes * 60 - spent, [out / "best"], [first]
    interrupted = False
    while len(members) < SOUP_MEMBERS and left >= SOUP_MARGIN * spent:
        k = len(members)
        if notify is not None:
            notify(f"The fine-tune ended at its pass cap with {left / 60:.1f} minutes left: "
                   f"fine-tuning again (seed {config.seed + k}) to average the runs" if k == 1
                   else f"Fine-tuning again (seed {config.seed + k}; {left / 60:.1f} minutes "
                        "left)")
        start = time.perf_counter()
        try:
            result = train_member(out / SOUP_DIR / str(k), dataclasses.replace(
                config, seed=config.seed + k, minutes=left / 60))
        except ComposerError as e:  # the runs so far stand
            if notify is not None:
                notify(f"The fine-tune of seed {config.seed + k} failed ({e}); keeping the "
                       "runs before it")
            break
        left -= time.perf_counter() - start
        if result.stopped not in ("done", "early stop"):
            interrupted = result.stopped == "interrupted"
            break
        members.append(out / SOUP_DIR / str(k) / "best")
        results.append(result)
    dev = resolve_device(device)
    table = open_controls(corpus, spec) if spec.width else None
    if len(members) > 1 and not interrupted:
        ckpts = [load_checkpoint(m, map_location=dev) for m in members]
        split, scored = validation_split(corpus), {}

        def validate(model: ComposerLSTM) -> float:  # choose validates the average only
            scored.update(evaluate(model, corpus, split, config, dev, controls=table))
            return scored["loss"]

        model, kept, loss = choose([c.model for c in ckpts],
                                   [r.best_valid_loss for r in results], validate)
        if kept != [0]:  # the average, or a later run alone, beat the first run's best
            head, seeds = ckpts[0], sorted(config.seed + k for k in kept)
            metrics = {**(scored if len(kept) > 1 else ckpts[kept[0]].metrics),
                       "split_used": split, "soup": seeds}
            save_checkpoint(out / "best", model, head.model_config, head.event_config,
                            train_config=head.train_config, step=head.step, metrics=metrics,
                            data=head.data)
            first = dataclasses.replace(first, best_valid_loss=loss, soup=tuple(seeds))
    recall, recall_loss = fit_run_recall(out, corpus, config, dev, table)
    return dataclasses.replace(first, recall=recall, recall_loss=recall_loss,
                               stopped="interrupted" if interrupted else first.stopped)
