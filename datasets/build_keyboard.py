"""Build the bundled keyboard corpus (``datasets/keyboard/``) from music21's corpus.

Public-domain keyboard music in music21's corpus, one MIDI file per piece or movement, on
Acoustic Grand Piano (program 0), with the two hands (the two staves of the keyboard part)
as two tracks:

- solo keyboard: Joplin, *Maple Leaf Rag*; Mozart, sonata K. 545, first movement
  (exposition only, as encoded); Schoenberg, op. 19 nos. 2 and 6; Chopin, mazurka op. 6
  no. 2 (Humdrum); C. P. E. Bach, sonata H. 186 (Wq. 55/4), second movement; J. S. Bach,
  Prelude in C major BWV 846; Verdi, *La donna e mobile* (a piano arrangement);
- the piano staves of accompanied works (the voice or solo instrument is left out):
  Schubert, *Der Lindenbaum*; Schumann, *Dichterliebe* no. 2; Handel, *Lascia ch'io
  pianga*; Liliuokalani, *Aloha Oe*; Weber, Clarinet Concertino op. 26; Clara Schumann,
  piano trio op. 17, third movement.

That is all the keyboard writing music21 10.5.1's corpus holds whose encoding carries no
licence other than public domain: :data:`SKIPPED` lists the other keyboard scores and why
they are left out (Creative Commons encodings, as build_ensemble.py leaves out Corelli;
lead sheets; duplicates), and the build prints one line for each.

A staff is a keyboard staff if music21 reads it as one of the staves of a multi-staff part
(``PartStaff``) or its part is named "Piano"; a score must have exactly two, else it is
skipped with a message. The other parts are removed (tempo marks that only they carry are
copied to the keyboard part first), every instrument object is replaced by
a piano, and music21 writes the file (its defaults: a conductor track, one track per staff,
10080 ticks per quarter; repeats expanded; the encoded tempo marks, 120 bpm where there are
none). Where music21 cannot expand a score's repeats (the Chopin mazurka), the repeat signs are
made plain barlines and the music is written once, as notated. Each written
file is read back with :func:`composer.midi.load` and checked: notes on program 0 only, no
drums, and two note tracks.

Usage::

    python datasets/build_keyboard.py [--out DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import mido
from music21 import bar, corpus, instrument, repeat, stream, tempo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # composer, from the source tree

from composer.midi import load  # noqa: E402

SOURCES = (  # music21 corpus paths, in build order
    "joplin/maple_leaf_rag.mxl",
    "mozart/k545/movement1_exposition.mxl",
    "schoenberg/opus19/movement2.mxl",
    "schoenberg/opus19/movement6.mxl",
    "chopin/mazurka06-2.krn",
    "cpebach/h186.mxl",
    "bach/bwv846.mxl",
    "verdi/laDonnaEMobile.mxl",
    "schubert/Lindenbaum.xml",
    "schumann_robert/opus48no2.mxl",
    "handel/rinaldo/Lascia_chio_pianga.mxl",
    "liliuokalani/aloha_oe.mxl",
    "weber/concertino_clarinet.mxl",
    "schumann_clara/opus17/movement3.xml",
)
SKIPPED = (  # (corpus path, why it is not built)
    *((f"schumann_clara/polonaise_op1n{i}.mxl",
       "encoding released under CC BY-SA 4.0 (Cypressdome for IMSLP), not public domain")
      for i in range(1, 5)),
    ("beach/prayer_of_a_tired_child.musicxml",
     "engraving (c) 2017 M. S. Cuthbert under CC BY-SA, not public domain"),
    ("cpebach/h186.mus", "duplicate (Finale .mus) of cpebach/h186.mxl"),
    ("schumann_robert/dichterliebe_no2.xml", "duplicate of schumann_robert/opus48no2.mxl"),
    ("leadSheet/berlinAlexandersRagtime.mxl",
     "lead sheet (melody and chord symbols), marked 'All Rights Reserved'"),
    ("leadSheet/fosterBrownHair.mxl", "lead sheet (melody and chord symbols), no keyboard part"),
    ("webern/webern_dormi_jesu_op_16_no_2.mxl",
     "voice and clarinet, no keyboard; edition CC BY-SA"),
)
PIANO = 0


def keyboard_staves(score: stream.Score) -> list[stream.Part]:
    """The staves of the score's keyboard part (see the module docstring)."""
    return [part for part in score.parts
            if isinstance(part, stream.PartStaff) or (part.partName or "").strip() == "Piano"]


def keep_tempos(score: stream.Score, staves: list[stream.Part]) -> None:
    """Copy into the first staff the tempo marks that only the parts to be dropped carry."""
    kept = {mark.getOffsetInHierarchy(score) for part in staves
            for mark in part.recurse().getElementsByClass(tempo.MetronomeMark)}
    for part in score.parts:
        if part in staves:
            continue
        for mark in part.recurse().getElementsByClass(tempo.MetronomeMark):
            offset = mark.getOffsetInHierarchy(score)
            if any(abs(offset - k) < 0.5 for k in kept):
                continue
            for measure in staves[0].getElementsByClass(stream.Measure):
                if measure.offset <= offset < measure.offset + measure.highestTime:
                    measure.insert(offset - measure.offset, copy.deepcopy(mark))
                    kept.add(offset)
                    break


def strip_repeats(score: stream.Score) -> None:
    """Make every repeat barline a plain one, so the repeats are written once, as notated."""
    for measure in score.recurse().getElementsByClass(stream.Measure):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), bar.Repeat):
                setattr(measure, side, bar.Barline("regular"))


def convert(source: str, out: Path) -> str:
    """Write the keyboard staves of one score as ``out``; returns a one-line report."""
    score = corpus.parse(source)
    staves = keyboard_staves(score)
    if len(staves) != 2:
        return f"skip {source}: {len(staves)} keyboard staves, wanted 2"
    dropped = [part.partName for part in score.parts if part not in staves]
    keep_tempos(score, staves)
    for part in list(score.parts):
        if part not in staves:
            score.remove(part)
    for part in staves:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        part.insert(0, instrument.Piano())
    note = ""
    try:
        score.write("midi", fp=str(out))
    except repeat.ExpanderException:
        strip_repeats(score)
        score.write("midi", fp=str(out))
        note = ", repeats written once (music21 cannot expand them)"
    piece = load(out)
    programs = sorted(set(piece.notes["program"].tolist()))
    tracks = sum(any(m.type == "note_on" for m in t) for t in mido.MidiFile(out).tracks)
    if programs != [PIANO] or piece.notes["is_drum"].any() or tracks != 2:
        out.unlink()
        return f"skip {source}: wrote programs {programs}, {tracks} note tracks"
    left_out = f", left out {dropped}" if dropped else ""
    return (f"{out.name}: {len(piece.notes)} notes, {piece.duration:.0f} s, 2 staves on "
            f"program {PIANO}{left_out}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "keyboard")
    ap.add_argument("--limit", type=int, help="Convert at most this many scores.")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for source, reason in SKIPPED:
        print(f"skip {source}: {reason}")
    for source in SOURCES[: args.limit]:
        stem = source.rsplit(".", 1)[0].replace("/", "-")
        try:
            print(convert(source, args.out / f"{stem}.mid"), flush=True)
        except Exception as e:  # noqa: BLE001 (one bad score must not stop the build)
            print(f"skip {source}: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
