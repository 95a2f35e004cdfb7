"""Where torch runs: the one place that turns ``--device auto|cpu|cuda`` into a device, and
how much memory is free there."""

from __future__ import annotations

import os

import torch

from composer.core.messages import ComposerError


class DeviceError(ComposerError):
    """The asked-for device is not available here."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)


def free_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes free for new tensors on ``device``: the GPU's free memory, or the system's
    available memory (``MemAvailable``); None when it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
