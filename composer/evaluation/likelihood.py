"""Model evaluation: how well a trained LSTM predicts held-out music, next to baselines.

:func:`evaluate_model` scores the LSTM's negative log-likelihood (nats/event), perplexity and
next-event accuracy on a split, next to two baselines fitted on the train split in the same
run and scored on exactly the same targets (every event of a file but its first): an
add-alpha :class:`Unigram` and an interpolated Kneser-Ney :class:`NGram` (order 5; Chen &
Goodman 1998), whose probabilities are all > 0. It sits at the top, beside the CLI.

Per event, models on different vocabularies do not compare (a vocabulary that spends more
tokens on a piece has an easier job per token). So the total NLL of the scored pieces is
also divided by their notes and by their seconds of music (the corpus index's ``notes`` and
``seconds``: the pieces as read from MIDI, whatever the vocabulary): nats per note and per
second compare any two models, and the baselines, on the same test pieces. The baselines
see token ids only (:func:`score`), so they fit any vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from composer.core.device import resolve_device
from composer.core.messages import MetricsError
from composer.corpus.cache import SPLITS, Corpus, is_prepared
from composer.corpus.sources import missing_corpus, open_or_prepare, training_corpus
from composer.evaluation.baselines import EvalConfig, NGram, Unigram, per_amount, score
from composer.model.checkpoint import find_checkpoint, load_checkpoint
from composer.model.config import RecallConfig
from composer.tokens.vocab import vocabulary_of
from composer.training.config import TrainConfig, perplexity
from composer.training.loop import evaluate

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def evaluate_model(checkpoint: str | os.PathLike, corpus: Any = None, split: str = "test", *,
                   train_corpus: Any = None, config: EvalConfig = EvalConfig(),
                   device: str = "auto", progress: Progress | None = None) -> dict[str, Any]:
    """LSTM vs unigram vs n-gram on the same events: ``{"models": {name: {loss, perplexity,
    accuracy, events}}, "ahead": {baseline: {loss, perplexity_ratio, accuracy}}, ...}``.

    ``corpus``: a :class:`~composer.corpus.cache.Corpus` or prepared cache folder (its ``split``,
    or ``"all"``); a MIDI folder (prepared with the checkpoint's event settings into its
    default cache; all its files are evaluated); None: the corpus the checkpoint trained on
    (``data.corpus`` in checkpoint.json). The baselines are fitted on the train split of
    ``train_corpus``, by default that training corpus, so they see what the LSTM saw.
    ``progress(stage, done, total)`` reports "ingest" (files) and "evaluate" (batches).
    Each model also gets ``nll`` (total nats) and ``nll_per_note`` / ``nll_per_second``
    (that total over the ``notes`` / ``seconds`` of the scored files).
    """
    dev = resolve_device(device)
    ckpt = load_checkpoint(find_checkpoint(checkpoint), map_location=dev)  # or a shipped name
    events = vocabulary_of(ckpt.event_config)
    trained_on, settings = training_corpus(ckpt.data, events)

    def open_source(source: Any, what: str) -> Corpus:
        if source is None and trained_on is None:
            several = isinstance(ckpt.data.get("sources"), dict)
            raise MetricsError(
                f"the corpus {checkpoint} was trained on is not here ({missing_corpus(ckpt.data)})"
                f"; give the {what}: pass --corpus DIR --train-corpus DIR, DIR the MIDI folder"
                + (" holding those folders as its style subfolders" if several else ""))
        source = trained_on if source is None else source
        tick = progress and (lambda done, total: progress("ingest", done, total))
        found = open_or_prepare(source, settings, progress=tick)
        if found.events != events:
            raise MetricsError(f"{found.cache_dir} has other event settings than {checkpoint}")
        return found

    if corpus is not None and not isinstance(corpus, Corpus):
        split = split if is_prepared(corpus) else "all"  # a MIDI folder: all its files
    data = open_source(corpus, "corpus to evaluate on")
    fit_on = open_source(train_corpus, "training corpus for the baselines")
    splits = list(SPLITS) if split == "all" else [split]
    sequences = [s for name in splits for s in data.sequences(name)]
    if not sum(len(s) > 1 for s in sequences):
        raise MetricsError(f"no events to evaluate in split {split!r} of {data.cache_dir}")
    cfg = replace(TrainConfig.from_dict(ckpt.train_config), eval_max_batches=0)
    # checkpoints from before eval_seq_len were validated in their training windows
    window = config.seq_len or ckpt.train_config.get("eval_seq_len", cfg.seq_len)
    cfg = replace(cfg, eval_seq_len=window, batch_size=config.batch_size or cfg.batch_size)
    windows = [sum(-(-max(len(s) - 1, 0) // window) for s in data.sequences(name))
               for name in splits]
    total, done = sum(-(-w // cfg.batch_size) for w in windows), [0]

    def tick(*_: Any) -> None:  # a forward hook: one call per evaluation batch
        done[0] += 1
        if progress:
            progress("evaluate", done[0], total)

    hook = ckpt.model.head.register_forward_hook(tick)
    lstms = _scores(ckpt.model, data, splits, cfg, dev, ckpt.model_config.recall)
    hook.remove()
    train_seqs, vocab = fit_on.sequences("train"), events.size
    results = {**lstms,
               f"{config.order}-gram KN": score(NGram(train_seqs, vocab, config.order), sequences),
               "unigram": score(Unigram(train_seqs, vocab, config.unigram_alpha), sequences)}
    rows = np.concatenate([data.files(name) for name in splits])
    notes, seconds = int(data.index["notes"][rows].sum()), float(data.index["seconds"][rows].sum())
    for r in results.values():
        r.update(per_amount(r["nll"], notes, seconds))
    lstm = results["LSTM"]
    ahead = {name: {"loss": r["loss"] - lstm["loss"], "accuracy": lstm["accuracy"] - r["accuracy"],
                    "perplexity_ratio": r["perplexity"] / lstm["perplexity"],
                    "nll_per_note": r["nll_per_note"] - lstm["nll_per_note"]}
             for name, r in results.items() if not name.startswith("LSTM")}
    return {"checkpoint": str(ckpt.path), "corpus": str(data.cache_dir), "split": split,
            "files": len(sequences), "notes": notes, "seconds": seconds,
            "train_corpus": str(fit_on.cache_dir),
            "train_events": int(sum(len(s) for s in train_seqs)), "models": results,
            "ahead": ahead}


def _scores(model: Any, data: Corpus, splits: list[str], cfg: TrainConfig, dev: Any,
            recall: RecallConfig) -> dict[str, dict[str, Any]]:
    """The LSTM's loss, perplexity, accuracy, events and total NLL on ``splits``: "LSTM"
    (with ``recall`` when it is on) and, when it is, "LSTM alone" (from the same forward)."""
    sums = np.zeros(4)  # loss sum, events, correct predictions, loss sum alone
    for name in splits:
        m = evaluate(model, data, name, cfg, dev, recall=recall)
        sums += [m["loss"] * m["events"], m["events"], m["accuracy"] * m["events"],
                 m.get("loss_alone", m["loss"]) * m["events"]] if m["events"] else 0

    def row(nll: float) -> dict[str, Any]:
        loss = nll / sums[1]
        return {"loss": loss, "perplexity": perplexity(loss), "accuracy": sums[2] / sums[1],
                "events": int(sums[1]), "nll": float(nll)}

    return {"LSTM": row(sums[0]), **({"LSTM alone": row(sums[3])} if recall.on else {})}
