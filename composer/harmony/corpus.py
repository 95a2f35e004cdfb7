"""Pieces with parts as harmonizer grids, split by content like ``composer prepare`` does.

Every MIDI file of a folder is read into parts (:func:`composer.midi.parts.load_parts`); a
file with as many parts as the first complete file becomes a (V, T) grid in that file's voice
order (matched by name, else by register). The split is :func:`composer.corpus.cache.split_of`
of the file's content hash, the same train / valid / test assignment the performance models'
corpora use, so the benchmark's held-out chorales are never trained on by either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from composer.core.messages import ComposerError
from composer.corpus.cache import CorpusConfig, split_of
from composer.corpus.scan import content_hash
from composer.harmony.config import PITCH0, HarmonyError
from composer.harmony.grid import match_voices, to_grid
from composer.midi.io import MIDI_SUFFIXES, read_bytes
from composer.midi.parts import PartScore, load_parts

SPLITS = ("train", "valid", "test")


@dataclass
class GridPiece:
    """One piece on the grid: its name, (V, T) tokens, bar length in beats, and parts."""

    name: str
    grid: np.ndarray
    beats_per_bar: int
    score: PartScore


@dataclass
class GridCorpus:
    """The pieces of a folder by split, with the voices and their pitch ranges."""

    voices: tuple[str, ...]
    splits: dict[str, list[GridPiece]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """(low, high) MIDI pitch of each voice over the train split."""
        grids = [p.grid for p in self.splits["train"]]
        out = []
        for v in range(len(self.voices)):
            pitches = np.concatenate([g[v][g[v] >= PITCH0] for g in grids]) - PITCH0
            out.append((int(pitches.min()), int(pitches.max())))
        return tuple(out)


def midi_files(folder: str | os.PathLike) -> list[Path]:
    """The MIDI files under ``folder``, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in MIDI_SUFFIXES
                  and p.is_file())


def load_grid_corpus(folder: str | os.PathLike, steps_per_beat: int,
                     voices: tuple[str, ...] | None = None,
                     split: CorpusConfig = CorpusConfig()) -> GridCorpus:
    """The pieces of ``folder`` as grids by split (see the module docstring)."""
    files = midi_files(folder)
    if not files:
        raise HarmonyError(f"{folder}: no MIDI files")
    corpus = GridCorpus(voices or ())
    corpus.splits = {s: [] for s in SPLITS}
    for path in files:
        try:
            score = load_parts(path)
            key = content_hash(read_bytes(path))
            if not corpus.voices:
                corpus.voices = tuple(p.name for p in score.parts if len(p.notes))
            parts = match_voices(score, corpus.voices)
        except ComposerError as e:
            corpus.skipped.append(f"{path.name}: {e}")
            continue
        bar = max(1, round(score.beats_per_bar))
        grid = to_grid([p.notes for p in parts], steps_per_beat)
        corpus.splits[SPLITS[split_of(key, split)]].append(
            GridPiece(path.stem, grid, bar, score))
    if len(corpus.voices) < 2 or not corpus.splits["train"]:
        raise HarmonyError(f"{folder}: no pieces with 2 or more parts to train on")
    return corpus
