"""Build the bundled Irish folk-tune corpus (``datasets/irish-folk/``) from music21's corpus.

music21 ships *O'Neill's Music of Ireland* (1903, 1850 tunes) as ABC files in
``corpus/oneills1850/``: monophonic melodies (airs, jigs, reels, hornpipes, marches), a
different kind of music from the four-part Bach chorales. Some ABC files overlap (two
transcriptions of the same tune numbers); a tune number is taken from the first file, in name
order, that holds it, and every later copy is reported. To keep the corpus to a few hours of
music, only every ``--every``-th tune number is kept (numbers 1, 1 + every, 1 + 2 * every, ...),
which samples every section of the book (its tunes are grouped by kind).

Each kept tune is written to ``<out>/oneills<NNNN>.mid`` (NNNN: its number in the book) by
music21 from the tune's notes and tempo marks (120 bpm when the ABC gives no tempo). Tunes
that fail to parse or export, or have no notes, are skipped with a one-line message.

Usage::

    python datasets/build_oneills.py [--out DIR] [--every N] [--workers N] [--limit N]
"""

from __future__ import annotations

import argparse
import copy
import os
import re
from multiprocessing import Pool
from pathlib import Path

from music21 import converter, corpus, stream

_TUNE_NUMBER = re.compile(r"^X:\s*(\d+)", re.MULTILINE)


def select_tunes(every: int) -> tuple[list[tuple[Path, list[int]]], list[str]]:
    """For each ABC file, the tune numbers to convert from it; and a message per duplicate."""
    owner: dict[int, Path] = {}
    skipped: list[str] = []
    plan: dict[Path, list[int]] = {}
    for path in sorted(Path(p) for p in corpus.getComposer("oneills1850")):
        for number in (int(n) for n in _TUNE_NUMBER.findall(path.read_text(errors="replace"))):
            if number in owner:
                skipped.append(f"skip {path.name} X:{number}: duplicate of {owner[number].name}")
            elif (number - 1) % every == 0:
                owner[number] = path
                plan.setdefault(path, []).append(number)
            else:
                owner[number] = path
    return sorted(plan.items()), skipped


def melody_stream(score: stream.Score) -> stream.Stream:
    """The score's notes, chords and tempo marks at their offsets, in one flat stream.

    Writing the parsed ABC score itself fails for many tunes in music21 10.5 (a time signature
    "already found in this Stream", e.g. tunes with a pickup bar); the flat copy writes the
    same notes (checked note for note on tunes that do write) and never fails that way.
    """
    flat = score.flatten()
    melody = stream.Stream()
    for element in flat.getElementsByClass(["Note", "Chord", "MetronomeMark"]):
        melody.insert(flat.elementOffset(element), copy.deepcopy(element))
    return melody


def convert(job: tuple[Path, list[int], Path]) -> list[tuple[bool, str | None]]:
    """Export the chosen tunes of one ABC file; one (written, message or None) per tune."""
    source, numbers, out_dir = job
    try:
        opus = converter.parse(source)
    except Exception as exc:
        return [(False, f"skip {source.name}: failed to parse ({type(exc).__name__}: {exc})")]
    scores = {s.metadata.number: s for s in getattr(opus, "scores", [opus])
              if isinstance(s, stream.Score) and s.metadata is not None}
    results = []
    for number in numbers:
        label = f"{source.name} X:{number}"
        score = scores.get(number) or scores.get(str(number))
        if score is None:
            results.append((False, f"skip {label}: not found by music21's ABC reader"))
            continue
        melody = melody_stream(score)
        if not melody.notes:
            results.append((False, f"skip {label}: no notes"))
            continue
        try:
            melody.write("midi", fp=out_dir / f"oneills{number:04d}.mid")
        except Exception as exc:
            results.append((False, f"skip {label}: MIDI export failed "
                                   f"({type(exc).__name__}: {exc})"))
            continue
        results.append((True, None))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("datasets/irish-folk"),
                        help="output directory (default: datasets/irish-folk)")
    parser.add_argument("--every", type=int, default=4,
                        help="keep every N-th tune number (default: 4)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: all cores)")
    parser.add_argument("--limit", type=int, default=None,
                        help="convert only the first N ABC files (for quick trials)")
    args = parser.parse_args()

    plan, skipped = select_tunes(max(1, args.every))
    if args.limit is not None:
        plan = plan[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(path, numbers, args.out) for path, numbers in plan]
    with Pool(max(1, args.workers)) as pool:
        results = [r for batch in pool.map(convert, jobs, chunksize=1) for r in batch]
    messages = skipped + [message for _, message in results if message is not None]
    for message in messages:
        print(message)
    written = sum(ok for ok, _ in results)
    print(f"wrote {written} MIDI files to {args.out}, skipped {len(messages)}")


if __name__ == "__main__":
    main()
