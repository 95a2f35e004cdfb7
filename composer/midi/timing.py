"""Beats and seconds: tempo maps, and the dtypes of note times in beats.

A tempo map is a TEMPO_DTYPE array: one row per tempo, the first at beat 0, sorted by beat,
each with the instant in seconds where it starts and its microseconds per quarter note.
Beats are quarter notes from the start of a piece. :mod:`composer.midi.io` gives every Piece
its notes in beats (BEAT_DTYPE), its tempo map and its time signatures (TIMESIG_DTYPE).
"""

from __future__ import annotations

import numpy as np

from composer.core.messages import ComposerError

# One row per note, beside NOTE_DTYPE rows: times in beats (quarter notes) from the start.
BEAT_DTYPE = np.dtype([("start", np.float64), ("end", np.float64)])
# The tempo map: one row per tempo change, first row at beat 0, sorted by beat.
TEMPO_DTYPE = np.dtype(
    [
        ("beat", np.float64),  # quarter notes from the start (tick / ticks per quarter)
        ("seconds", np.float64),  # the same instant in seconds
        ("us_per_quarter", np.int64),  # microseconds per quarter note from here on
    ]
)
# Time signatures as written in the file (MIDI's default 4/4 applies when there are none).
TIMESIG_DTYPE = np.dtype(
    [("beat", np.float64), ("numerator", np.int16), ("denominator", np.int16)]
)
DEFAULT_US_PER_QUARTER = 500_000  # 120 bpm, MIDI's default tempo


def constant_tempo(us_per_quarter: int = DEFAULT_US_PER_QUARTER) -> np.ndarray:
    """A tempo map (TEMPO_DTYPE) of one tempo from beat 0."""
    if not 0 < us_per_quarter < 1 << 24:
        raise ComposerError(f"tempo must be 1..16777215 us per quarter, got {us_per_quarter}")
    return np.array([(0.0, 0.0, us_per_quarter)], dtype=TEMPO_DTYPE)


def bpm_to_us(bpm: float) -> int:
    """Microseconds per quarter note of a tempo in beats per minute (rounded, as MIDI stores it)."""
    if not (np.isfinite(bpm) and 0.5 <= bpm <= 60e6):
        raise ComposerError(f"tempo must be a finite number of bpm >= 0.5, got {bpm}")
    return int(round(60e6 / bpm))


def beats_to_seconds(beats: np.ndarray, tempos: np.ndarray) -> np.ndarray:
    """Seconds of positions in beats under a tempo map (TEMPO_DTYPE, first row at beat 0)."""
    beats = np.asarray(beats, dtype=np.float64)
    i = np.maximum(np.searchsorted(tempos["beat"], beats, side="right") - 1, 0)
    return tempos["seconds"][i] + (beats - tempos["beat"][i]) * tempos["us_per_quarter"][i] / 1e6


def seconds_to_beats(seconds: np.ndarray, tempos: np.ndarray) -> np.ndarray:
    """Beats of times in seconds under a tempo map (inverse of :func:`beats_to_seconds`)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    i = np.maximum(np.searchsorted(tempos["seconds"], seconds, side="right") - 1, 0)
    return tempos["beat"][i] + (seconds - tempos["seconds"][i]) * 1e6 / tempos["us_per_quarter"][i]


def dominant_tempo(tempos: np.ndarray, end_beat: float) -> int:
    """The tempo (us per quarter) of a tempo map that lasts the most beats up to ``end_beat``
    (a tie: the faster one)."""
    if len(tempos) <= 1:  # one tempo dominates whatever the length (most files)
        return int(tempos["us_per_quarter"][0]) if len(tempos) else DEFAULT_US_PER_QUARTER
    spans = np.diff(np.append(tempos["beat"], max(end_beat, float(tempos["beat"][-1]))))
    if not (spans > 0).any():
        return int(tempos["us_per_quarter"][0])
    total: dict[int, float] = {}
    for us, span in zip(tempos["us_per_quarter"].tolist(), spans.tolist(), strict=True):
        total[us] = total.get(us, 0.0) + span
    return max(total, key=lambda us: (total[us], -us))
