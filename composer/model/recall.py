"""Recall: the model's memory of the piece so far (a continuous cache, Grave et al. 2017,
"Improving neural language models with a continuous cache").

Music repeats itself: a phrase comes back, a chorale's first two lines are sung twice, a
tune's A part is played again. An LSTM's state keeps such things loosely. Recall keeps each
earlier moment of the piece exactly: the top LSTM layer's output there (the vector the
output layer reads, made unit length) beside the event that followed it. At a new moment
the earlier ones are weighted by ``softmax(sharpness * cosine)`` with it, and the events
that followed them, so weighted, make a second distribution over the next event, mixed into
the model's own:

    p(next) = (1 - share) * softmax(logits) + share * sum_i w_i [event after moment i]

over the moments ``gap`` to ``span`` events back (:class:`~composer.model.config.RecallConfig`:
16 to 512; the nearest ones are the LSTM state's own, and recalling them let a sampled
piece loop on one event).

Nothing is trained: ``sharpness`` and ``share`` (a :class:`~composer.model.config.RecallConfig`
in the model config) are fitted on the validation split after training
(:func:`fit_recall`), and a model keeps recall off when it does not help there. The same
mix scores held-out music (:func:`target_log_probs`) and is drawn from during generation
(:class:`Recall`, one per batch of rows, the seed's moments included), so the
likelihood reported is the one the music is sampled from.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from composer.model.config import RECALL_SHARES, RECALL_SHARPNESS, RecallConfig
from composer.model.lstm import IGNORE_INDEX, ComposerLSTM


def unit(h: torch.Tensor) -> torch.Tensor:
    """``h`` (..., H) scaled to unit length (the zero vector stays zero)."""
    return F.normalize(h, dim=-1, eps=1e-6)


def _recalled(similarity: torch.Tensor, allowed: torch.Tensor, hits: torch.Tensor,
              sharpness: float) -> torch.Tensor:
    """The recalled probability of each target: ``similarity`` (T, T) cosines of moment t
    (row) with moment i (column), ``allowed`` (T, T) whether i may be recalled at t,
    ``hits`` (T, T) whether it may and the event after i is t's target -> (T,)."""
    weights = torch.softmax((similarity * sharpness).masked_fill(~allowed, -torch.inf), -1)
    return torch.nan_to_num(weights).mul(hits).sum(-1)  # rows with nothing to recall: 0


def _mix(p_model: torch.Tensor, p_recall: torch.Tensor, any_before: torch.Tensor,
         share: float) -> torch.Tensor:
    """log of the mixed probability (where there is something to recall; else the model's)."""
    mixed = torch.where(any_before, (1 - share) * p_model + share * p_recall, p_model)
    return mixed.clamp_min(1e-30).log()


def _row_parts(logits: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor, span: int,
               gap: int) -> tuple[torch.Tensor, ...]:
    """One row's (T, V) logits, (T, H) outputs and (T,) targets -> the model's probability
    of each target (T,), the cosines (T, T), which earlier moments may be recalled (T, T),
    which of them were followed by the target (T, T), and whether any may be (T,)."""
    T = targets.shape[0]
    real = targets != IGNORE_INDEX  # (T,)
    safe = targets.clamp_min(0)
    p_model = torch.softmax(logits.float(), -1).gather(-1, safe[:, None])[:, 0]  # (T,)
    keys = unit(hidden.float())  # (T, H)
    similarity = keys @ keys.t()  # (T, T)
    t = torch.arange(T, device=targets.device)
    i, now = t[None], t[:, None]  # moment i recalled at moment now
    allowed = (i <= now - gap) & (i >= now - span) & real[None]  # (T, T)
    hits = allowed & (safe[None] == safe[:, None])  # (T, T)
    return p_model, similarity, allowed, hits, allowed.any(-1)


def target_log_probs(logits: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor,
                     recall: RecallConfig) -> torch.Tensor:
    """log p(target) under the model with ``recall``, every row a piece (or a window of
    one) read from its start: logits (B, T, V), hidden (B, T, H) (the top layer's outputs),
    targets (B, T) (``IGNORE_INDEX``: padding, never recalled) -> (B, T)."""
    rows = []
    for lg, h, y in zip(logits, hidden, targets, strict=True):
        p_model, similarity, allowed, hits, any_before = _row_parts(lg, h, y, recall.span,
                                                                    recall.gap)
        p_recall = _recalled(similarity, allowed, hits, recall.sharpness)
        rows.append(_mix(p_model, p_recall, any_before, recall.share))
    return torch.stack(rows)  # (B, T)


