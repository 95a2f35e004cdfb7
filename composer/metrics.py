"""Measures of music and of models: how a piece sounds in numbers, and how well a model fits."""

from __future__ import annotations

import numpy as np

from composer.midi import NoteInput, as_note_array


def silence_fraction(notes: NoteInput, duration: float | None = None) -> float:
    """Fraction of ``[0, duration]`` (default: up to the last note's end) in which no note
    sounds. 1.0 for an empty piece."""
    arr = as_note_array(notes)
    total = float(arr["end"].max()) if duration is None and len(arr) else (duration or 0.0)
    if total <= 0 or len(arr) == 0:
        return 1.0
    order = np.argsort(arr["start"], kind="stable")
    start, end = arr["start"][order], np.minimum(arr["end"][order], total)
    reach = np.maximum.accumulate(end)  # (n,) latest end among notes started so far
    gaps = np.maximum(start[1:] - reach[:-1], 0.0).sum() + start[0] + max(total - reach[-1], 0)
    return float(min(max(gaps / total, 0.0), 1.0))
