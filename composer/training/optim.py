"""Optimizer parameter groups: weight decay on weight matrices only, and old states mapped on.

AdamW's decoupled weight decay pulls weights towards zero; on biases (the LSTM's forget-gate
bias among them, which is meant to stay positive) and on embedding rows (each seen only when
its token occurs) that is a bias of its own, so only weight matrices are decayed.
"""
# The training schedule: how far a run is, the learning rate there, and when to evaluate.
#
# A run is measured in steps (``steps``) and, with ``minutes`` > 0, also in wall-clock time:
# its *fraction done* is the larger of ``step / steps`` and ``seconds used / budget``, so a
# budgeted run ends when its time is up (or at ``steps``, whichever comes first). The
# learning rate is laid over that fraction: a linear warm-up over the first ``warmup`` of the
# run (or over ``warmup_steps`` steps when that is set), then a cosine decay to
# ``lr * min_lr_ratio`` at the end. So a 90-second run and a 30-minute run both reach their
# peak rate early and end with it decayed, which is what lets a short run learn.
#
# Time is counted from the first step of the run, evaluations and checkpoints included, and
# carried across ``--resume`` (it is saved with the train state), so a resumed run spends
# what is left of its budget, not a new one.

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import torch

from composer.training.config import NO_STEP_CAP


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on the weight matrices only; biases (the LSTM's forget-gate
    bias among them) and the embedding table are not decayed."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, rest = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 and id(p) not in embeddings else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def regroup(saved: dict[str, Any], model: torch.nn.Module, opt: torch.optim.Optimizer
             ) -> dict[str, Any]:
    """An optimizer state saved with one parameter group (before :func:`param_groups`) mapped
    onto this optimizer's groups; any other state is returned as it is."""
    if len(saved["param_groups"]) != 1 or len(opt.param_groups) == 1:
        return saved
    position = {id(p): i for i, p in enumerate(model.parameters())}  # the old numbering
    old, groups, state, n = saved["param_groups"][0], [], {}, 0
    for group in opt.param_groups:
        ids = list(range(n, n + len(group["params"])))
        for new, p in zip(ids, group["params"], strict=True):
            if position[id(p)] in saved["state"]:
                state[new] = saved["state"][position[id(p)]]
        groups.append({**old, "weight_decay": group["weight_decay"], "params": ids})
        n += len(ids)
    return {"state": state, "param_groups": groups}


class ScheduleSettings(Protocol):
    """The fields of ``TrainConfig`` the schedule reads."""

    steps: int
    minutes: float
    lr: float
    warmup: float
    warmup_steps: int
    min_lr_ratio: float
    eval_every: int
    eval_minutes: float


def lr_at(step: int, config: ScheduleSettings, fraction: float | None = None) -> float:
    """Learning rate at ``step``, ``fraction`` (0-1) of the way through the run (default:
    ``step / steps``): linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    floor = config.lr * config.min_lr_ratio
    if config.warmup_steps:  # a fixed warm-up in steps
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        if fraction is None:
            decay = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        else:
            decay = fraction
    else:
        done = step / config.steps if fraction is None else fraction
        if done < config.warmup:
            return config.lr * max(done, 1e-3) / config.warmup
        decay = (done - config.warmup) / max(1e-9, 1 - config.warmup)
    decay = min(1.0, max(0.0, decay))
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * decay))


class Budget:
    """Where a run stands: steps and wall-clock seconds used (carried across resumes)."""

    def __init__(self, config: ScheduleSettings, used_seconds: float = 0.0) -> None:
        self.config = config
        self.seconds = config.minutes * 60.0  # 0: no time budget
        self._base = used_seconds
        self._t0 = time.monotonic()
        self._next_eval = used_seconds + self.eval_interval

    @property
    def eval_interval(self) -> float:
        """Seconds from the end of one evaluation of a budgeted run to the next (a tenth of
        the budget by default, at least 20 s)."""
        if self.config.eval_minutes:
            return self.config.eval_minutes * 60.0
        return max(20.0, self.seconds / 10)

    def used(self) -> float:
        """Seconds of the run so far, this session's and earlier sessions'."""
        return self._base + time.monotonic() - self._t0

    def fraction(self, step: int) -> float:
        """How far the run is, 0 to 1: by steps, or by time when that is further."""
        done = step / self.config.steps
        if self.seconds:
            done = max(done, self.used() / self.seconds)
        return min(1.0, done)

    def over(self, step: int) -> bool:
        """Whether the run has reached its steps or spent its time."""
        return self.fraction(step) >= 1.0

    def lr(self, step: int) -> float:
        """The learning rate for ``step``."""
        return lr_at(step, self.config, self.fraction(step) if self.seconds else None)

    def eval_due(self, step: int) -> bool:
        """Whether to evaluate before ``step``: every ``eval_every`` steps, or, with a time
        budget, every :attr:`eval_interval` seconds."""
        if not self.seconds:
            return step % self.config.eval_every == 0
        return self.used() >= self._next_eval

    def evaluated(self) -> None:
        """Note that an evaluation just ended: the next is due an interval from now (not
        from when it began, so a slow evaluation never runs into the next)."""
        self._next_eval = self.used() + self.eval_interval

    def seconds_left(self, step: int = 0) -> float | None:
        """Seconds left in the time budget (None without one); when the run's steps will end
        it first, the seconds they take at the pace so far."""
        if not self.seconds:
            return None
        used, done = self.used(), step / self.config.steps
        left = max(0.0, self.seconds - used)
        return min(left, used * (1 - done) / done) if done > used / self.seconds else left

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume the accounting."""
        return {"seconds_used": self.used()}


def plan_line(budget: Budget, *, layers: int, hidden: int, parameters: int, device: str,
              threads: int, vocabulary: str, files: dict[str, int], start_step: int = 0) -> str:
    """The one line a run prints before its first step: model, device, data, length, and
    evaluation interval."""
    config = budget.config
    split = "/".join(str(files.get(s, 0)) for s in ("train", "valid", "test"))
    if budget.seconds:
        length = f"budget {_minutes(config.minutes)}"
        if config.steps < NO_STEP_CAP:
            length += f" or {config.steps:,} steps, whichever comes first"
        if budget.used() > 1:
            length += f" ({_minutes(budget.seconds_left() / 60)} left)"
        evals = f"evaluating every {budget.eval_interval:.0f} s"
    else:
        length = f"{config.steps:,} steps" + (f" (from step {start_step:,})" if start_step
                                              else "")
        evals = f"evaluating every {config.eval_every:,} steps"
    warm = (f"{config.warmup_steps} warm-up steps" if config.warmup_steps
            else f"warm-up {config.warmup:.0%}")
    where = (f"{device}, {threads} thread{'s' if threads != 1 else ''}" if device == "cpu"
             else device)
    return (f"Training a {layers}x{hidden} LSTM ({parameters / 1e6:.2f} M parameters) on "
            f"{where}; {vocabulary}; files {split} train/valid/test; {length}, peak lr "
            f"{config.lr:g}, {warm} then cosine decay; {evals}")


def _minutes(m: float) -> str:
    """Minutes as a person reads them."""
    return f"{m:.3g} min" if m < 120 else f"{m / 60:.1f} h"
