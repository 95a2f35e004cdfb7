"""Ingest speed: composer's whole ingest vs pretty_midi's parse alone, on the same files.

Cold cache, one worker process: parse + checks + encode + cache writes, timed end to end,
against ``pretty_midi.PrettyMIDI(path)`` on every file in the same run. Then a warm second
run on the same folder. Prints files/s, events/s and the ratios (targets: >= 20x, >= 50x).

    python benchmarks/bench_ingest.py [MIDI_DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import pretty_midi

from composer.corpus.prepare import prepare
from composer.corpus.scan import scan

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat: int, fn) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls of ``fn()`` and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("midi_dir", nargs="?", default=ROOT / "datasets" / "bach-chorales", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    paths = [args.midi_dir / p for p in scan(args.midi_dir)]

    def cold():
        with tempfile.TemporaryDirectory() as d:
            return prepare(args.midi_dir, Path(d) / "cache", workers=1)

    def baseline():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p in paths:
                pretty_midi.PrettyMIDI(str(p))

    t_cold, report = best_of(args.repeat, cold)
    t_pm, _ = best_of(args.repeat, baseline)
    with tempfile.TemporaryDirectory() as d:
        prepare(args.midi_dir, Path(d) / "cache", workers=1)
        t_warm, _ = best_of(args.repeat, lambda: prepare(args.midi_dir, Path(d) / "cache",
                                                          workers=1))
    n, ev = len(paths), report.events
    print(f"corpus: {args.midi_dir} ({n} files, {ev:,} events, best of {args.repeat})")
    print(f"{'':28}{'seconds':>10}{'files/s':>12}{'events/s':>14}")
    for name, t in [("pretty_midi parse alone", t_pm), ("composer ingest, cold", t_cold),
                    ("composer ingest, warm", t_warm)]:
        print(f"{name:28}{t:10.4f}{n / t:12,.0f}{ev / t:14,.0f}")
    print(f"cold ingest vs pretty_midi parse: {t_pm / t_cold:.1f}x faster (target >= 20x)")
    print(f"warm vs cold ingest:              {t_cold / t_warm:.1f}x faster (target >= 50x)")


if __name__ == "__main__":
    main()
