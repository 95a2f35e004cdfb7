"""Both vocabularies side by side: tokens per note and sequence lengths per piece.

For each corpus folder: the performance events (composer.tokens.performance, 10 ms grid) and the
beat
vocabulary (composer.tokens.beats, 12 steps per quarter) of every file that loads, with the share
of onsets on the beat grid and what quantising to the beat grid changes. Without arguments
it reads every folder under datasets/ that holds MIDI files.

    python benchmarks/vocab_stats.py [MIDI_DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from composer.corpus.scan import scan
from composer.midi.io import Piece, parse_many
from composer.tokens import beats as notes
from composer.tokens import performance as events

ROOT = Path(__file__).resolve().parents[1]


def corpus_folders() -> list[Path]:
    """The folders under datasets/ that hold MIDI files."""
    base = ROOT / "datasets"
    return [d for d in sorted(base.iterdir()) if d.is_dir() and not d.is_symlink() and scan(d)]


def lengths(seqs: list[np.ndarray]) -> str:
    """Median, 90th percentile and largest sequence length."""
    n = np.array([len(s) for s in seqs])
    return f"{np.median(n):7.0f} {np.percentile(n, 90):7.0f} {n.max():7d}"


BEAT_CONFIGS = {  # the default, and two alternatives the numbers decide between
    "notes 12/q (default)": notes.NoteEventConfig(),
    "notes 12/q, coarse 3": notes.NoteEventConfig(coarse_steps=3),
    "notes 24/q": notes.NoteEventConfig(steps_per_quarter=24, fine_steps=48, coarse_steps=12,
                                        max_steps=384),
}


def quantisation_loss(pieces: list[Piece], config: notes.NoteEventConfig) -> tuple[int, int]:
    """(notes that start elsewhere, notes whose length changes) after :func:`notes.quantise`,
    comparing the (start, end)-sorted beats of each piece."""
    moved = changed = 0
    for p in pieces:
        key = ("start", "end")
        a, b = np.sort(p.beats, order=key), np.sort(notes.quantise(p, config).beats, order=key)
        moved += int((a["start"] != b["start"]).sum())
        changed += int((a["end"] - a["start"] != b["end"] - b["start"]).sum())
    return moved, changed


def report(folder: Path) -> None:
    paths = [folder / p for p in scan(folder)]
    pieces = [p for p in parse_many([p.read_bytes() for p in paths]) if isinstance(p, Piece)]
    pieces = [p for p in pieces if len(p.notes)]
    n_notes = sum(len(p.notes) for p in pieces)
    seconds = sum(p.duration for p in pieces)
    on_grid = np.array([notes.grid_counts(p) for p in pieces]).sum(axis=0)
    quantised = sum(notes.is_quantised(p) for p in pieces)
    print(f"\n{folder.name}: {len(pieces)} of {len(paths)} files, {n_notes} notes,"
          f" {seconds / 3600:.2f} h; onsets on the 1/12-beat grid: {on_grid[0] / on_grid[1]:.2%};"
          f" files judged quantised: {quantised}")
    print(f"{'vocabulary':<24}{'size':>6}{'tok/note':>10}{'tok/s':>8}"
          f"{'len med':>9}{'p90':>8}{'max':>8}{'moved':>9}{'resized':>9}")
    rows = [("performance (10 ms)", len(events.Vocabulary()),
             events.encode_many([p.notes for p in pieces]), "")]
    for name, config in BEAT_CONFIGS.items():
        moved, changed = quantisation_loss(pieces, config)
        rows.append((name, len(notes.NoteVocabulary(config)), notes.encode_many(pieces, config),
                     f"{moved / n_notes:>9.2%}{changed / n_notes:>9.2%}"))
    for name, size, seqs, loss in rows:
        total = sum(len(s) for s in seqs)
        print(f"{name:<24}{size:>6}{total / n_notes:>10.3f}{total / seconds:>8.1f}  "
              f"{lengths(seqs)}{loss}")
    print("moved: notes whose start the beat grid moves; resized: notes whose length it changes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path)
    args = ap.parse_args()
    for folder in args.folders or corpus_folders():
        report(folder)


if __name__ == "__main__":
    main()
