"""The network and its files: ``config`` (sizes, torch-free), ``lstm`` (embedding, stacked
LSTM, linear head), ``recall`` (the piece so far, recalled), ``steppers`` (one-event steps:
fused fp32, int8, CUDA graph behind one :class:`~composer.model.steppers.Stepper`),
``storage`` (atomic, safe checkpoint files) and ``checkpoint`` (save, load, find a shipped
model by name)."""

from composer.model.config import ModelConfig

__all__ = ["ModelConfig"]
