"""What a user feels: ``composer generate`` end to end, process start to file written.

Runs ``python -m composer generate --length 30 --rng-seed 0 --out TMP -q`` (the shipped
default model, 30 s of music, one thread) ``--runs`` times per source tree, the trees
interleaved run by run so that a load change on the shared machine hits them alike, and
prints the wall time of each (``time.perf_counter`` around the subprocess) with the load
average beside it, then min and median per tree. ``--tree`` takes source trees to compare
(e.g. a checkout of main from before a change, and this one); ``--import-only`` times
``python -c "import composer.cli.main"`` instead (the start-up before any work).

    python benchmarks/bench_startup.py [--tree /tmp/base .] [--runs 5] [--seconds 30]

For where start-up time goes: ``python -X importtime -m composer generate ...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def once(tree: Path, seconds: float, import_only: bool) -> float:
    """Wall seconds of one run of the command under source tree ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory() as out:
        cmd = ([sys.executable, "-c", "import composer.cli.main"] if import_only else
               [sys.executable, "-m", "composer", "generate", "--length", f"{seconds:g}",
                "--rng-seed", "0", "--out", out, "-q"])
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=out, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        if not import_only and not list(Path(out).glob("*.mid")):
            raise SystemExit(f"{tree}: no file written")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, nargs="+", default=[ROOT])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0, help="music per run")
    ap.add_argument("--import-only", action="store_true")
    args = ap.parse_args()
    what = "import composer.cli.main" if args.import_only else (
        f"composer generate --length {args.seconds:g}")
    print(f"{what}: wall seconds per run (load average beside)")
    times: dict[Path, list[float]] = {t: [] for t in args.tree}
    for run in range(args.runs):
        for tree in args.tree:
            wall = once(tree.resolve(), args.seconds, args.import_only)
            times[tree].append(wall)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"  run {run + 1} {str(tree):<30} {wall:6.2f} s  (load {load})", flush=True)
    for tree, ts in times.items():
        print(f"{str(tree):<30} min {min(ts):.2f} s, median {statistics.median(ts):.2f} s "
              f"over {len(ts)} runs")


if __name__ == "__main__":
    main()
