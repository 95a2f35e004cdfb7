"""The files of a prepared corpus cache and the check that they agree with corpus.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2
SPLITS = ("train", "valid", "test")
INDEX_DTYPE = np.dtype([("offset", np.int64), ("length", np.int64), ("split", np.int8),
                        ("seconds", np.float64), ("notes", np.int64),
                        ("us_per_quarter", np.int64), ("numerator", np.int16),
                        ("denominator", np.int16), ("on_grid", np.int64), ("onsets", np.int64)])


def cache_problem(cache: Path, meta: dict | None = None) -> str | None:
    """None if tokens.npy and index.npy match what corpus.json records (byte sizes, shapes);
    otherwise a one-line description of the mismatch. No corpus.json yet: None."""
    try:
        meta = meta if meta is not None else json.loads((cache / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    recorded = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(recorded, dict):
        return "corpus.json records no file sizes (written by an older composer)"
    for name, want in recorded.items():
        try:
            size = (cache / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != want:
            return f"{name} is {size:,} bytes, corpus.json records {want:,}"
    try:
        tokens = np.load(cache / "tokens.npy", mmap_mode="r")
        index = np.load(cache / "index.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        return f"tokens.npy or index.npy is unreadable ({e})"
    if tokens.shape != (meta.get("events"),) or index.shape != (meta.get("files_loaded"),) \
            or tokens.dtype != np.uint16 or index.dtype != INDEX_DTYPE:
        return "tokens.npy or index.npy does not have the shape corpus.json records"
    return None
