"""The baselines every model is scored against, and the scoring they share (torch-free).

An add-alpha :class:`Unigram` and an interpolated Kneser-Ney :class:`NGram` (order 5; Chen &
Goodman 1998), whose probabilities are all > 0, fitted on a corpus's train split and scored
(:func:`score`) on exactly the targets the LSTM is scored on; they see token ids only, so
they fit any vocabulary. :func:`per_amount` turns a total NLL into nats per note and per
second, which compare models on different vocabularies. :class:`EvalConfig` holds the
settings of an evaluation (the CLI reads its defaults without importing torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from composer.core import bounds
from composer.core.config import Config
from composer.core.messages import MetricsError
from composer.training.config import perplexity


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
