"""The model's sizes and options: :class:`ModelConfig`, its presets and its
:class:`RecallConfig` (torch-free)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from composer.controls.features import ControlSpec
from composer.core.config import Config
from composer.core.messages import ComposerError, is_int, is_number

# Sizes of the named presets (vocab_size and dropout are not part of a preset).
PRESETS: dict[str, dict[str, int]] = {
    "default": {"embed_dim": 256, "hidden": 512, "layers": 3},  # the largest; GPU training
    "small": {"embed_dim": 128, "hidden": 256, "layers": 2},  # hours on a CPU; the shipped model
    "brief": {"embed_dim": 128, "hidden": 192, "layers": 2},  # minutes on a CPU: more steps
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


# What fitting a model's recall tries (composer.model.recall.fit_recall): each sharpness with
# each share, on the validation split, after training; the best pair is kept if it beats
# the model alone. Measured on the shipped model and 4-minute models of two unbundled
# corpora: the best sharpness 40-80, share 0.05-0.25.
RECALL_SHARPNESS = (10.0, 20.0, 40.0, 80.0)
RECALL_SHARES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


@dataclass(frozen=True)
class RecallConfig(Config):
    """A model's recall of the piece so far (a continuous cache, Grave et al. 2017): the
    next event's probabilities are mixed with those of the events that followed the moments
    of this piece most like this one (the cosine of the top LSTM layer's outputs). Fitted
    on the validation split after training; off (``share`` 0) until then."""

    _error = ModelError
    _name = "recall config"

    sharpness: float = 0.0  # weights over earlier moments: softmax(sharpness * cosine)
    share: float = 0.0  # the recalled distribution's share of the mix (0: off)
    # Earlier moments kept. Sampling compares each step with all of them; 512 scored the
    # chorales as 2,048 did (1.822 / 1.818 nats/note; 256: 1.870) at a quarter of the cost.
    span: int = 512
    # The latest moments are not recalled (the LSTM's state holds them): recalling the last
    # few is what feeds a loop in sampling (one event drawn again and again), and skipping
    # the last 16 scored the chorales a little better (1.816 nats/note, all: 1.823).
    gap: int = 16

    def __post_init__(self) -> None:
        for name, low, high in (("sharpness", 0.0, 1e4), ("share", 0.0, 1.0)):
            v = getattr(self, name)
            if not is_number(v) or not math.isfinite(v) or not low <= v < high:
                raise ModelError(f"recall config: {name} must be a number in [{low:g}, "
                                 f"{high:g}), got {v!r}")
        for name in ("span", "gap"):
            v = getattr(self, name)
            if not is_int(v) or not 1 <= v <= 1 << 16:
                raise ModelError(f"recall config: {name} must be an integer in [1, 65536], "
                                 f"got {v!r}")
        if self.gap > self.span:
            raise ModelError(f"recall config: gap {self.gap} is longer than span {self.span}")

    @property
    def on(self) -> bool:
        """Whether recall changes anything."""
        return self.share > 0


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
    recall: RecallConfig = field(default_factory=RecallConfig)  # off until fitted

    def to_dict(self) -> dict:
        """The fields as a dict; ``controls`` only when the model has some and ``recall``
        only when it is on (so such models are saved exactly as before they existed)."""
        d = super().to_dict()
        if not self.controls.width:
            del d["controls"]
        if not self.recall.on:
            del d["recall"]
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
        """The named size preset ("default", "small", "brief" or "tiny") for ``vocab_size``
        tokens."""
        if name not in PRESETS:
            raise ModelError(f"unknown model preset {name!r}; expected one of {', '.join(PRESETS)}")
        return cls(vocab_size=vocab_size, **PRESETS[name], controls=controls or ControlSpec())
