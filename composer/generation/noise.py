"""The draw: counter-based Gumbel-max over the processed scores.

The noise is a pure function of (row key, step, token id), so row ``i`` of ``rng_seed=S``
draws exactly what a single run with ``rng_seed=S+i`` draws, on any device, in any batch
and inside a CUDA graph. :class:`Sampler` holds the row keys and whether the draw is greedy
(the argmax, no noise: :attr:`composer.generation.processors.Processors.greedy`).
"""

from __future__ import annotations

import functools

import torch

MASK32 = 0xFFFFFFFF


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
    of row key (B,) int64 in [0, 2**32), step and token id (``step`` may be a (1,) tensor).
    Each (row, step) gets a full hash; token ids are folded in by one xor-multiply round
    (the costly part)."""
    ids = _token_hash(vocab_size, keys.device)  # (V,)
    steps = _arange(count, keys.device) + step  # (S,)
    row = _mix32((_mix32(keys)[:, None] + steps) & MASK32)  # (B, S)
    h = row[:, :, None] ^ ids  # (B, S, V)
    bits = h.mul_(0x6C8E9CF5).bitwise_and_(MASK32).bitwise_right_shift_(8)  # 24 bits, in place
    u = bits.float().add_(0.5).mul_(2.0**-24)  # uniform in (0, 1)
    return u.log_().neg_().log_().neg_()  # -log(-log(u))


def row_keys(rng_seed: int, num: int, device: torch.device) -> torch.Tensor:
    """(num,) int64: row i's key, ``rng_seed + i`` in 32 bits."""
    return (torch.arange(num, device=device) + (rng_seed & MASK32)) & MASK32


class Sampler:
    """Draws one token per row: Gumbel-max with the rows' noise, or the argmax when
    ``greedy``."""

    def __init__(self, keys: torch.Tensor, greedy: bool) -> None:
        self.keys, self.greedy = keys, greedy  # (B,)

    def noise(self, step: torch.Tensor | int, count: int, vocab_size: int
              ) -> torch.Tensor | None:
        """(B, count, V) noise of steps ``step ..`` (None when greedy)."""
        return None if self.greedy else gumbel_noise(self.keys, step, count, vocab_size)

    def __call__(self, scores: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Token ids (B,) from processed scores (B, V) (a copy of the processors' own, which
        it adds to) and this step's ``noise`` (B, V)."""
        if self.greedy or noise is None:
            return scores.argmax(dim=1)
        return scores.add_(noise).argmax(dim=1)  # the processors' copy: no logits change