def fit_recall(model: ComposerLSTM, batches: Iterable[tuple[torch.Tensor, ...]],
               span: int = RecallConfig.span, gap: int = RecallConfig.gap
               ) -> tuple[RecallConfig, float, float]:
    """The recall that scores ``batches`` (``(inputs, targets[, controls])``, (B, T) each,
    as :func:`~composer.training.data.eval_batches` gives the validation split) best:
    each pair of :data:`~composer.model.config.RECALL_SHARPNESS` and
    :data:`~composer.model.config.RECALL_SHARES`; recall off when none beats the model
    alone. Returns it with the loss (nats/event) of the model alone and with it."""
    grid = [(s, q) for s in RECALL_SHARPNESS for q in RECALL_SHARES]
    sums = torch.zeros(len(grid) + 1, dtype=torch.float64)  # [alone, *grid]
    events = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for x, y, *c in batches:
            hidden, _ = model.features(x, None, *c)  # (B, T, H)
            logits = model.head(hidden)  # (B, T, V)
            for lg, h, t in zip(logits, hidden, y, strict=True):
                real = t != IGNORE_INDEX
                p_model, similarity, allowed, hits, any_before = _row_parts(lg, h, t, span,
                                                                            gap)
                sums[0] -= p_model.clamp_min(1e-30).log()[real].sum().item()
                for sharpness in RECALL_SHARPNESS:
                    p_recall = _recalled(similarity, allowed, hits, sharpness)
                    for share in RECALL_SHARES:
                        k = 1 + grid.index((sharpness, share))
                        mixed = _mix(p_model, p_recall, any_before, share)
                        sums[k] -= mixed[real].sum().item()
                events += int(real.sum())
    model.train(was_training)
    if not events:
        return RecallConfig(span=span, gap=gap), float("nan"), float("nan")
    losses = (sums / events).tolist()
    best = min(range(1, len(losses)), key=losses.__getitem__)
    if losses[best] >= losses[0]:
        return RecallConfig(span=span, gap=gap), losses[0], losses[0]
    sharpness, share = grid[best - 1]
    return RecallConfig(sharpness, share, span, gap), losses[0], losses[best]


class Recall:
    """Recall during generation, for ``batch`` rows: the moments drawn so far (their unit
    outputs (B, H, span), the events that followed them (B, span) and their places in the
    piece (span,)), the latest ``span`` kept. Per step: :meth:`mix` the logits of the next
    draw with what the current moment recalls, then :meth:`add` the event drawn there."""

    def __init__(self, config: RecallConfig, batch: int, hidden: int, device: torch.device
                 ) -> None:
        self.config, self.n = config, 0
        self.keys = torch.zeros(batch, hidden, config.span, device=device)  # (B, H, S)
        self.nexts = torch.zeros(batch, config.span, dtype=torch.long, device=device)  # (B, S)
        self.moment = torch.full((config.span,), -1, dtype=torch.long, device=device)  # (S,)
        self.query: torch.Tensor | None = None  # (B, H): the moment of the next draw

    def prime(self, hidden: torch.Tensor, nexts: torch.Tensor) -> None:
        """The seed's moments, the same in every row: hidden (T, H) outputs of the seed's
        tokens but the last, nexts (T,) the seed's tokens after them."""
        self.n = max(0, len(nexts) - self.config.span)  # those before are out of reach
        for t in range(self.n, len(nexts)):
            self.query = unit(hidden[t].float())[None]  # (1, H), broadcast to the rows
            self.add(nexts[t].expand(self.nexts.shape[0]))

    def mix(self, logits: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """logits (B, V) of the draw at the moment whose top output is ``query`` (B, H)
        -> the log-probabilities (B, V) mixed with what it recalls (moments up to ``gap``
        before this one, at most ``span`` back)."""
        self.query = unit(query.float())  # (B, H)
        m = min(self.n, self.config.span)
        if self.n < self.config.gap:
            return logits
        scores = torch.bmm(self.query[:, None], self.keys[:, :, :m])[:, 0]  # (B, m)
        recent = self.moment[:m] > self.n - self.config.gap  # (m,)
        weights = torch.softmax((scores * self.config.sharpness).masked_fill_(recent, -torch.inf),
                                -1)  # (B, m)
        recalled = torch.zeros_like(logits).scatter_add_(1, self.nexts[:, :m], weights)
        share = self.config.share
        mixed = torch.softmax(logits.float(), -1).mul_(1 - share).add_(recalled, alpha=share)
        return mixed.clamp_min_(1e-30).log_()  # (B, V)

    def add(self, tokens: torch.Tensor) -> None:
        """Keep the moment of the last :meth:`mix` with the event ``tokens`` (B,) drawn."""
        if self.query is None:
            return
        i = self.n % self.config.span
        self.keys[:, :, i] = self.query
        self.nexts[:, i] = tokens
        self.moment[i] = self.n
        self.n += 1
