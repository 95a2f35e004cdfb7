"""Random number generators: seeds checked into range, and the RNG states a resume restores.

:func:`check_seed` is the one place a user's seed is validated (training's ``seed``,
generation's ``--rng-seed``): a whole number in [0, 2**63-1], else a one-line error.
:func:`get_rng_state` / :func:`set_rng_state` capture and restore the Python, NumPy and
torch generators as plain data that ``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from composer.core.messages import ComposerError


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy (global) and torch (CPU, and CUDA if present) RNG states as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),  # (version, tuple of 625 ints, gauss_next): plain already
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),  # (624,) uint32 values
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the RNG states :func:`get_rng_state` captured (CUDA only where present)."""
    try:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        np_state = state["numpy"]
        np.random.set_state((
            np_state["kind"], np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
            np_state["has_gauss"], np_state["cached_gaussian"],
        ))
        torch.set_rng_state(state["torch"].cpu())
        if "cuda" in state and torch.cuda.is_available():
            for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state.cpu(), device)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise ComposerError(f"train state: malformed RNG state ({e})"[:300]) from None
