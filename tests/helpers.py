"""Shared test helpers: the bundled corpus location, a small prepared corpus of it and a tiny
MIDI writer."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import mido

BACH = Path(__file__).resolve().parents[1] / "datasets" / "bach-chorales"


def write_tune(path: Path, pitches: list[int], step: int = 240) -> Path:
    """A one-track MIDI file (480 ticks per beat, 120 bpm) playing ``pitches`` one after
    another, each ``step`` ticks long."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    for p in pitches:
        track.append(mido.Message("note_on", note=p, velocity=80, time=0))
        track.append(mido.Message("note_off", note=p, velocity=0, time=step))
    mid.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def copy_chorales(folder: Path, count: int) -> Path:
    """``folder`` (made if missing) holding copies of the first ``count`` bundled chorales."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(BACH.glob("*.mid"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def free_port() -> int:
    """A TCP port no one listens on now (for tests that start a server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_corpus(root: Path, files: int = 12):
    """A performance-event corpus of the first ``files`` chorales prepared under ``root``
    (20% validation, 10% test), opened."""
    from composer.corpus.cache import Corpus, CorpusConfig
    from composer.corpus.prepare import prepare

    copy_chorales(root / "midi", files)
    prepare(root / "midi", root / "cache", CorpusConfig(valid_fraction=0.2, test_fraction=0.1))
    return Corpus.open(root / "cache")
