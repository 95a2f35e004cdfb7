"""Ingest speed: composer's whole ingest vs pretty_midi's parse alone, on the same files.

Cold cache, one worker process: parse + checks + encode + cache writes, timed end to end,
against ``pretty_midi.PrettyMIDI(path)`` on every file in the same run. Then a warm second
run on the same folder. Prints files/s, events/s and the ratios (targets: >= 30x, >= 50x).
A file pretty_midi refuses counts with the time it took to refuse it.

``--parts``: where a cold ingest's time goes, in microseconds per file, each part timed
alone in this process on the same files in batches of 64 (best of ``--repeat``): reading,
hashing, the C track parser alone, the rest of parsing (note arrays, tempo maps, beats,
checks: NumPy), encoding, the per-file facts (guard histograms, grid counts, clock), the
rest of a worker's batch (records), and the rest of a whole cold prepare (scan, worker
process, pipes, cache writes).

Many files: ``--copies N`` (default 10: 4,070 files from the chorales) distinct copies of
every file (trailing bytes change each copy's hash) in a temporary folder, then the warm
prepare of that folder (target: <= 30 ms for 4,070 files), which stats the files and reads
none of them.

    python benchmarks/bench_ingest.py [MIDI_DIR] [--repeat 3] [--copies 10] [--parts]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import pretty_midi

from composer.corpus.cache import CorpusConfig
from composer.corpus.facts import stats_many
from composer.corpus.prepare import prepare
from composer.corpus.scan import content_hash, ingest_files, scan
from composer.midi import _smf
from composer.midi.io import Piece, parse_many, read_bytes
from composer.midi.tracks import track_chunks, unwrap_riff
from composer.tokens.beats import clock_of, grid_counts_many

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
    ap.add_argument("--parts", action="store_true", help="where the time goes, per file")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}")
    paths = [args.midi_dir / p for p in scan(args.midi_dir)]
    if args.parts:
        parts(args.midi_dir, paths, args.repeat)
        print(f"load average {os.getloadavg()}")
        return

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


def parts(midi_dir: Path, paths: list[Path], repeat: int, batch: int = 64) -> None:
    """Microseconds per file of each part of a cold ingest (see the module's docstring)."""
    config = CorpusConfig()
    load, events = config.load, config.vocab_events

    def cold():
        with tempfile.TemporaryDirectory() as d:
            prepare(midi_dir, Path(d) / "cache", workers=1)

    t_cold = best_of(repeat, cold)[0]  # first: a worker forked from a lean parent
    datas = [read_bytes(p, load) for p in paths]
    chunks = [track_chunks(unwrap_riff(d))[2] for d in datas]
    batches = [slice(i, i + batch) for i in range(0, len(paths), batch)]
    pieces = [p for b in batches for p in parse_many(datas[b], load)]
    loaded = [p for p in pieces if isinstance(p, Piece)]

    def c_parser():
        for data, spans in zip(datas, chunks, strict=True):
            for t, (start, end) in enumerate(spans):
                _smf.parse_track(data, start, end, load.max_notes, t)

    def facts():
        for b in batches:
            stats_many(loaded[b])
            grid_counts_many(loaded[b], config.notes.steps_per_quarter)
            [clock_of(p) for p in loaded[b]]

    times = {name: best_of(repeat, fn)[0] for name, fn in [
        ("read", lambda: [read_bytes(p, load) for p in paths]),
        ("hash", lambda: [content_hash(d) for d in datas]),
        ("C track parser alone", c_parser),
        ("parse_many", lambda: [parse_many(datas[b], load) for b in batches]),
        ("encode (tokens)", lambda: [events.encode_many(loaded[b]) for b in batches]),
        ("facts (guards, grid, clock)", facts),
        ("ingest_files", lambda: [ingest_files([str(p) for p in paths[b]], load, events)
                                  for b in batches])]}
    times["cold prepare"] = t_cold
    times["rest of parsing (NumPy)"] = times["parse_many"] - times["C track parser alone"]
    named = ("read", "hash", "C track parser alone", "rest of parsing (NumPy)",
             "encode (tokens)", "facts (guards, grid, clock)")
    times["rest of a batch (records)"] = times["ingest_files"] - sum(times[k] for k in named)
    times["rest of prepare (worker, writes)"] = times["cold prepare"] - times["ingest_files"]
    print(f"{len(paths)} files, {sum(len(p.notes) for p in loaded):,} notes; "
          f"best of {repeat}, us per file:")
    for name in (*named, "rest of a batch (records)", "rest of prepare (worker, writes)",
                 "cold prepare"):
        print(f"  {name:34}{times[name] / len(paths) * 1e6:8.1f}")


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
