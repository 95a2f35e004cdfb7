"""What a prepared corpus knows about its music beyond the tokens: which event vocabulary
``auto`` picks for it, its guards, its typical tempo.

- :func:`choose_vocabulary`: the beat vocabulary (``notes``) when the corpus is quantised
  (at least ``QUANTISED_SHARE`` of all onsets, summed over files, on the beat grid, and no
  file with SMPTE time division), else performance events; with a one-line reason.
- :class:`PrepareReport`: what one ``prepare`` run found and did.
- :func:`summarise`: from the per-file records of an ingest, the corpus's grid counts, the
  guards (:func:`composer.guards.combine` over the train split) and the median tempo.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from composer.guards import combine
from composer.vocab import NOTES, PERFORMANCE

QUANTISED_SHARE = 0.9  # auto: share of onsets on the grid above which a corpus is quantised


@dataclass
class PrepareReport:
    """What one ``prepare`` run found and did."""

    cache_dir: Path
    files_found: int = 0
    files_loaded: int = 0
    files_parsed: int = 0  # parsed in this run (the rest came from the cache)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    notes: int = 0
    events: int = 0
    seconds: float = 0.0
    split_files: dict[str, int] = field(default_factory=dict)
    repaired: str | None = None  # what was wrong with the cache found, if it was rebuilt
    vocabulary: str = PERFORMANCE  # the event vocabulary of the corpus
    why: str = ""  # one line: which vocabulary and why (e.g. the share of onsets on the grid)
    grid: list[int] = field(default_factory=lambda: [0, 0, 0])  # on grid, onsets, SMPTE files

    def skipped_by_reason(self) -> Counter:
        """Skipped files counted by kind of reason (numbers and positions stripped)."""
        return Counter(reason_kind(r) for _, r in self.skipped)


def reason_kind(reason: str) -> str:
    """Group a one-line reason: 'track 2: data byte over 127 at byte 40' -> 'data byte over 127'."""
    r = re.sub(r"^track \d+: ", "", reason)
    r = re.sub(r" at byte \d+", "", r)
    r = re.sub(r"\d+(\.\d+)?", "N", r)
    return r.split(" of ")[0] if r.startswith("duplicate") else r


def choose_vocabulary(on_grid: int, onsets: int, smpte_files: int, steps_per_quarter: int
                      ) -> tuple[str, str]:
    """(kind, reason) of ``auto`` for a corpus with these grid counts."""
    share = on_grid / onsets if onsets else 0.0
    grid = f"{share:.2%} of onsets on the 1/{steps_per_quarter}-beat grid"
    if smpte_files:
        return PERFORMANCE, f"{smpte_files} file(s) timed in SMPTE frames, not beats; {grid}"
    if share >= QUANTISED_SHARE:
        return NOTES, grid
    return PERFORMANCE, f"only {grid}, below {QUANTISED_SHARE:.0%}"


def summarise(records: Sequence[dict], splits: np.ndarray) -> dict[str, Any]:
    """``grid`` [on grid, onsets, SMPTE files], ``guards`` (measured on the train split,
    split 0; on every file when it is empty) and ``tempo`` (median microseconds per quarter)
    of loaded files' ingest records (``splits``: each record's split)."""
    grid = [sum(int(r.get("grid", (0, 0))[k]) for r in records) for k in (0, 1)]
    grid.append(sum(bool(r.get("smpte")) for r in records))
    train = [r for r, s in zip(records, splits, strict=True) if s == 0] or list(records)
    tempos = [r["clock"][0] for r in records if r.get("clock")]
    return {"grid": grid, "guards": combine(r.get("stats", {}) for r in train).to_dict(),
            "tempo": int(np.median(tempos)) if tempos else None}
