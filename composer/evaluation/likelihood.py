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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from composer.core import bounds
from composer.core.config import Config
from composer.core.device import resolve_device
from composer.core.messages import MetricsError
from composer.corpus.cache import SPLITS, Corpus, is_prepared
from composer.corpus.sources import missing_corpus, open_or_prepare, training_corpus
from composer.model.checkpoint import find_checkpoint, load_checkpoint
from composer.tokens.vocab import vocabulary_of
from composer.training.config import TrainConfig
from composer.training.loop import evaluate, perplexity

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class EvalConfig(Config):
    """Settings of :func:`evaluate_model`."""

    _error = MetricsError
    _name = "evaluation settings"

    order: int = 5  # n-gram baseline order
    unigram_alpha: float = 1.0  # add-alpha smoothing of the unigram baseline
    seq_len: int = 0  # LSTM evaluation window (0: the checkpoint's eval_seq_len)
    batch_size: int = 0  # LSTM evaluation batch (0: the checkpoint's)

    def __post_init__(self) -> None:
        bounds.NGRAM_ORDER.check(self.order, MetricsError, "evaluation settings: order")


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
    total, done, sums = sum(-(-w // cfg.batch_size) for w in windows), [0], np.zeros(3)

    def tick(*_: Any) -> None:  # a forward hook: one call per evaluation batch
        done[0] += 1
        if progress:
            progress("evaluate", done[0], total)

    hook = ckpt.model.register_forward_hook(tick)
    for name in splits:  # sums: loss sum, events, correct predictions
        m = evaluate(ckpt.model, data, name, cfg, dev)
        sums += [m["loss"] * m["events"], m["events"], m["accuracy"] * m["events"]] \
            if m["events"] else 0
    hook.remove()
    train_seqs, vocab = fit_on.sequences("train"), events.size
    loss = sums[0] / sums[1]
    results = {"LSTM": {"loss": loss, "perplexity": perplexity(loss),
                        "accuracy": sums[2] / sums[1], "events": int(sums[1]),
                        "nll": float(sums[0])},
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
             for name, r in results.items() if name != "LSTM"}
    return {"checkpoint": str(ckpt.path), "corpus": str(data.cache_dir), "split": split,
            "files": len(sequences), "notes": notes, "seconds": seconds,
            "train_corpus": str(fit_on.cache_dir),
            "train_events": int(sum(len(s) for s in train_seqs)), "models": results,
            "ahead": ahead}


# ------------------------------------------------------------------ n-gram baselines


class Unigram:
    """Add-alpha unigram: ``p(w) = (c(w) + alpha) / (N + alpha V)`` over the train tokens."""

    def __init__(self, sequences: Sequence[np.ndarray], vocab_size: int, alpha: float = 1.0):
        counts = sum((np.bincount(np.asarray(s, np.int64), minlength=vocab_size)
                      for s in sequences), np.zeros(vocab_size))
        self.probs = (counts + alpha) / (counts.sum() + alpha * vocab_size)  # (V,)

    def distributions(self, sequences: Sequence[np.ndarray]
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(P, targets)``: next-event distributions (m, V) for every event of each file but
        its first, and those events (m,)."""
        for s in (s for s in sequences if len(s) > 1):
            yield np.broadcast_to(self.probs, (len(s) - 1, len(self.probs))), s[1:].astype(int)


class NGram:
    """Interpolated Kneser-Ney n-gram model over token ids, each file BOS-padded.

    ``p_k(w|h) = max(c(hw) - D_k, 0) / c(h) + D_k N1+(h.) / c(h) * p_{k-1}(w|h')`` with raw
    counts at the top order, continuation counts N1+(.hw) below, one discount per order
    ``D = n1 / (n1 + 2 n2)``, an unseen context passing ``p_{k-1}`` on, and ``p_0 = 1/V``, so
    every token has probability > 0. The key of a k-gram is ``id(prefix) * (V+1) + last``
    with ids numbered order by order, so any vocabulary fits and fitting is ``np.unique``.
    """

    def __init__(self, sequences: Sequence[np.ndarray], vocab_size: int, order: int = 5):
        bounds.NGRAM_ORDER.check(order, MetricsError)
        self.order, self.vocab = order, vocab_size
        stream, _ = self._pad(sequences)
        at = np.flatnonzero(stream != vocab_size)  # (N,) training targets: every real token
        self.keys, ids, self.tables = [], [], []  # tables: (counts, totals, types, D) per order
        for _ in range(order):
            uniq, inv = np.unique(self._key(ids[-1] if ids else None, stream, 0),
                                  return_inverse=True)
            self.keys.append(uniq)
            ids.append(inv)
        for k in range(order):  # order k + 1
            if k == order - 1:  # raw counts
                counts = np.bincount(ids[k][at], minlength=len(self.keys[k]))
            else:  # continuation counts: distinct left extensions
                _, first = np.unique(ids[k + 1][at], return_index=True)
                counts = np.bincount(ids[k][at[first]], minlength=len(self.keys[k]))
            n1, n2 = (counts == 1).sum(), (counts == 2).sum()
            ctx = self.keys[k] // (vocab_size + 1) if k else np.zeros(len(counts), int)
            n_ctx = len(self.keys[k - 1]) if k else 1
            self.tables.append((counts.astype(float),
                                np.bincount(ctx, weights=counts, minlength=n_ctx),
                                np.bincount(ctx, weights=counts > 0, minlength=n_ctx),
                                n1 / (n1 + 2 * n2) if n1 and n2 else 0.5))

    def _pad(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All files, each after order-1 BOS tokens (id V): stream (S,), and the position of
        each file's first token (F,)."""
        bos = np.full(self.order - 1, self.vocab, np.int64)
        stream = np.concatenate([p for s in sequences for p in (bos, s)] or [bos]).astype(int)
        lengths = np.array([len(s) for s in sequences], np.int64)
        return stream, np.cumsum(lengths + len(bos)) - lengths

    def _key(self, prefix_ids: np.ndarray | None, stream: np.ndarray, first: int) -> np.ndarray:
        """Keys (S,) of the k-grams ending at each position from the ids of the (k-1)-grams
        (-1: unseen, giving key -1); position 0 has no prefix and takes id ``first``."""
        if prefix_ids is None:
            return stream
        prev = np.r_[first, prefix_ids[:-1]]
        return np.where(prev >= 0, prev * (self.vocab + 1) + stream, -1)

    def distributions(self, sequences: Sequence[np.ndarray], chunk: int = 4096
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(P, targets)`` like :meth:`Unigram.distributions`; rows of P sum to 1."""
        stream, starts = self._pad(sequences)
        ids = []  # (S,) per order below the top: id of the k-gram ending here, -1 if unseen
        for keys in self.keys[:-1]:
            key = self._key(ids[-1] if ids else None, stream, -1)
            pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            ids.append(np.where((key >= 0) & (keys[pos] == key), pos, -1))
        targets = np.setdiff1d(np.flatnonzero(stream != self.vocab), starts)  # (M,)
        for c in range(0, len(targets), chunk):
            t = targets[c : c + chunk]
            p = np.full((len(t), self.vocab), 1.0 / self.vocab)  # (m, V)
            for k in range(self.order):
                self._interpolate(p, ids[k - 1][t - 1] if k else np.zeros(len(t), int), k)
            yield p, stream[t]

    def _interpolate(self, p: np.ndarray, ctx: np.ndarray, k: int) -> None:
        """Turn order k's distributions ``p`` (m, V) into order k+1's, given the context ids
        (m,) of each row (-1: unseen)."""
        (counts, totals, types, d), keys, v1 = self.tables[k], self.keys[k], self.vocab + 1
        rows = np.flatnonzero((ctx >= 0) & (totals[np.maximum(ctx, 0)] > 0))  # seen contexts
        h = ctx[rows]
        p[rows] *= (d * types[h] / totals[h])[:, None]
        lo, hi = np.searchsorted(keys, h * v1), np.searchsorted(keys, h * v1 + v1)
        n = hi - lo
        entry = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())  # (E,) table entries
        row, word = np.repeat(rows, n), keys[entry] % v1
        value = np.maximum(counts[entry] - d, 0.0) / np.repeat(totals[h], n)
        ok = (word < self.vocab) & (value > 0)  # BOS is never predicted
        p[row[ok], word[ok]] += value[ok]


def per_amount(nll: float, notes: int, seconds: float) -> dict[str, float]:
    """A total NLL (nats) per note and per second of music (NaN where there are none)."""
    return {"nll_per_note": nll / notes if notes else float("nan"),
            "nll_per_second": nll / seconds if seconds > 0 else float("nan")}


def score(model: Unigram | NGram, sequences: Sequence[np.ndarray]) -> dict[str, float]:
    """NLL (``loss``: nats/event; ``nll``: nats in all), perplexity and next-event (argmax)
    accuracy of a baseline on the token ids of ``sequences`` (any vocabulary)."""
    nll = correct = events = 0
    for p, t in model.distributions(sequences):
        nll -= np.log(p[np.arange(len(t)), t]).sum()
        correct += (p.argmax(1) == t).sum()
        events += len(t)
    loss = nll / events if events else float("nan")
    return {"loss": float(loss), "perplexity": perplexity(loss),
            "accuracy": float(correct / events) if events else float("nan"), "events": events,
            "nll": float(nll)}
