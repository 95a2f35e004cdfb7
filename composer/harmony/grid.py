"""Parts <-> the harmonizer's grid: (voices, T) tokens at ``steps_per_beat`` steps a beat.

A note becomes its pitch token at its onset step and HOLD on the steps it keeps sounding
(config.py numbers the tokens); silence is REST. Onsets and ends are rounded to the nearest
step; a note that rounds to no step, or whose onset another note of the voice takes, is lost
(:func:`grid_fidelity` counts how often, which is how the subdivision was chosen). Back from
the grid, a pitch token starts a note that lasts over the HOLDs after it; a HOLD after a
REST (the model is told not to write one) is silence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from composer.harmony.config import HOLD, PITCH0, REST, HarmonyError
from composer.midi.parts import PART_DTYPE, Part, PartScore


def to_grid(parts: Sequence[np.ndarray], steps_per_beat: int, steps: int | None = None
            ) -> np.ndarray:
    """(V, T) int64 tokens of ``parts`` (PART_DTYPE arrays, one per voice); T = ``steps``,
    else the step after the last note's end."""
    if steps is None:
        ends = [float(p["end"].max()) for p in parts if len(p)]
        steps = int(np.ceil(max(ends, default=0.0) * steps_per_beat - 1e-6))
    grid = np.full((len(parts), steps), REST, np.int64)
    for v, notes in enumerate(parts):
        on = np.rint(notes["start"] * steps_per_beat).astype(np.int64)
        off = np.minimum(np.rint(notes["end"] * steps_per_beat).astype(np.int64), steps)
        for s, e, p in zip(on.tolist(), off.tolist(), notes["pitch"].tolist(), strict=True):
            if 0 <= s < e:
                grid[v, s] = PITCH0 + p
                grid[v, s + 1 : e] = HOLD
    return grid


def from_grid(row: np.ndarray, steps_per_beat: int, velocity: int = 80,
              keep: np.ndarray | None = None) -> np.ndarray:
    """The notes (PART_DTYPE) of one voice's (T,) tokens; with ``keep`` (T,) bool, only the
    notes whose onset step is kept (a note still ends where its HOLDs end)."""
    row = np.asarray(row)
    onsets = np.flatnonzero(row >= PITCH0)
    rows = []
    for s in onsets.tolist():
        if keep is not None and not keep[s]:
            continue
        e = s + 1
        while e < len(row) and row[e] == HOLD and (keep is None or keep[e]):
            e += 1
        rows.append((int(row[s]) - PITCH0, velocity, s / steps_per_beat, e / steps_per_beat))
    return np.array(rows, PART_DTYPE)


def note_count(grid: np.ndarray) -> np.ndarray:
    """(V,) the number of notes (onsets) of each voice of a (V, T) grid."""
    return (np.asarray(grid) >= PITCH0).sum(axis=-1)


def grid_fidelity(parts: Sequence[np.ndarray], steps_per_beat: int) -> tuple[int, int, int]:
    """(notes, exact, lost) of ``parts`` on a grid: how many notes start and end exactly on
    a step, and how many vanish from it (rounded to nothing or overwritten)."""
    grid = to_grid(parts, steps_per_beat)
    total = sum(len(p) for p in parts)
    exact = sum(int(np.sum((np.abs(p["start"] * steps_per_beat - np.rint(p["start"] *
                steps_per_beat)) < 1e-6) & (np.abs(p["end"] * steps_per_beat - np.rint(
                    p["end"] * steps_per_beat)) < 1e-6))) for p in parts)
    return total, exact, total - int(note_count(grid).sum())


def match_voices(score: PartScore, voices: Sequence[str]) -> list[Part]:
    """The parts of ``score`` in the model's voice order: by name where every voice names a
    part (case-insensitive prefix, "S"/"Soprano 1" match "Soprano"), else top to bottom by
    mean pitch. HarmonyError unless there are exactly as many parts as voices."""
    parts = [p for p in score.parts if len(p.notes)]
    if len(parts) != len(voices):
        names = ", ".join(p.name for p in parts) or "none"
        raise HarmonyError(f"the piece has {len(parts)} parts with notes ({names}); the model "
                           f"writes {len(voices)} ({', '.join(voices)})")
    by_name: list[Part] = []
    for voice in voices:
        found = [p for p in parts if p.name.lower().startswith(voice.lower()[:1])
                 and (voice.lower().startswith(p.name.lower().split()[0].rstrip("0123456789"))
                      or p.name.lower().startswith(voice.lower()))]
        if len(found) == 1 and found[0] not in by_name:
            by_name.append(found[0])
    if len(by_name) == len(voices):
        return by_name
    return sorted(parts, key=lambda p: -float(np.mean(p.notes["pitch"])))


def melody_line(part: Part) -> np.ndarray:
    """The top line of a part (PART_DTYPE): at each onset the highest note, and a note cut
    where a later one starts (so the result is monophonic)."""
    notes = np.sort(part.notes, order=["start", "pitch"])[::-1]
    notes = np.sort(notes, order="start", kind="stable")
    keep = np.r_[True, notes["start"][1:] > notes["start"][:-1] + 1e-9]
    top = notes[keep].copy()
    if len(top) > 1:
        top["end"][:-1] = np.minimum(top["end"][:-1], top["start"][1:])
    return top
