"""Where torch runs: the one place that turns ``--device auto|cpu|cuda`` into a device."""

from __future__ import annotations

import torch

from composer import ComposerError


class DeviceError(ComposerError):
    """The asked-for device is not available here."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)
