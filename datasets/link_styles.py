"""Lay out the shipped default model's training folder: one subfolder per style, each holding
links to the MIDI files of one bundled corpus (``composer train`` reads a folder of
subfolders as one style each; links, not copies, so nothing is duplicated).

Usage::

    python datasets/link_styles.py OUT [--styles bach=bach-chorales,irish=irish-folk,...]

The default styles are the five bundled corpora: ``bach`` (bach-chorales), ``dance``,
``ensemble``, ``irish`` (irish-folk) and ``keyboard``. An existing link is left as it is; a
file in OUT that is not a link to the corpus is never replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STYLES = "bach=bach-chorales,dance=dance,ensemble=ensemble,irish=irish-folk,keyboard=keyboard"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--styles", default=STYLES, help="style=corpus folder under datasets/,...")
    args = ap.parse_args(argv)
    made = kept = 0
    for pair in args.styles.split(","):
        style, corpus = pair.split("=", 1)
        folder = args.out / style
        folder.mkdir(parents=True, exist_ok=True)
        for f in sorted((HERE / corpus).glob("*.mid")):
            link = folder / f.name
            if link.is_symlink() or link.exists():
                if link.resolve() != f.resolve():
                    print(f"skip {link}: exists and is not a link to {f}", file=sys.stderr)
                kept += 1
                continue
            link.symlink_to(f)
            made += 1
    print(f"{args.out}: {made} links made, {kept} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
