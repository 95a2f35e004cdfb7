"""The harmonizer network: stacked bidirectional LSTMs over a grid of voices.

At every step each voice's cell is a token (a pitch, HOLD, REST, or MASK for a cell to
guess, see config.py); the cells' embeddings are joined with the step's place in the beat and
in the bar, and a stack of bidirectional LSTM layers reads the whole grid forward and
backward, so the guess at a step sees the past and the future of every voice (Coconet's
orderless view, with DeepBach's recurrent reading of both sides). Dropout sits between the
layers and before the output, never across time. The output is a distribution over the
tokens for every voice at every step; only the masked cells' are used.
"""

from __future__ import annotations

import torch
from torch import nn

from composer.harmony.config import HOLD, MASK, PITCH0, REST, TOKENS, HarmonyModelConfig

MAX_BAR_BEATS = 16  # the beat-in-bar feature is clipped here


class HarmonyNet(nn.Module):
    """(B, V, T) grid tokens with MASK cells -> (B, V, T, TOKENS) logits."""

    def __init__(self, config: HarmonyModelConfig):
        super().__init__()
        self.config = config
        v, e, h = len(config.voices), config.embed, config.hidden
        self.cell = nn.Embedding(TOKENS + 1, e)  # shared by the voices; order tells them apart
        self.sub = nn.Embedding(config.steps_per_beat, 8)  # step within the beat
        self.beat = nn.Embedding(MAX_BAR_BEATS, 8)  # beat within the bar
        self.inp = nn.Linear(v * e + 16, h)
        self.lstm = nn.LSTM(h, h, config.layers, batch_first=True, bidirectional=True,
                            dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * h, v * TOKENS)

    def forward(self, grid: torch.Tensor, beats_per_bar: int | None = None) -> torch.Tensor:
        b, v, t = grid.shape
        x = self.cell(grid).permute(0, 2, 1, 3).reshape(b, t, -1)  # (B, T, V*E)
        step = torch.arange(t, device=grid.device)  # (T,)
        spb = self.config.steps_per_beat
        bar = beats_per_bar or self.config.beats_per_bar
        pos = torch.cat([self.sub(step % spb), self.beat((step // spb % bar).clamp(
            max=MAX_BAR_BEATS - 1))], dim=-1)  # (T, 16)
        x = torch.cat([x, pos.expand(b, t, -1)], dim=-1)  # (B, T, V*E + 16)
        x = torch.relu(self.inp(x))  # (B, T, H)
        y, _ = self.lstm(x)  # (B, T, 2H)
        logits = self.out(self.drop(y)).reshape(b, t, v, TOKENS)  # (B, T, V, K)
        return logits.permute(0, 2, 1, 3)  # (B, V, T, K)


def allowed(config: HarmonyModelConfig, steps: int, no_hold: torch.Tensor | None = None
            ) -> torch.Tensor:
    """(V, T, K) bool: the tokens each voice may take: REST, HOLD (not at step 0 nor where
    ``no_hold`` (V, T) says) and the pitches inside the voice's range."""
    v = len(config.voices)
    ok = torch.zeros(v, steps, TOKENS, dtype=torch.bool)
    ok[:, :, REST] = True
    ok[:, 1:, HOLD] = True
    if no_hold is not None:
        ok[:, :, HOLD] &= ~no_hold
    for i, (lo, hi) in enumerate(config.ranges):
        ok[i, :, PITCH0 + lo : PITCH0 + hi + 1] = True
    return ok


def masked_input(grid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``grid`` with the cells where ``mask`` is True replaced by MASK (same shape)."""
    return torch.where(mask, torch.full_like(grid, MASK), grid)
