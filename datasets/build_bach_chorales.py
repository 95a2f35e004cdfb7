"""Build the bundled Bach chorale corpus (``datasets/bach-chorales/``) from music21's corpus.

``music21.corpus.getComposer('bach')`` lists the Bach files shipped with music21: the chorale
scores in ``corpus/bach/`` (MusicXML, plus three Humdrum duplicates), one keyboard piece
(BWV 846) and the Roman-numeral analyses in ``corpus/choraleAnalyses/``. This script keeps the
4-part (SATB) chorales and writes each one to ``<out>/<name>.mid``, where ``<name>`` is the
corpus file name without its extension (``bach/bwv1.6.mxl`` -> ``bwv1.6.mid``). Chorales that
also carry instrumental staves (horns, trumpets, timpani, continuo, ...) are reduced to their
Soprano/Alto/Tenor/Bass parts. Everything else is skipped; each skip or reduction is reported
on stdout in one line.

Usage::

    python datasets/build_bach_chorales.py [--out DIR] [--workers N] [--limit N]
"""

from __future__ import annotations

import argparse
import os
from multiprocessing import Pool
from pathlib import Path

from music21 import converter, corpus, stream

VOICES = ("soprano", "alto", "tenor", "bass")
# When one chorale exists in several encodings, the first format listed here wins.
FORMAT_PREFERENCE = (".mxl", ".xml", ".krn")


def _sort_key(path: Path) -> tuple[str, int]:
    """Order by name, then by format preference (unknown formats last)."""
    rank = FORMAT_PREFERENCE.index(path.suffix) if path.suffix in FORMAT_PREFERENCE else 99
    return path.stem, rank


def select_sources() -> tuple[list[Path], list[str]]:
    """Return the chorale source files to convert, and a skip message for every other file."""
    paths = sorted((Path(p) for p in corpus.getComposer("bach")), key=_sort_key)
    chosen: dict[str, Path] = {}
    skipped: list[str] = []
    for path in paths:
        label = f"{path.parent.name}/{path.name}"
        if path.parent.name != "bach":
            skipped.append(f"skip {label}: Roman-numeral analysis, not a chorale score")
        elif path.suffix not in FORMAT_PREFERENCE:
            skipped.append(f"skip {label}: unsupported format {path.suffix}")
        elif path.stem in chosen:
            skipped.append(f"skip {label}: duplicate encoding of bach/{chosen[path.stem].name}")
        else:
            chosen[path.stem] = path
    return sorted(chosen.values(), key=lambda p: p.stem), skipped


def vocal_parts(score: stream.Score) -> list[stream.Part] | None:
    """Return the Soprano, Alto, Tenor and Bass parts, or None if they are not exactly those four.

    A 4-part score is taken as is. In larger scores (cantata movements with obbligato or
    doubling instruments) each voice is found by the first word of its part name.
    """
    parts = list(score.parts)
    if len(parts) == len(VOICES):
        return parts
    by_voice: dict[str, list[stream.Part]] = {voice: [] for voice in VOICES}
    for part in parts:
        words = (part.partName or "").lower().split()
        if words and words[0] in by_voice:
            by_voice[words[0]].append(part)
    if any(len(found) != 1 for found in by_voice.values()):
        return None
    return [by_voice[voice][0] for voice in VOICES]


def convert(job: tuple[Path, Path]) -> tuple[bool, str | None]:
    """Export one chorale to MIDI; return (written, one-line skip or trim message or None)."""
    source, out_dir = job
    label = f"bach/{source.name}"
    try:
        score = converter.parse(source)
    except Exception as exc:
        return False, f"skip {label}: failed to parse ({type(exc).__name__}: {exc})"
    parts = list(getattr(score, "parts", []))
    names = ", ".join(str(part.partName) for part in parts)
    voices = vocal_parts(score) if isinstance(score, stream.Score) else None
    if voices is None:
        return False, f"skip {label}: {len(parts)} parts ({names}), not a 4-part SATB chorale"
    dropped = [part for part in parts if all(part is not voice for voice in voices)]
    for part in dropped:
        score.remove(part)
    if not score.flatten().notes:
        return False, f"skip {label}: no notes"
    try:
        score.write("midi", fp=out_dir / f"{source.stem}.mid")
    except Exception as exc:
        return False, f"skip {label}: MIDI export failed ({type(exc).__name__}: {exc})"
    if dropped:
        kept = "/".join(str(part.partName).split()[0] for part in voices)
        gone = ", ".join(" ".join(str(part.partName).split()) for part in dropped)
        return True, f"trim {label}: kept {kept}, dropped instrumental parts ({gone})"
    return True, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("datasets/bach-chorales"),
        help="output directory (default: datasets/bach-chorales)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="convert only the first N candidate files (for quick trials)",
    )
    args = parser.parse_args()

    sources, skipped = select_sources()
    if args.limit is not None:
        sources = sources[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(source, args.out) for source in sources]
    with Pool(max(1, args.workers)) as pool:
        results = pool.map(convert, jobs, chunksize=4)
    messages = skipped + [message for _, message in results if message is not None]
    for message in messages:
        print(message)
    written = sum(ok for ok, _ in results)
    trimmed = sum(message.startswith("trim") for message in messages)
    print(
        f"wrote {written} MIDI files to {args.out} ({trimmed} reduced to SATB), "
        f"skipped {len(messages) - trimmed}"
    )


if __name__ == "__main__":
    main()
