"""What a training run does: :class:`TrainConfig` and :class:`AugmentConfig` (torch-free, so
the CLI reads their defaults without loading torch), and what a run returns."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.core.config import Config
from composer.core.messages import ComposerError, check_seed, is_int, is_number, require
from composer.corpus.cache import CorpusConfig
from composer.model.config import RecallConfig


class TrainingError(ComposerError):
    """Training cannot start or cannot go on (bad settings, diverged loss, mismatched data)."""



class DataError(ComposerError):
    """Bad sampler or augmentation settings, or a split with nothing to draw from."""


@dataclass(frozen=True)
class AugmentConfig(Config):
    """On-the-fly augmentation of training windows (Magenta's Performance RNN recipe)."""

    _error = DataError
    _name = "augment"

    transpose: int = 3  # shift each window by k semitones, k uniform in [-3, 3]; 0 = off
    stretch: float = 0.05  # scale its time by f uniform in [0.95, 1.05]; 0 = off

    def __post_init__(self) -> None:
        t, s = self.transpose, self.stretch
        require(
            is_int(t) and 0 <= t <= 127,
            f"augment: transpose must be an integer in 0..127, got {t!r}",
            DataError,
        )
        require(
            is_number(s) and 0 <= s < 1,
            f"augment: stretch must be a number in [0, 1), got {s!r}",
            DataError,
        )

    @property
    def enabled(self) -> bool:
        """Whether this config changes anything."""
        return self.transpose > 0 or self.stretch > 0


@dataclass(frozen=True)
class TrainConfig(Config):
    """How to train; saved in every checkpoint."""

    _error = TrainingError
    _name = "train settings"

    steps: int = 20_000  # optimizer steps in all (a resumed run continues to this)
    minutes: float = 0.0  # wall-clock budget (0: none); the run ends at it or at `steps`
    batch_size: int = 16  # windows per step (per process under torchrun); small batches of
    seq_len: int = 64  # short windows (events) make many updates early: see benchmarks/RECIPE.md
    eval_seq_len: int = 2048  # events per validation window (the state carries through it)
    lr: float = 6e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup: float = 0.05  # linear warm-up over this fraction of the run (steps or budget)
    warmup_steps: int = 0  # a fixed warm-up in steps instead (0: use `warmup`)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm
    eval_every: int = 200  # steps between evaluations (and `latest` checkpoints)
    eval_minutes: float = 0.0  # with a budget: minutes between evaluations (0: 1/10 of it)
    eval_max_batches: int = 0  # cap on validation batches per evaluation (0: whole split)
    patience: int = 10  # evaluations without improvement before stopping early (0: never)
    max_bad_steps: int = 20  # consecutive non-finite steps that stop the run
    log_every: int = 10  # steps between train-loss log lines
    seed: int = 0  # seeds model init, dropout and the data sampler
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # train split only
    # Openings (see composer.training.data.WindowSampler): the share of training windows
    # that start at their piece's start, and the targets left unscored at the head of the
    # others, so that the model predicts from a cold state only at real openings.
    openings: float = 0.1
    burn_in: int = 8
    # Truncated backprop through time (composer.training.streams): each batch row reads whole
    # pieces window after window, the LSTM state carried between windows (openings and
    # burn_in then do not apply: every piece is read from its start).
    carry_state: bool = False

    def __post_init__(self) -> None:
        for name, top in _INT_BOUNDS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise TrainingError(f"{name} must be a whole number from 1 to {top:,}, "
                                    f"got {value!r}")
        if not (is_number(self.openings) and 0 <= self.openings <= 1):
            raise TrainingError(f"openings must be a number in [0, 1], got {self.openings!r}")
        for name in ("warmup_steps", "eval_max_batches", "patience", "burn_in"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TrainingError(f"{name} must be a whole number >= 0, got {value!r}")
        for name, low, high in (("lr", 0, 10.0), ("grad_clip", 0, math.inf),
                                ("minutes", None, 1e7), ("eval_minutes", None, 1e7),
                                ("warmup", None, 0.99),
                                ("weight_decay", None, 1.0), ("min_lr_ratio", None, 1.0)):
            value = getattr(self, name)
            ok = (is_number(value) and math.isfinite(value)
                  and (value > low if low is not None else value >= 0) and value <= high)
            if not ok:
                bound = f"> {low}" if low is not None else ">= 0"
                top = "" if high == math.inf else f" and <= {high:g}"
                raise TrainingError(f"{name} must be a finite number {bound}{top}, "
                                    f"got {value!r}")
        check_seed(self.seed, TrainingError)


# Upper bounds of the whole-number settings: far past useful, low enough to catch typos.
_INT_BOUNDS = {"steps": 10**9, "batch_size": 1 << 16, "seq_len": 1 << 16,
               "eval_seq_len": 1 << 20, "eval_every": 10**9, "log_every": 10**9,
               "max_bad_steps": 10**6}


@dataclass
class TrainResult:
    """What a run did: steps reached, best validation loss and why it stopped."""

    step: int
    best_valid_loss: float
    stopped: str  # "done", "early stop", "interrupted", "already complete" (resumed at its end)
    skipped_steps: int
    out_dir: Path
    recall: RecallConfig = field(default_factory=RecallConfig)  # fitted at the end (off: none)
    recall_loss: float = math.nan  # best validation loss with that recall (nats/event)
    # the seeds of the fine-tunes averaged into best (composer.training.soup; (): the run's own)
    soup: tuple[int, ...] = ()



def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean loss in nats, capped at exp(50) instead of overflowing."""
    return math.exp(min(loss, 50.0))


# A CPU run of a budget this short (minutes) gets the ``brief`` preset (2x192) under
# ``preset="auto"``: in minutes more updates of a narrower model learn more than fewer of
# ``small``'s 2x256 (4 minutes, one thread, test NLL per note against the 5-gram's:
# Palestrina 0.754 -> 0.727 and at 10 minutes 0.671 -> 0.654; the Essen songs 0.801 ->
# 0.814, a wash; benchmarks/RECIPE.md, "Model size for the budget").
BRIEF_CPU_MINUTES = 10.0
AUTO_BASE = "auto"  # TrainRequest.init_from: start from BASE_MODEL where it fits
NO_BASE = "none"  # TrainRequest.init_from: train from scratch
BASE_MODEL = "default"  # the shipped model a CPU run starts from by default
# A fine-tune given a time budget lays its schedule over at most this many passes over the
# train split when they come first: a small corpus is learnt in a few passes and then
# overfitted (300 Essen songs: validation best after 13-23 passes and worse after; runs
# of 8 to 30 passes reached 0.777-0.780 of the 5-gram's test NLL, 4 minutes (78 passes)
# 0.820; benchmarks/RECIPE.md, "Starting from the shipped model").
FINE_TUNE_PASSES = 30.0
NO_STEP_CAP = 10**9  # the steps of a run that a time budget ends
# Validation windows a run's recall is fitted on at its end (the shipped model's 21,907
# validation events took 60 windows; a few seconds on a CPU).
RECALL_FIT_WINDOWS = 128


@dataclass(frozen=True)
class TrainRequest(Config):
    """One ``composer train`` job as its flags give it: what to train on, where the run
    goes, how long, which model a fresh run gets. The CLI builds it in one place
    (:func:`composer.cli.main.train_request`);
    :func:`composer.training.recipe.train_model` carries it out."""

    _error = TrainingError
    _name = "train request"

    source: str = "."  # a MIDI folder (prepared first) or a prepared corpus
    out: str | None = None  # the run's folder (None: checkpoints/NAME of the source)
    config: TrainConfig = field(default_factory=TrainConfig)  # the recipe
    # The run's length, at most one of (none: a CPU gets CPU_BUDGET_MINUTES, a GPU
    # config.steps; a resumed run keeps its own):
    steps: int | None = None
    epochs: float | None = None  # passes over the train split
    minutes: float | None = None  # a wall-clock budget the schedule is laid over
    preset: str = "auto"  # model size of a fresh run: auto, default, small, brief, tiny
    sizes: Mapping[str, Any] = field(default_factory=dict)  # layers / hidden / embed_dim /
    #                                                        dropout over the preset's
    device: str = "auto"  # auto, cpu, cuda
    resume: bool = False  # continue OUT/latest where it stopped
    force: bool = False  # start over in an OUT that holds a run
    # Fine-tune from this checkpoint (a folder or a shipped model's name); "none": from
    # scratch; "auto": a CPU run of the preset's own size starts from BASE_MODEL when its
    # vocabulary fits the corpus's (composer.training.recipe.base_model)
    init_from: str | None = AUTO_BASE
    workers: int | None = None  # ingest processes (None: the cores)
    threads: int | None = None  # torch's CPU threads (None: the cores not kept busy)
    corpus: CorpusConfig | None = None  # how a MIDI folder is prepared (None: defaults)
    controls: str = "none"  # what a fresh model is conditioned on: none, auto, or a list
