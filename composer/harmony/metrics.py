"""Voice-leading figures of a grid of voices, for comparing harmonizations with Bach's own.

All on the (V, T) token grid (voices top to bottom), from the pitch each voice sounds at
each step (-1 when silent):

- parallel fifths and octaves: two voices that both move, in the same direction, at the
  same step, from a fifth (or octave/unison, compound or not) to the same interval class;
- voice crossings: steps where a lower voice starts sounding above the voice over it;
- out of range: written notes outside their voice's range in the corpus;
- chord beats: beats whose sounding pitch classes (3+ voices sounding) form a triad
  (major, minor, diminished, augmented) or a seventh chord (dominant, major, minor,
  half-diminished, diminished; the fifth may be left out);
- key overlap: the share of the written voices' note time on pitch classes of the key.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from composer.harmony.config import HOLD, PITCH0

TRIADS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8))
SEVENTHS = ((0, 4, 7, 10), (0, 4, 7, 11), (0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9))


def _chord_sets() -> set[frozenset[int]]:
    out: set[frozenset[int]] = set()
    for root in range(12):
        for shape in TRIADS + SEVENTHS:
            out.add(frozenset((root + s) % 12 for s in shape))
        for shape in SEVENTHS:  # without the fifth
            out.add(frozenset((root + s) % 12 for s in shape if s not in (6, 7, 8)))
    return out


CHORDS = _chord_sets()


def sounding(grid: np.ndarray) -> np.ndarray:
    """(V, T) the MIDI pitch each voice sounds at each step, -1 where silent."""
    out = np.full(grid.shape, -1, np.int64)
    for t in range(grid.shape[1]):
        col = grid[:, t]
        out[:, t] = np.where(col >= PITCH0, col - PITCH0, -1)
        if t:
            out[:, t] = np.where(col == HOLD, out[:, t - 1], out[:, t])
    return out


def parallels(pitch: np.ndarray) -> int:
    """Parallel fifths and octaves between any two voices of (V, T) sounding pitches."""
    count = 0
    prev, cur = pitch[:, :-1], pitch[:, 1:]
    for i in range(len(pitch)):
        for j in range(i + 1, len(pitch)):
            ok = (prev[i] >= 0) & (prev[j] >= 0) & (cur[i] >= 0) & (cur[j] >= 0)
            mi, mj = cur[i] - prev[i], cur[j] - prev[j]
            moved = ok & (mi != 0) & (mj != 0) & (np.sign(mi) == np.sign(mj))
            before, after = (prev[i] - prev[j]) % 12, (cur[i] - cur[j]) % 12
            count += int(np.sum(moved & (before == after) & ((after == 0) | (after == 7))))
    return count


def crossings(pitch: np.ndarray) -> int:
    """Steps where a voice starts sounding above the voice written over it."""
    count = 0
    for i in range(len(pitch) - 1):
        over = (pitch[i] >= 0) & (pitch[i + 1] > pitch[i])  # (T,)
        count += int(over[0]) + int(np.sum(over[1:] & ~over[:-1]))
    return count


def out_of_range(grid: np.ndarray, ranges: Sequence[tuple[int, int]], voices: Sequence[int]
                 ) -> int:
    """Notes of ``voices`` outside their (low, high) range."""
    count = 0
    for v in voices:
        notes = grid[v][grid[v] >= PITCH0] - PITCH0
        lo, hi = ranges[v]
        count += int(np.sum((notes < lo) | (notes > hi)))
    return count


def chord_beats(pitch: np.ndarray, steps_per_beat: int) -> tuple[int, int]:
    """(beats forming a triad or seventh, beats with 3+ voices sounding)."""
    good = total = 0
    for t in range(0, pitch.shape[1], steps_per_beat):
        col = pitch[:, t][pitch[:, t] >= 0]
        if len(col) < 3:
            continue
        total += 1
        good += frozenset((col % 12).tolist()) in CHORDS
    return good, total


def key_overlap(pitch: np.ndarray, voices: Sequence[int], scale: set[int]) -> float:
    """The share of the sounding time of ``voices`` on pitch classes in ``scale``."""
    sel = pitch[list(voices)]
    sel = sel[sel >= 0]
    return float(np.isin(sel % 12, sorted(scale)).mean()) if len(sel) else 0.0


def figures(grid: np.ndarray, steps_per_beat: int, ranges: Sequence[tuple[int, int]],
            written: Sequence[int], scale: set[int]) -> dict[str, float]:
    """The raw figures of one (V, T) grid: beats, parallels, crossings, out-of-range notes,
    notes written, chord beats (good, total) and key overlap."""
    pitch = sounding(grid)
    good, total = chord_beats(pitch, steps_per_beat)
    return {"beats": grid.shape[1] / steps_per_beat, "parallels": parallels(pitch),
            "crossings": crossings(pitch), "out_of_range": out_of_range(grid, ranges, written),
            "notes": int(sum((grid[v] >= PITCH0).sum() for v in written)),
            "chord_good": good, "chord_total": total,
            "key": key_overlap(pitch, written, scale)}


def summarise(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-100-beat rates and shares over many grids' :func:`figures`."""
    beats = sum(r["beats"] for r in rows)
    notes = sum(r["notes"] for r in rows)
    return {"parallels_per_100_beats": 100 * sum(r["parallels"] for r in rows) / beats,
            "crossings_per_100_beats": 100 * sum(r["crossings"] for r in rows) / beats,
            "out_of_range_share": sum(r["out_of_range"] for r in rows) / max(notes, 1),
            "chord_beat_share": sum(r["chord_good"] for r in rows) /
            max(sum(r["chord_total"] for r in rows), 1),
            "key_overlap": float(np.mean([r["key"] for r in rows]))}
