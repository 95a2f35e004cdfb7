"""Build measurement corpora that are NOT bundled with composer (never commit their output).

These corpora are for measuring a model on kinds of music it was not trained on (held-out
styles), so they are written to a folder of your choosing, outside the repository, and
rebuilt when needed. Each comes from music21's corpus (music21 10.5.1 was used):

``palestrina``
    Polyphonic vocal music: movements of Palestrina's masses (Kyrie, Gloria, Credo, Sanctus,
    Benedictus, Agnus Dei; 3 to 8 voices), ``corpus/palestrina/``, 1,318 Humdrum (``.krn``)
    files encoded by John Miller (1992), converted to Humdrum by Bret Aarden. Every file
    carries "Copyright 2000, John Miller" and "Rights to all derivative electronic formats
    reserved. Refer to licensing agreement ..." (the Ohio State Humdrum Palestrina licence):
    this is why the corpus is not bundled. ``--limit`` files are taken evenly spaced in file
    name order (so every kind of movement is sampled) and written with music21's defaults
    (one track per voice, all on the program music21 gives the Humdrum voice codes: 53, Voice
    Oohs; 120 bpm where the encoding has no tempo) as ``<file stem>.mid``.
``essen``
    Monophonic folk songs from the Essen Folksong Collection (EsAC), ABC encodings by Seymour
    Shlien, ``corpus/essenFolksong/``: the German-language and other Central European
    collections (``altdeu``, ``ballad``, ``boehme``, ``dva``, ``erk``, ``fink``, ``kinder``,
    ``zuccal``, ``lot`` (Lorraine), ``lux`` (Luxembourg)), about 7,000 songs. Left out: ``irl``
    (Irish: composer already bundles Irish tunes), ``han1``/``han2`` (Chinese; see
    ``essen-han``), ``folkHaydn`` (British song melodies from Haydn's settings), ``variant0``
    and ``test*`` (variants and test files of a few songs). The EsAC data may only be used
    non-commercially (``corpus/essenFolksong/license.txt``), which is why it is not bundled.
``essen-han``
    The Chinese (Han) folk songs of the same collection (``han1``, ``han2``; 1,224 songs).

For the two Essen corpora, ``--limit`` songs are taken evenly spaced over all the songs of
the chosen files (in file name order, then in file order). Each song's ABC record is parsed on
its own (much faster than parsing whole files), its notes, chords and tempo marks are copied
into one flat stream (as ``build_oneills.py`` does: writing the parsed ABC score directly
fails for some tunes) and written as ``<file stem>-<index in file>.mid``, one track, program
0, 120 bpm unless the song gives a tempo; repeats are written once, as notated. Songs or files
that fail to parse or have no notes are skipped with one printed line each. Every written file
is read back with :func:`composer.midi.load` and must hold notes. The build is deterministic.

Usage::

    python datasets/build_unbundled.py --corpus {palestrina,essen,essen-han} --out DIR
                                       [--limit N]
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Callable
from pathlib import Path

from music21 import converter, corpus, stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # composer, from the source tree

from composer.midi import load  # noqa: E402

CORPUS = Path(corpus.__file__).resolve().parent
ESSEN = {
    "essen": ("altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40",
              "ballad50", "ballad60", "ballad70", "ballad80", "boehme10", "boehme20", "dva0",
              "erk10", "erk20", "erk30", "erk5", "fink0", "kinder0", "lot", "lux", "zuccal0"),
    "essen-han": ("han1", "han2"),
}
_RECORD = re.compile(r"^X:", re.MULTILINE)


def evenly(items: list, limit: int) -> list:
    """``limit`` of the items, evenly spaced (all of them if there are not more)."""
    if len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


def write_checked(label: str, target: Path, write: Callable[[Path], None]) -> bool:
    """``write(target)``, then read the file back: True when it holds notes; otherwise the
    file is removed and one line says why (one bad score must not stop the build)."""
    try:
        write(target)
        if len(load(target).notes) == 0:
            raise ValueError("no notes read back")
    except Exception as e:  # noqa: BLE001
        print(f"skip {label}: {type(e).__name__}: {e}", flush=True)
        target.unlink(missing_ok=True)
        return False
    return True


def palestrina(out: Path, limit: int) -> tuple[int, int]:
    """Write the chosen Palestrina movements; returns (written, skipped)."""
    paths = evenly(sorted((CORPUS / "palestrina").glob("*.krn")), limit)
    written = sum(write_checked(f"palestrina/{path.name}", out / f"{path.stem}.mid",
                                lambda t, p=path: converter.parse(p).write("midi", fp=str(t)))
                  for path in paths)
    return written, len(paths) - written


def melody_stream(score: stream.Score) -> stream.Stream:
    """The score's notes, chords and tempo marks at their offsets, in one flat stream."""
    flat = score.flatten()
    melody = stream.Stream()
    for element in flat.getElementsByClass(["Note", "Chord", "MetronomeMark"]):
        melody.insert(flat.elementOffset(element), copy.deepcopy(element))
    return melody


def essen(name: str, out: Path, limit: int) -> tuple[int, int]:
    """Write the chosen Essen songs; returns (written, skipped)."""
    songs = []  # (file, index in file, ABC text of the song)
    for stem in ESSEN[name]:
        text = (CORPUS / "essenFolksong" / f"{stem}.abc").read_text(
            encoding="utf-8", errors="replace")
        starts = [m.start() for m in _RECORD.finditer(text)] + [len(text)]
        songs += [(stem, i + 1, text[a:b]) for i, (a, b) in enumerate(
            zip(starts[:-1], starts[1:], strict=True))]
    def write_song(target: Path, text: str) -> None:
        parsed = converter.parse(text, format="abc")
        score = parsed.scores[0] if isinstance(parsed, stream.Opus) else parsed
        melody = melody_stream(score)
        if not melody.notes:
            raise ValueError("no notes")
        melody.write("midi", fp=str(target))

    chosen = evenly(songs, limit)
    written = sum(write_checked(f"essenFolksong/{stem}.abc song {index}",
                                out / f"{stem}-{index:04d}.mid",
                                lambda t, text=text: write_song(t, text))
                  for stem, index, text in chosen)
    return written, len(chosen) - written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, choices=("palestrina", *ESSEN))
    ap.add_argument("--out", type=Path, required=True,
                    help="output folder (outside the repository: never commit it)")
    ap.add_argument("--limit", type=int, default=300,
                    help="at most this many pieces, evenly spaced (default: 300)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.corpus == "palestrina":
        written, skipped = palestrina(args.out, args.limit)
    else:
        written, skipped = essen(args.corpus, args.out, args.limit)
    print(f"wrote {written} MIDI files to {args.out}, skipped {skipped}")


if __name__ == "__main__":
    main()
