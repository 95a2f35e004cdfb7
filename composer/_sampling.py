"""Drawing one event: the sampling filters and counter-based Gumbel-max noise of
:mod:`composer.generate` (which re-exports :func:`filter_logits`, :func:`gumbel_noise` and
:func:`draw`).

The noise is a pure function of (row key, step, token id), so row ``i`` of ``rng_seed=S``
draws exactly what a single run with ``rng_seed=S+i`` draws, on any device and inside a
CUDA graph.
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import torch

MASK32 = 0xFFFFFFFF


class Sampling(Protocol):
    """The settings a draw reads (:class:`composer.generate.SampleConfig` has them)."""

    temperature: float
    top_k: int
    top_p: float


def filter_logits(logits: torch.Tensor, config: Sampling,
                  banned: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, V) / temperature with removed events at -inf (``logits`` itself is never
    modified): ``banned`` (B, V) bool, then all but the top-k (ties with the k-th are kept),
    then top-p (the most likely events whose mass before each is < top_p; the first stays)."""
    t = config.temperature
    out = logits / t if t not in (0, 1) else logits  # (B, V)
    if banned is not None:
        out = out.masked_fill(banned, -math.inf)
    if 0 < config.top_k < out.shape[1]:
        kth = out.topk(config.top_k, dim=1).values[:, -1:]  # (B, 1)
        out = out.masked_fill(out < kth, -math.inf)
    if config.top_p < 1:
        ranked, order = out.sort(dim=1, descending=True)  # (B, V)
        probs = ranked.softmax(dim=1)
        drop = probs.cumsum(dim=1) - probs >= config.top_p  # mass before >= p
        out = out.scatter(1, order, ranked.masked_fill(drop, -math.inf))
    return out


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash of int64 tensors in [0, 2**32) (no overflow)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    return (x >> 16) ^ x


@functools.lru_cache(maxsize=16)
def _arange(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device)


@functools.lru_cache(maxsize=16)
def _token_hash(vocab_size: int, device: torch.device) -> torch.Tensor:
    return _mix32(_arange(vocab_size, device) + 0x3C6EF372)


def gumbel_noise(keys: torch.Tensor, step: torch.Tensor | int, count: int,
                 vocab_size: int) -> torch.Tensor:
    """Gumbel(0, 1) noise (B, count, V) for steps ``step .. step+count-1``: a pure function
    of row key (B,) int64 in [0, 2**32), step and token id, so the same on any device, in
    any batch, and inside a CUDA graph (``step`` may be a (1,) tensor). Each (row, step) gets
    a full hash; token ids are folded in by one xor-multiply round (the costly part)."""
    ids = _token_hash(vocab_size, keys.device)  # (V,)
    steps = _arange(count, keys.device) + step  # (S,)
    row = _mix32((_mix32(keys)[:, None] + steps) & MASK32)  # (B, S)
    bits = (((row[:, :, None] ^ ids) * 0x6C8E9CF5) & MASK32) >> 8  # (B, S, V), 24 bits
    u = bits.float().add_(0.5).mul_(2.0**-24)  # uniform in (0, 1)
    return u.log_().neg_().log_().neg_()  # -log(-log(u))


def draw(filtered: torch.Tensor, noise: torch.Tensor | None, config: Sampling
         ) -> torch.Tensor:
    """Token ids (B,) from :func:`filter_logits` output by Gumbel-max with ``noise`` (B, V);
    argmax when the temperature is 0."""
    if config.temperature == 0 or noise is None:
        return filtered.argmax(dim=1)
    return (filtered + noise).argmax(dim=1)
