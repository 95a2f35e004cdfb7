"""The network: a stacked LSTM that predicts the next performance event.

``tokens (B, T) -> Embedding -> LSTM (layers, dropout between layers) -> Dropout -> Linear``
gives next-token logits ``(B, T, V)`` and the final recurrent state ``(h, c)``.

A model with controls (``ModelConfig.controls``, a :class:`~composer.controls.ControlSpec`)
takes a control vector ``(B, T, C)`` beside the tokens, concatenated to each embedding
before the LSTM; its NaN slots (a control not given) are replaced by a learned vector
(``unset``). A model without controls (width 0, every checkpoint written before them) has
exactly the parameters and the forward pass it always had.

Dropout is applied only to the *non-recurrent* connections (Zaremba et al. 2014): between
stacked LSTM layers (``nn.LSTM``'s own ``dropout``, which PyTorch applies to each layer's
output sequence before the next layer, never to the state carried from step t-1 to t) and
on the last layer's output before the projection. The recurrent ``h``/``c`` path is never
dropped, so a state carried token by token equals the full-sequence forward exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from composer import ComposerError, Config, is_int, is_number
from composer.controls import ControlSpec
from composer.device import free_memory as available_memory

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, B, hidden)

# Sizes of the named presets (vocab_size and dropout are not part of a preset).
PRESETS: dict[str, dict[str, int]] = {
    "default": {"embed_dim": 256, "hidden": 512, "layers": 3},  # the largest; GPU training
    "small": {"embed_dim": 128, "hidden": 256, "layers": 2},  # hours on a CPU; the shipped model
    "tiny": {"embed_dim": 16, "hidden": 32, "layers": 2},  # tests; 2 layers: dropout between
}

FORGET_BIAS = 1.0  # initial forget-gate bias: remember by default early in training

# Upper bounds on a model's sizes: far past anything useful, low enough that a typo (an
# extra zero, 1e9) is refused before a byte is allocated. Memory is checked separately.
MAX_SIZES: dict[str, int] = {"vocab_size": 1 << 16, "embed_dim": 1 << 15, "hidden": 1 << 15,
                             "layers": 64}
MEMORY_SHARE = 0.8  # refuse work estimated to need more than this share of free memory


class ModelError(ComposerError):
    """An invalid model configuration or input."""


@dataclass(frozen=True)
class ModelConfig(Config):
    """Sizes of :class:`ComposerLSTM`; saved with every checkpoint."""

    _error = ModelError
    _name = "model config"

    vocab_size: int = 388  # token ids 0..vocab_size-1 (Vocabulary(EventConfig()).size)
    embed_dim: int = 256  # size of each token's embedding vector
    hidden: int = 512  # LSTM units per layer
    layers: int = 3  # stacked LSTM layers
    # Dropout between LSTM layers and before the output projection (the shipped model was
    # trained with 0.1; see checkpoints/README.md).
    dropout: float = 0.2
    controls: ControlSpec = field(default_factory=ControlSpec)  # none: today's model exactly

    def to_dict(self) -> dict:
        """The fields as a dict; ``controls`` only when the model has some (so a model
        without controls is saved exactly as before they existed)."""
        d = super().to_dict()
        if not self.controls.width:
            del d["controls"]
        return d

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "hidden", "layers"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ModelError(f"model config: {name} must be a positive integer, got {value!r}")
            if value > MAX_SIZES[name]:
                raise ModelError(f"model config: {name} {value} is over the limit of "
                                 f"{MAX_SIZES[name]}")
        d = self.dropout
        if not is_number(d) or not math.isfinite(d) or not 0 <= d < 1:
            raise ModelError(f"model config: dropout must be a number in [0, 1), got {d!r}")

    def num_parameters(self) -> int:
        """Parameter scalars of a :class:`ComposerLSTM` of this config (nothing allocated)."""
        v, e, h, layers = self.vocab_size, self.embed_dim, self.hidden, self.layers
        c = self.controls.width
        lstm = 4 * h * (e + c + h + 2) + (layers - 1) * 4 * h * (2 * h + 2)
        return v * e + c + lstm + h * v + v

    @classmethod
    def preset(cls, name: str, *, vocab_size: int = 388,
               controls: ControlSpec | None = None) -> ModelConfig:
        """The named size preset ("default", "small" or "tiny") for ``vocab_size`` tokens."""
        if name not in PRESETS:
            raise ModelError(f"unknown model preset {name!r}; expected one of {', '.join(PRESETS)}")
        return cls(vocab_size=vocab_size, **PRESETS[name], controls=controls or ControlSpec())


class ComposerLSTM(nn.Module):
    """Stacked LSTM language model over event tokens (weights shared across time steps)."""

    def __init__(self, config: ModelConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, device=device)
        width = config.controls.width
        if width:  # the learned value of an unset control
            self.unset = nn.Parameter(torch.zeros(width, device=device))  # (C,)
        # nn.LSTM drops each layer's output before the next layer only; with one layer there
        # is nothing between layers, and PyTorch warns if dropout is set, so pass 0.
        self.lstm = nn.LSTM(
            config.embed_dim + width,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
            device=device,
        )
        self.drop = nn.Dropout(config.dropout)  # on the last layer's output, not on h/c
        self.head = nn.Linear(config.hidden, config.vocab_size, device=device)
        self._init_forget_gate()

    @torch.no_grad()
    def _init_forget_gate(self) -> None:
        """Forget-gate bias FORGET_BIAS (Jozefowicz et al. 2015); the rest keeps PyTorch's
        default init (embedding N(0, 1), LSTM and Linear uniform +-1/sqrt(fan_in))."""
        h = self.config.hidden
        for layer in range(self.config.layers):
            # gates i, f, g, o: rows h..2h are the forget gate; the two biases add up
            getattr(self.lstm, f"bias_ih_l{layer}")[h : 2 * h] = FORGET_BIAS  # (4H,)
            getattr(self.lstm, f"bias_hh_l{layer}")[h : 2 * h] = 0.0  # (4H,)

    def fill_controls(self, controls: torch.Tensor | None, shape: tuple[int, ...]
                      ) -> torch.Tensor:
        """Control vectors ``(*shape, C)`` with NaN (unset) slots, or None (all unset),
        filled with the learned ``unset`` values."""
        unset = self.unset.to(self.embed.weight.dtype)
        if controls is None:
            return unset.expand(*shape, unset.shape[0])
        if tuple(controls.shape) != (*shape, unset.shape[0]):
            raise ModelError(f"controls must have shape {(*shape, unset.shape[0])}, got "
                             f"{tuple(controls.shape)}")
        controls = controls.to(unset.dtype)
        return torch.where(torch.isnan(controls), unset, controls)

    def forward(
        self, tokens: torch.Tensor, state: State | None = None,
        controls: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """Next-token logits for every position, and the state after the last one.

        tokens: (B, T) int64 token ids; state: ``(h, c)`` each (layers, B, hidden), or None
        for zeros; controls: (B, T, C) control vectors (NaN: unset; None: all unset), for a
        model with controls only. Returns logits (B, T, V) and the new state ``(h, c)``.
        """
        if tokens.dim() != 2:
            raise ModelError(f"tokens must have shape (batch, time), got {tuple(tokens.shape)}")
        x = self.embed(tokens)  # (B, T, E)
        if self.config.controls.width:
            x = torch.cat([x, self.fill_controls(controls, tuple(tokens.shape))], -1)  # (B,T,E+C)
        elif controls is not None and controls.shape[-1]:
            raise ModelError("this model takes no controls")
        out, (h, c) = self.lstm(x, state)  # out (B, T, H); h, c (L, B, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        return logits, (h, c)

    def step(self, tokens: torch.Tensor, state: State | None = None,
             controls: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One time step: tokens (B,) (and controls (B, C)) -> logits (B, V) and the new
        state (for sampling)."""
        if controls is None:
            logits, state = self(tokens[:, None], state)  # (B, 1, V)
        else:
            logits, state = self(tokens[:, None], state, controls[:, None])  # (B, 1, V)
        return logits[:, 0], state

    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """Zero state ``(h, c)``, each (layers, batch, hidden), on ``device`` (default: the
        model's)."""
        p = next(self.parameters())
        shape = (self.config.layers, batch, self.config.hidden)
        h = torch.zeros(shape, dtype=p.dtype, device=device if device is not None else p.device)
        return h, torch.zeros_like(h)

    def num_parameters(self) -> int:
        """Number of parameter scalars (weights and biases)."""
        return sum(p.numel() for p in self.parameters())



