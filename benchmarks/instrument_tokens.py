"""Tokens per note of the instrument-aware vocabularies and of the designs not taken.

For a MIDI folder (default ``datasets/ensemble``), drums kept, both vocabularies:

- ``merged``: the plain vocabulary (instruments merged into one part, drums left out);
- ``program``: the instrument-aware vocabulary as built (:mod:`composer.tokens.ensemble`: a
  PROGRAM token before a note start whose program differs from the last one; NOTE_OFFs need
  none, they end the oldest sounding note of their pitch in any instrument);
- ``family``: the same with programs reduced to their GM family (8 programs each): fewer
  PROGRAM tokens, but a string quartet becomes one "strings" part (``parts merged`` says
  how many (file, program) parts share a family with another part of their file);
- ``off-too`` (performance events only): a PROGRAM before NOTE_OFFs too (each note's off
  names its instrument), counted on the same event order grouped by program at each step.

    python benchmarks/instrument_tokens.py [MIDI_DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from composer.midi.io import LoadConfig, load
from composer.tokens.beats import NoteEventConfig
from composer.tokens.performance import EventConfig, note_steps
from composer.tokens.vocab import NOTES, PERFORMANCE, Events

ROOT = Path(__file__).resolve().parents[1]


def off_too_switches(notes: np.ndarray, config: EventConfig) -> int:
    """PROGRAM tokens when NOTE_ON and NOTE_OFF both need their program: events of one step
    grouped by program (offs before ons within a program), one PROGRAM per change."""
    pitched = notes[~notes["is_drum"]]
    pitch, _, start, end, _ = note_steps(pitched, config)
    prog = pitched["program"].astype(np.int64)
    step = np.concatenate([end, start])
    progs = np.concatenate([prog, prog])
    on = np.repeat([0, 1], len(pitch))
    order = np.lexsort((np.tile(pitch, 2), on, progs, step))
    progs = progs[order]
    return int(len(progs) > 0) + int((progs[1:] != progs[:-1]).sum())


def main() -> None:
    """Print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=ROOT / "datasets" / "ensemble", type=Path)
    args = p.parse_args()
    pieces = [load(f, LoadConfig(keep_drums=True)) for f in sorted(args.folder.glob("*.mid"))]
    n_notes = sum(len(p.notes) for p in pieces)
    merged_parts = 0
    for piece in pieces:
        progs = np.unique(piece.notes["program"][~piece.notes["is_drum"]])
        fams = progs // 8
        counts = np.bincount(fams)
        merged_parts += int(counts[counts > 1].sum())
    print(f"{args.folder}: {len(pieces)} files, {n_notes:,} notes, "
          f"{merged_parts} (file, program) parts share a family with another part\n")
    print("| vocabulary | design | tokens | tokens/note | PROGRAM share |")
    print("|---|---|---:|---:|---:|")
    for kind, plain in ((PERFORMANCE, EventConfig()), (NOTES, NoteEventConfig())):
        inst = Events(kind, type(plain)(instruments=True))
        rows = {"merged": sum(map(len, Events(kind, plain).encode_many(pieces)))}
        program_tokens = inst.instrument_ids()[0]
        coded = inst.encode_many(pieces)
        rows["program"] = sum(map(len, coded))
        shares = {"program": sum(int(np.isin(c, program_tokens).sum()) for c in coded)}
        family = []
        for piece in pieces:
            notes = piece.notes.copy()
            notes["program"] = notes["program"] // 8 * 8
            family.append(notes)
        coded = inst.encode_many(family)
        rows["family"] = sum(map(len, coded))
        shares["family"] = sum(int(np.isin(c, program_tokens).sum()) for c in coded)
        if kind == PERFORMANCE:
            switches = sum(off_too_switches(p.notes, plain) for p in pieces)
            plain_drums = rows["program"] - shares["program"]
            rows["off-too"], shares["off-too"] = plain_drums + switches, switches
        for design, tokens in rows.items():
            share = shares.get(design, 0) / tokens if tokens else 0.0
            print(f"| {kind} | {design} | {tokens:,} | {tokens / max(n_notes, 1):.3f} | "
                  f"{share:.1%} |")


if __name__ == "__main__":
    main()
