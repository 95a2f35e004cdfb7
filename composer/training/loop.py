"""Training: next-event prediction on a prepared corpus, with checkpoints users can trust.

``train(corpus, out_dir, model_config, config)`` runs one readable loop:
schedule -> eval/checkpoint -> forward/backward -> clip -> step -> log.

- Checkpoints (see :mod:`composer.model.checkpoint`): ``OUT/latest`` every eval interval (with the
  optimizer, scheduler position, RNG and data-sampler state, so ``resume`` continues exactly
  where it stopped) and ``OUT/best`` whenever validation loss improves on the best saved.
- ``OUT/metrics.jsonl``: one JSON object per logged train step and per evaluation; also
  TensorBoard (``OUT/tb``) when the ``tensorboard`` package is installed.
- A new run into an OUT that already holds one is refused (``force`` moves the old run to
  ``OUT/previous-N``); a resume drops metrics lines past its checkpoint
  (:mod:`composer.training.runs`).
- Settings are checked when a :class:`TrainConfig` is made (finite, in range), and the
  memory a step needs is estimated before the model is built (:func:`model.check_fits`).
- Ctrl-C or SIGTERM finishes the current step, saves ``latest`` and returns.
- A non-finite loss or gradient skips the step; ``max_bad_steps`` in a row stop the run with
  a :class:`TrainingError`, leaving the last good ``latest`` on disk.
- Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel;
  each rank draws its own shard of windows; only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from composer.controls.features import open_controls
from composer.core.bounds import check_threads
from composer.core.device import resolve_device
from composer.core.messages import ComposerError
from composer.core.rng import get_rng_state, set_rng_state
from composer.corpus.cache import Corpus
from composer.corpus.sources import corpus_record
from composer.model.checkpoint import (
    load_checkpoint,
    model_name,
    read_info,
    save_checkpoint,
    set_recall,
)
from composer.model.config import ModelConfig, ModelError, RecallConfig
from composer.model.lstm import IGNORE_INDEX, ComposerLSTM, check_fits
from composer.model.recall import fit_recall, target_log_probs
from composer.model.storage import to_safe
from composer.model.transfer import transfer_weights, transferable
from composer.tokens.vocab import vocabulary_of
from composer.training.config import (
    RECALL_FIT_WINDOWS,
    TrainConfig,
    TrainingError,
    TrainResult,
    perplexity,
)
from composer.training.data import WindowSampler, eval_batches
from composer.training.optim import Budget, param_groups, plan_line, regroup
from composer.training.runs import MetricsLog, holds_run, set_aside_run, truncate_metrics
from composer.training.streams import StreamSampler, carry


def summed_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (nats) of logits (B, T, V) over the real targets of y (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum",
                           ignore_index=IGNORE_INDEX)


def validation_split(corpus: Corpus) -> str:
    """The split to validate on: ``valid``, or ``train`` when no file fell in valid (tiny
    corpora; ``composer prepare --valid`` sets the share)."""
    return "valid" if len(corpus.files("valid")) else "train"


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
          c: torch.Tensor | None = None, state: tuple[torch.Tensor, ...] | None = None
          ) -> tuple[torch.Tensor, int, tuple[torch.Tensor, ...]]:
    """Summed cross-entropy (nats) over the real targets of a batch (controls ``c``, from
    LSTM ``state``; None: zeros), their count, and the state after it (detached)."""
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    with autocast:
        logits, after = model(x, state, c)  # (B, T, V)
    return (summed_cross_entropy(logits, y), int((y != IGNORE_INDEX).sum()),
            tuple(s.detach() for s in after))


@torch.no_grad()
def evaluate(model: torch.nn.Module, corpus: Corpus, split: str, config: TrainConfig,
             device: torch.device, rank: int = 0, world_size: int = 1,
             controls: Any = None, recall: RecallConfig | None = None) -> dict[str, float]:
    """Mean loss (nats/event), perplexity and next-event accuracy on ``split`` (``controls``:
    the corpus's control array (N, C) for a model with controls). With ``recall`` (on), the
    loss is the model's with it (:mod:`composer.model.recall`), each window recalling its
    own earlier events, and ``loss_alone`` the model's without it, from the same forward;
    the accuracy stays the model's alone."""
    was_training = model.training
    model.eval()
    total = torch.zeros(4, dtype=torch.float64, device=device)  # loss, count, correct, alone
    batches = eval_batches(corpus, split, config.eval_seq_len, config.batch_size, rank,
                           world_size, controls)
    for i, (x, y, *c) in enumerate(batches):
        if config.eval_max_batches and i >= config.eval_max_batches:
            break
        x, y = x.to(device), y.to(device)
        real = y != IGNORE_INDEX
        if recall is not None and recall.on:
            hidden, _ = model.features(x, None, *(t.to(device) for t in c))  # (B, T, H)
            logits = model.head(hidden)  # (B, T, V)
            total[0] -= target_log_probs(logits, hidden, y, recall)[real].sum()
        else:
            logits, _ = model(x, None, *(t.to(device) for t in c))  # (B, T, V)
        total[3] += summed_cross_entropy(logits, y)
        total[1] += real.sum()
        total[2] += ((logits.argmax(-1) == y) & real).sum()
    if world_size > 1:
        dist.all_reduce(total)
    model.train(was_training)
    if total[1] == 0:
        return {"loss": float("nan"), "perplexity": float("nan"), "accuracy": float("nan"),
                "events": 0}
    recalled = recall is not None and recall.on
    alone = float(total[3] / total[1])
    loss = float(total[0] / total[1]) if recalled else alone
    return {"loss": loss, "perplexity": perplexity(loss),
            "accuracy": float(total[2] / total[1]), "events": int(total[1]),
            **({"loss_alone": alone} if recalled else {})}


@contextlib.contextmanager
def _stop_on_signals():
    """Turn the first SIGINT/SIGTERM into a flag checked between steps."""
    flag = {"stop": False}

    def handler(signum, frame):  # noqa: ARG001
        flag["stop"] = True
        signal.signal(signum, previous[signum])  # a second signal acts as usual

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@holds_run
def train(corpus: Corpus, out_dir: str | os.PathLike, model_config: ModelConfig | None = None,
          config: TrainConfig | None = None, *, device: str = "auto", resume: bool = False,
          init_from: str | os.PathLike | None = None, force: bool = False,
          progress: Callable[[int, int, dict[str, float]], None] | None = None,
          notify: Callable[[str], None] | None = None, threads: int | None = None,
          recall: bool = True) -> TrainResult:
    """Train on ``corpus``'s train split, validating on its valid split; see module docs.

    ``resume`` continues ``OUT/latest`` with its saved settings (only ``config.steps`` is
    taken from ``config``); ``init_from`` starts from another checkpoint's weights (same
    event vocabulary) with fresh optimizer state. A new run into an ``out_dir`` that already
    holds one is refused unless ``force``, which moves the old run into ``OUT/previous-N``
    (nothing is deleted); one a live run holds is refused
    (:func:`~composer.training.runs.holds_run`).

    ``threads``: torch's CPU threads (None: as torch has them; ``composer train`` gives
    :func:`~composer.core.bounds.free_cpus`).
    ``recall``: fit the best checkpoint's recall when the run ends done or early-stopped
    (:func:`fit_run_recall`; False: the caller does, as a fine-tune's soup does).
    ``notify(line)`` gets the plan line before the first step. ``progress(step, total, info)``
    is called after every step (info: loss, lr, tokens/s,
    fraction done, seconds left in the budget, last and best validation loss).
    """
    out = Path(out_dir)
    rank, world = _init_distributed()
    dev = resolve_device(device)
    if dev.type == "cpu" and threads is not None:
        torch.set_num_threads(check_threads(threads))
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
        torch.backends.cudnn.enabled = True
    vocab = corpus.events.to_dict()
    if not len(corpus.files("train")):
        raise TrainingError(f"no training data: the train split of {corpus.cache_dir} is empty "
                            f"({len(corpus.paths)} files loaded; see skipped.tsv there)")
    if not resume and (rank == 0 or not force):  # every rank refuses alike; rank 0 moves
        set_aside_run(out, force, TrainingError)
    start = _starting_point(out, resume, init_from, vocab, model_config, config)
    model_config, config = start["model_config"], start["config"]
    try:
        check_fits(model_config, config.batch_size, config.seq_len, training=True,
                   device=dev, what="training this model at this batch size")
    except ComposerError as e:
        raise TrainingError(str(e)) from None
    if resume and rank == 0:
        truncate_metrics(out / "metrics.jsonl", start["step"])
    torch.manual_seed(config.seed)
    model = ComposerLSTM(model_config).to(dev)
    if start["weights"] is not None:
        model.load_state_dict(start["weights"])
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    spec = model_config.controls  # the control array, memory-mapped beside the corpus
    table = open_controls(corpus, spec) if spec.width else None
    augment = config.augment if config.augment.enabled else None
    controls = None if table is None else (table, spec)
    if config.carry_state:
        sampler: Any = StreamSampler(corpus, "train", config.seq_len, config.batch_size,
                                     augment, config.seed, rank, world, controls)
    else:
        sampler = WindowSampler(corpus, "train", config.seq_len, config.batch_size, augment,
                                config.seed, rank, world, controls, config.openings,
                                config.burn_in)
    carried = None  # the LSTM state carried between windows (carry_state)
    state = {"step": 0, "best": float("inf"), "since_best": 0, "skipped": 0}
    if start["train_state"] is not None:
        ts = start["train_state"]
        opt.load_state_dict(regroup(ts["optimizer"], model, opt))
        sampler.load_state_dict(ts["sampler"])
        carried = tuple(t.to(dev) for t in ts["carried"]) if ts.get("carried") else None
        set_rng_state(ts["rng"])
        state.update(ts["progress"])
        # OUT/best may hold a better model than this run's own best (an average of runs:
        # composer.training.soup); only a better one replaces it
        state["best"] = min(state["best"], _saved_loss(out / "best"))
    data_info = corpus_record(corpus)
    if start["base"]:  # the model a fine-tune started from
        data_info["base"] = start["base"]

    def save(name: str, metrics: dict[str, float]) -> None:
        train_state = to_safe({"optimizer": opt.state_dict(), "sampler": sampler.state_dict(),
                               "rng": get_rng_state(), "progress": dict(state),
                               "carried": [t.cpu() for t in carried] if carried else []})
        save_checkpoint(out / name, model, model_config, vocab, train_config=config.to_dict(),
                        step=state["step"], metrics=metrics, data=data_info,
                        train_state=train_state)

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out, rank == 0)
    budget = Budget(config, state.get("seconds_used", 0.0))
    if notify is not None and rank == 0:
        notify(plan_line(budget, layers=model_config.layers, hidden=model_config.hidden,
                         parameters=sum(p.numel() for p in model.parameters()),
                         device=dev.type, threads=torch.get_num_threads(),
                         vocabulary=f"{corpus.events.describe()} events "
                                    f"({model_config.vocab_size} types)",
                         files=corpus_record(corpus)["files"], start_step=start["step"]))
    net.train()
    complete = resume and budget.over(state["step"])  # resumed at its end: nothing to add
    stopped, bad_run = "already complete" if complete else "done", 0
    t_last, tokens_since = time.perf_counter(), 0
    try:
        with _stop_on_signals() as signals:
            while not budget.over(state["step"]):
                step = state["step"]
                # schedule
                lr = budget.lr(step)
                for group in opt.param_groups:
                    group["lr"] = lr
                # eval / checkpoint (not again right after a resume)
                if budget.eval_due(step) and step != start["step"] or signals["stop"]:
                    state["seconds_used"] = budget.used()
                    if _evaluate_and_save(net, model, corpus, config, dev, rank, world, state,
                                          log, save, stop=signals["stop"], table=table):
                        stopped = "interrupted" if signals["stop"] else "early stop"
                        break
                    budget.evaluated()
                # forward / backward
                batch = sampler.next_batch()
                if config.carry_state:  # the state goes on, but not into a new piece
                    *batch, fresh = batch
                    carried = carry(carried, fresh.to(dev))
                x, y, *c = (t.to(dev, non_blocking=True) for t in batch)
                loss_sum, count, after = _loss(net, x, y, dev, *c, state=carried)
                carried = after if config.carry_state else None
                loss = loss_sum / count
                loss.backward()
                # clip
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                bad = torch.tensor(float(not (torch.isfinite(norm) and torch.isfinite(loss))),
                                   device=dev)
                if world > 1:
                    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
                # step
                if bad.item():
                    opt.zero_grad(set_to_none=True)
                    state["skipped"] += 1
                    bad_run += 1
                    if bad_run >= config.max_bad_steps:
                        raise TrainingError(
                            f"loss or gradients were not finite for {bad_run} steps in a row "
                            f"(at step {step}); try a lower --lr. The last good checkpoint "
                            f"is {out / 'latest'}")
                else:
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    bad_run = 0
                state["step"] = step + 1
                # log
                tokens_since += count * world
                if progress or state["step"] % config.log_every == 0:
                    now = time.perf_counter()
                    info = {"loss": loss.item(), "lr": lr,
                            "tokens_per_s": tokens_since / max(now - t_last, 1e-9),
                            "fraction": budget.fraction(state["step"]),
                            "seconds_left": budget.seconds_left(state["step"]),
                            "budget_seconds": budget.seconds,
                            "valid_loss": state.get("valid_loss"), "best": state["best"]}
                    if state["step"] % config.log_every == 0:
                        log.write({"step": state["step"], "split": "train", **info,
                                   "grad_norm": float(norm), "skipped": state["skipped"]})
                        t_last, tokens_since = now, 0
                    if progress:
                        progress(state["step"], config.steps, info)
            else:
                state["seconds_used"] = budget.used()
                if not complete:  # (a finished run resumed writes no second last line)
                    _evaluate_and_save(net, model, corpus, config, dev, rank, world, state,
                                       log, save, stop=True, table=table)
        if world > 1:
            dist.barrier()  # rank 0 may still be writing; leave the group together
    finally:
        log.close()
        if world > 1:
            dist.destroy_process_group()
    result = TrainResult(state["step"], state["best"], stopped, state["skipped"], out)
    if recall and rank == 0 and stopped in ("done", "early stop") and (out / "best").exists():
        result.recall, result.recall_loss = fit_run_recall(out, corpus, config, dev, table)
    return result


