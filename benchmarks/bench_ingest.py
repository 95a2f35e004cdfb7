"""Ingest speed: composer's whole ingest vs pretty_midi's parse alone, on the same files.

Cold cache, one worker process: parse + checks + encode + cache writes, timed end to end,
against ``pretty_midi.PrettyMIDI(path)`` on every file in the same run. Then a warm second
run on the same folder. Prints files/s, events/s and the ratios (targets: >= 30x, >= 50x).
A file pretty_midi refuses counts with the time it took to refuse it.

Many files: ``--copies N`` (default 10: 4,070 files from the chorales) distinct copies of
every file (trailing bytes change each copy's hash) in a temporary folder, then the warm
prepare of that folder (target: <= 30 ms for 4,070 files), which stats the files and reads
none of them.

    python benchmarks/bench_ingest.py [MIDI_DIR] [--repeat 3] [--copies 10]
"""

from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--copies", type=int, default=10, help="many-files case (0: skip it)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}")
    paths = [args.midi_dir / p for p in scan(args.midi_dir)]

    def cold():
        with tempfile.TemporaryDirectory() as d:
            return prepare(args.midi_dir, Path(d) / "cache", workers=1)

    def baseline():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p in paths:
                try:
                    pretty_midi.PrettyMIDI(str(p))
                except Exception:  # noqa: BLE001 (a file it refuses: its time counts)
                    pass

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
    print(f"cold ingest vs pretty_midi parse: {t_pm / t_cold:.1f}x faster (target >= 30x)")
    print(f"warm vs cold ingest:              {t_cold / t_warm:.1f}x faster (target >= 50x)")
    if args.copies:
        many_files(paths, args.copies, args.repeat)
    print(f"load average {os.getloadavg()}")


def many_files(paths: list[Path], copies: int, repeat: int) -> None:
    """Warm prepare of ``copies`` distinct copies of every file (target <= 30 ms for 4,070)."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "midi"
        src.mkdir()
        for k in range(copies):
            for p in paths:
                (src / f"{k}-{p.name}").write_bytes(p.read_bytes() + bytes(k))
        time.sleep(2.1)  # files written within 2 s of a scan are read again (coarse clocks)
        cache = Path(d) / "cache"
        t_cold, _ = best_of(1, lambda: prepare(src, cache, workers=1))
        t_warm, _ = best_of(repeat, lambda: prepare(src, cache, workers=1))
        n = copies * len(paths)
        print(f"many files ({n:,}): cold {t_cold:.3f} s, warm {t_warm * 1000:.1f} ms "
              f"({t_cold / t_warm:.0f}x; target <= 30 ms for 4,070 files)")


if __name__ == "__main__":
    main()
