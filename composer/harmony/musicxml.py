"""Scores as MusicXML through music21 (the optional extra ``composer[score]``): one part per
voice with its name, the key signature, the time signature and the tempo, notes in measures,
so that MuseScore, Finale or music21 open it as a score.

music21 is imported only here and only when asked; without it the error names the extra.
"""

from __future__ import annotations

import os
from pathlib import Path

from composer.core.files import atomic_write
from composer.harmony.config import HarmonyError
from composer.midi.parts import PartScore

EXTRA = "pip install 'composer[score]'"


def music21_module():
    """The music21 module, or a one-line HarmonyError naming the extra that brings it."""
    try:
        import music21
    except ImportError:
        raise HarmonyError(f"MusicXML needs music21, which is not installed ({EXTRA})"
                           ) from None
    return music21


def to_music21(score: PartScore):
    """A music21 Score of ``score``: parts in order, named, each in measures."""
    m21 = music21_module()
    out = m21.stream.Score()
    grid = 1 / 480  # offsets in quarter lengths, exact to the written MIDI's ticks
    for part in score.parts:
        p = m21.stream.Part()
        p.partName = part.name
        p.id = part.name
        instrument = m21.instrument.Instrument()
        instrument.partName = part.name
        p.insert(0, instrument)
        p.insert(0, m21.meter.TimeSignature(f"{score.meter[0]}/{score.meter[1]}"))
        if score.key is not None:
            p.insert(0, m21.key.KeySignature(int(score.key)))
        p.insert(0, m21.tempo.MetronomeMark(number=round(60e6 / score.tempo)))
        for row in part.notes:
            start = round(float(row["start"]) / grid) * grid
            length = max(round(float(row["end"] - row["start"]) / grid) * grid, grid)
            n = m21.note.Note(int(row["pitch"]), quarterLength=length)
            p.insert(start, n)
        out.insert(0, p)
    return out.makeNotation()


def write_musicxml(score: PartScore, path: str | os.PathLike) -> Path:
    """Write ``score`` as MusicXML at ``path`` (atomically)."""
    m21 = music21_module()
    data = m21.musicxml.m21ToXml.GeneralObjectExporter(to_music21(score)).parse()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
