"""The network: a stacked LSTM that predicts the next performance event.

``tokens (B, T) -> Embedding -> LSTM (layers, dropout between layers) -> Dropout -> Linear``
gives next-token logits ``(B, T, V)`` and the final recurrent state ``(h, c)``.

A model with controls (``ModelConfig.controls``, a :class:`~composer.controls.features.ControlSpec`)
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

import torch
from torch import nn

from composer.core.device import free_memory as available_memory
from composer.model.config import FORGET_BIAS, MEMORY_SHARE, ModelConfig, ModelError

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, B, hidden)
IGNORE_INDEX = -100  # the target id of padding, never scored (cross_entropy's default)


class ComposerLSTM(nn.Module):
    """Stacked LSTM language model over event tokens (weights shared across time steps)."""

    def __init__(self, config: ModelConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        # On "meta" (shapes only) the embedding gets no N(0, 1) init: that one, on meta,
        # imports torch._dynamo (seconds of start-up for every checkpoint load).
        meta = device is not None and torch.device(device).type == "meta"
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, device=device,
                                  _weight=torch.empty(config.vocab_size, config.embed_dim,
                                                      device=device) if meta else None)
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
        out, state = self.features(tokens, state, controls)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)

    def features(
        self, tokens: torch.Tensor, state: State | None = None,
        controls: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """What :meth:`forward` feeds its output layer: the top LSTM layer's outputs (B, T, H)
        (before dropout), and the new state; the arguments as :meth:`forward`'s."""
        if tokens.dim() != 2:
            raise ModelError(f"tokens must have shape (batch, time), got {tuple(tokens.shape)}")
        x = self.embed(tokens)  # (B, T, E)
        if self.config.controls.width:
            x = torch.cat([x, self.fill_controls(controls, tuple(tokens.shape))], -1)  # (B,T,E+C)
        elif controls is not None and controls.shape[-1]:
            raise ModelError("this model takes no controls")
        out, (h, c) = self.lstm(x, state)  # out (B, T, H); h, c (L, B, H)
        return out, (h, c)

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