def estimate_bytes(config: ModelConfig, batch: int = 1, seq_len: int = 1,
                   training: bool = False) -> int:
    """Rough float32 memory a model of ``config`` needs for a (batch, seq_len) forward pass
    (and, if ``training``, gradients, AdamW moments and the activations kept for backward)."""
    weights = 4 * config.num_parameters()
    per_token = config.embed_dim + config.controls.width \
        + config.layers * config.hidden * (6 if training else 2) \
        + config.vocab_size * (3 if training else 1)  # embeddings, LSTM gates/cells, logits
    return weights * (4 if training else 1) + 4 * batch * seq_len * per_token


def check_fits(config: ModelConfig, batch: int = 1, seq_len: int = 1, training: bool = False,
               device: torch.device | str = "cpu", what: str = "this model") -> int:
    """Refuse (:class:`ModelError`, one line) work estimated to need more than
    ``MEMORY_SHARE`` of the memory free on ``device``; returns the estimate in bytes."""
    need = estimate_bytes(config, batch, seq_len, training)
    free = available_memory(device)
    if free is not None and need > MEMORY_SHARE * free:
        gib = 1 << 30
        raise ModelError(f"{what} needs about {need / gib:.1f} GiB of memory "
                         f"({config.num_parameters():,} parameters), but only "
                         f"{free / gib:.1f} GiB is free on {torch.device(device).type}; "
                         "use a smaller model, batch size or sequence length")
    return need