def _saved_loss(path: Path) -> float:
    """The validation loss a checkpoint records (inf when it has none or cannot be read)."""
    try:
        loss = read_info(path)["metrics"].get("loss")
    except ComposerError:
        return float("inf")
    return float(loss) if isinstance(loss, (int, float)) else float("inf")


def fit_run_recall(out: Path, corpus: Corpus, config: TrainConfig, dev: torch.device,
                   table: Any) -> tuple[RecallConfig, float]:
    """Fit the best checkpoint's recall (:func:`~composer.model.recall.fit_recall`) on at
    most ``RECALL_FIT_WINDOWS`` windows of the validation split and record it in ``best``
    and ``latest``: the recall and the validation loss with it."""
    model = load_checkpoint(out / "best", map_location=dev).model
    batches = eval_batches(corpus, validation_split(corpus), config.eval_seq_len,
                           config.batch_size, controls=table)
    limit = -(-RECALL_FIT_WINDOWS // config.batch_size)
    recall, _, loss = fit_recall(model, ((t.to(dev) for t in b) for b in islice(batches, limit)))
    for name in ("best", "latest"):
        set_recall(out / name, recall, loss)
    return recall, loss


def _evaluate_and_save(net, model, corpus, config, dev, rank, world, state, log, save,
                       stop: bool, table: Any = None) -> bool:
    """Validate, log, save ``latest`` (and ``best`` if improved); True if training should end
    (asked to stop, or no improvement for ``patience`` evaluations)."""
    split = validation_split(corpus)
    metrics = {**evaluate(net, corpus, split, config, dev, rank, world, table),
               "split_used": split}
    improved = metrics["loss"] < state["best"]
    state["valid_loss"] = metrics["loss"]
    if improved:
        state["best"], state["since_best"] = metrics["loss"], 0
    else:
        state["since_best"] += 1
    if rank == 0:
        log.write({"step": state["step"], "split": "valid", **metrics})
        save("latest", metrics)
        if improved:
            save("best", metrics)
    return stop or bool(config.patience and state["since_best"] >= config.patience)


def _starting_point(out: Path, resume: bool, init_from, vocab: dict, model_config, config
                    ) -> dict[str, Any]:
    """Model config, train config, weights and train state to start from. A fine-tune
    (``init_from``) keeps the base's sizes; given a ``model_config`` that differs from the
    base's in vocabulary or controls (the corpus's own), the weights are carried over by
    name (:func:`~composer.model.transfer.transfer_weights`)."""
    result = {"model_config": model_config, "config": config or TrainConfig(), "weights": None,
              "train_state": None, "step": 0, "base": None}
    source = out / "latest" if resume else init_from
    if resume and init_from is not None:
        raise TrainingError("use either --resume or --init-from, not both")
    if source is None:
        if model_config is None:
            raise TrainingError("a model config is needed to train from scratch")
        return result
    ckpt = load_checkpoint(source, with_train_state=resume)
    events, base = vocabulary_of(vocab), ckpt.events
    if events != base and (resume or not transferable(base, events)):
        raise TrainingError(f"{source} was trained on another event vocabulary than this "
                            f"corpus ({ckpt.event_config} vs {vocab})")
    weights = ckpt.model.state_dict()
    # recall is fitted at a run's end: a resumed run keeps its own, a fine-tune starts off
    recall = ckpt.model_config.recall if resume else RecallConfig()
    wanted = replace(model_config or replace(ckpt.model_config, vocab_size=events.size),
                     recall=ckpt.model_config.recall)
    if wanted != ckpt.model_config:  # a resumed run keeps its model; a fine-tune may not
        mismatch = TrainingError(f"{source} has model {ckpt.model_config}, not {wanted}")
        if resume:
            raise mismatch
        try:
            weights = transfer_weights(weights, ckpt.model_config, base, wanted, events)
        except ModelError:
            raise mismatch from None
    result.update(model_config=replace(wanted, recall=recall), weights=weights,
                  base=ckpt.data.get("base") if resume else model_name(source))
    if resume:
        if ckpt.train_state is None:
            raise TrainingError(f"{source} holds no training state to resume from")
        saved = TrainConfig.from_dict(ckpt.train_config)  # resume keeps its settings ...
        if config is not None:  # ... but may run to a new total of steps or minutes
            saved = replace(saved, steps=config.steps, minutes=config.minutes)
        result.update(train_state=ckpt.train_state, step=ckpt.step, config=saved)
    return result


def _init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), world

