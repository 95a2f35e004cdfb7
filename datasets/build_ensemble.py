"""Build the bundled ensemble corpus (``datasets/ensemble/``) from music21's corpus.

Multi-instrument, public-domain works in music21's corpus, one MIDI file per movement, each
part on its own track with the General MIDI program of its instrument:

- string quartets: Haydn op. 1 no. 1 and op. 74 no. 1, Mozart K. 80, 155, 156 and 458,
  Beethoven op. 18 no. 1, 3, 4, 5, op. 59 no. 1-3, op. 74, op. 132 and op. 133, Schumann
  op. 41 no. 1;
- Bach cantata and oratorio chorale movements whose scores carry instrumental staves
  (trumpets, horns, timpani, oboes, strings, continuo) beside the four voices.

music21's own instrument objects are unreliable (a part named "Violin I" may carry "String
Ensemble 1"; Bach's staves carry "Instrument 6"), so each part's program comes from its
name (:data:`PROGRAMS`: the first pattern that matches; voices become Choir Aahs, 52). A
part whose name matches nothing is reported and the file skipped. Every instrument object
in the score is replaced by one per part with that program, then music21 writes the MIDI
file (its defaults: a conductor track, one track per part, 10080 ticks per quarter).
Each written file is read back with :func:`composer.midi.io.load` and its programs checked.

There are no drums in music21's corpus: drum tests use hand-made files (tests/).

Usage::

    python datasets/build_ensemble.py [--out DIR] [--no-bach | --bach-only] [--limit N]
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import zipfile
from pathlib import Path

from music21 import corpus, instrument

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # composer, from the source tree

from composer.midi.io import load

QUARTETS = (
    *(f"haydn/opus1no1/movement{i}.mxl" for i in range(1, 6)),
    *(f"haydn/opus74no1/movement{i}.mxl" for i in range(1, 5)),
    *(f"mozart/k80/movement{i}.mxl" for i in range(1, 5)),
    *(f"mozart/k155/movement{i}.mxl" for i in range(1, 4)),
    *(f"mozart/k156/movement{i}.mxl" for i in range(1, 5)),
    *(f"mozart/k458/movement{i}.mxl" for i in range(1, 5)),
    *(f"beethoven/opus18no1/movement{i}.mxl" for i in range(1, 5)),
    "beethoven/opus18no3.mxl", "beethoven/opus18no4.mxl", "beethoven/opus18no5.mxl",
    *(f"beethoven/opus59no{n}/movement{i}.mxl" for n in (1, 2, 3) for i in range(1, 5)),
    "beethoven/opus74.mxl", "beethoven/opus132.mxl", "beethoven/opus133.mxl",
    *(f"schumann_robert/opus41no1/movement{i}.mxl" for i in range(1, 6)),
)
VOICE = re.compile(r"^(soprano|alto|tenor|bass|canto|choir|chorus|voice)\b", re.IGNORECASE)
PROGRAMS = (  # (pattern on the part name, GM program); first match wins
    (r"bassoon|fagott", 70), (r"continuo|organo|organ", 19), (r"violoncell|cello|vc\b", 42),
    (r"violone|contrabass|double bass|kontrabass", 43), (r"viola|alto viol|vla", 41),
    (r"violin|violino|fiddle|vl\b|vn\b", 40), (r"oboe d.amore|oboe|hautbois", 68),
    (r"english horn|taille|caccia", 69), (r"recorder|flauto dolce|flute a bec", 74),
    (r"flute|flauto|traverso|flauti", 73), (r"clarinet", 71), (r"horn|corno", 60),
    (r"trumpet|tromba|clarino|trombe|cornet", 56), (r"trombone", 57), (r"timpani|timp", 47),
    (r"harpsichord|cembalo", 6), (r"piano", 0), (r"strings|archi", 48),
)
CHOIR = 52


def program_of(name: str) -> int | None:
    """The GM program of a part name (None: unknown)."""
    if VOICE.match(name.strip()):
        return CHOIR
    for pattern, program in PROGRAMS:
        if re.search(pattern, name, re.IGNORECASE):
            return program
    return None


def part_names(path: Path) -> list[str]:
    """The ``<part-name>`` texts of a MusicXML file (.xml, or compressed .mxl), read without
    parsing the score (fast enough to scan the whole Bach corpus)."""
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as z:
            text = "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist()
                           if n.endswith(".xml") and not n.startswith("META-INF"))
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
    return [html.unescape(n).strip() for n in re.findall(r"<part-name[^>]*>([^<]*)<", text)]


def bach_with_instruments() -> list[str]:
    """The Bach corpus files (MusicXML) with voices and at least one part that is no voice."""
    found = []
    for path in sorted(Path(p) for p in corpus.getComposer("bach")):
        if path.suffix not in (".mxl", ".xml"):
            continue
        names = part_names(path)
        if any(not VOICE.match(n) for n in names) and any(VOICE.match(n) for n in names):
            found.append(f"bach/{path.name}")
    return found


def convert(source: str, out: Path) -> str:
    """Write one score as ``out``; returns a one-line report."""
    score = corpus.parse(source)
    programs = []
    for part in score.parts:
        program = program_of(part.partName or "")
        if program is None:
            return f"skipped {source}: part {part.partName!r} names no known instrument"
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        inst = instrument.Instrument()
        inst.midiProgram, inst.partName = program, part.partName
        part.insert(0, inst)
        programs.append(program)
    score.write("midi", fp=str(out))
    got = sorted(set(load(out).notes["program"].tolist()))
    if got != sorted(set(programs)):
        out.unlink()
        return f"skipped {source}: wrote programs {got}, wanted {sorted(set(programs))}"
    return f"{out.name}: {len(programs)} parts, programs {sorted(set(programs))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "ensemble")
    ap.add_argument("--no-bach", action="store_true", help="Leave out the Bach movements.")
    ap.add_argument("--bach-only", action="store_true", help="Only the Bach movements.")
    ap.add_argument("--limit", type=int, help="Convert at most this many scores.")
    ap.add_argument("--sources", nargs="+", help="Only these corpus paths (e.g. "
                    "haydn/opus1no1/movement1.mxl).")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sources = [] if args.bach_only else list(QUARTETS)
    sources += [] if args.no_bach else bach_with_instruments()
    sources = args.sources or sources
    for source in sources[: args.limit]:
        stem = source.rsplit(".", 1)[0].replace("/", "-")
        try:
            print(convert(source, args.out / f"{stem}.mid"), flush=True)
        except Exception as e:  # noqa: BLE001 (one bad score must not stop the build)
            print(f"skipped {source}: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
