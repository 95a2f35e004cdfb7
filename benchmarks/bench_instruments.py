"""Multi-instrument row (issue 14): an instrument-aware model on the ensemble corpus.

Trains a model for M wall-clock minutes on ``datasets/ensemble`` with the instrument-aware
vocabulary (``composer train --instruments``), scores it on the corpus's test split against
the Kneser-Ney 5-gram of ``composer evaluate`` (per event and per note: nats per note
compare vocabularies), then generates 20 pieces of 30 s at temperature 1.0 (10 seeded with
the first seconds of test files: continued with the seed's instruments; 10 unseeded) and
reports, per instrument (GM program; drums apart):

- ``overlap``: pitch-histogram overlap (sum of the minimum of the two normalised
  histograms, 1 = the same distribution) between the instrument's generated notes and its
  notes in the corpus;
- ``notes_per_s``: its notes per second of generated music, beside the corpus's (per second
  of the pieces it plays in);
- ``outside``: the share of its generated notes outside its pitch range in the corpus
  (lowest..highest note it plays there); an instrument absent from the corpus counts all
  its notes as outside (its row says ``absent``).

It also draws the piano roll of the first seeded piece, coloured by instrument
(``roll.png`` in the work folder). Run (from the repository root; a busy machine slows it)::

    nice python benchmarks/bench_instruments.py --minutes 10 --out instruments.jsonl

Each run appends one JSON line to ``--out`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from composer.cli.options import corpus_config
from composer.corpus.sources import open_or_prepare
from composer.evaluation.baselines import EvalConfig
from composer.evaluation.likelihood import evaluate_model
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.session import generate_music
from composer.midi.instruments import program_name
from composer.midi.io import NOTE_DTYPE, LoadConfig, load
from composer.midi.render import plot_piano_roll
from composer.model.checkpoint import find_checkpoint, resolve_checkpoint_path
from composer.training.config import TrainConfig, TrainRequest
from composer.training.recipe import train_model

DRUMS = -1  # the key of the drum part in the per-instrument tables


def parts(pieces: list[tuple[np.ndarray, float]]) -> dict[int, dict[str, Any]]:
    """Per instrument (program; DRUMS): its pitches (all notes) and its notes and seconds
    (of the pieces it plays in)."""
    out: dict[int, dict[str, Any]] = {}
    for notes, seconds in pieces:
        key = np.where(notes["is_drum"], DRUMS, notes["program"])
        for k in np.unique(key).tolist():
            part = out.setdefault(k, {"pitches": [], "notes": 0, "seconds": 0.0})
            part["pitches"].append(notes["pitch"][key == k])
            part["notes"] += int((key == k).sum())
            part["seconds"] += seconds
    for part in out.values():
        part["pitches"] = np.concatenate(part["pitches"]).astype(np.int64)
    return out


def instrument_rows(generated: dict[int, dict[str, Any]], corpus: dict[int, dict[str, Any]]
                    ) -> dict[str, dict[str, Any]]:
    """The per-instrument statistics of the module docstring."""
    rows = {}
    for k, gen in sorted(generated.items()):
        name = "Drums" if k == DRUMS else program_name(k)
        row: dict[str, Any] = {"notes": gen["notes"],
                               "notes_per_s": round(gen["notes"] / max(gen["seconds"], 1e-9), 2)}
        ref = corpus.get(k)
        if ref is None:
            rows[name] = {**row, "absent": True, "outside": 1.0, "overlap": 0.0}
            continue
        g = np.bincount(gen["pitches"], minlength=128) / len(gen["pitches"])
        r = np.bincount(ref["pitches"], minlength=128) / len(ref["pitches"])
        lo, hi = int(ref["pitches"].min()), int(ref["pitches"].max())
        outside = float(((gen["pitches"] < lo) | (gen["pitches"] > hi)).mean())
        rows[name] = {**row, "overlap": round(float(np.minimum(g, r).sum()), 3),
                      "outside": round(outside, 3), "range": [lo, hi],
                      "corpus_notes_per_s": round(ref["notes"] / max(ref["seconds"], 1e-9), 2)}
    return rows


def read(paths: list[Path]) -> list[tuple[np.ndarray, float]]:
    """(notes, seconds) of MIDI files, drums kept (an unreadable file: no notes)."""
    out = []
    for path in paths:
        try:
            piece = load(path, LoadConfig(keep_drums=True))
            out.append((piece.notes, piece.duration))
        except Exception:  # noqa: BLE001 (a benchmark reads what it can)
            out.append((np.zeros(0, NOTE_DTYPE), 0.0))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, score, generate and measure; the JSON record."""
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-instruments-"))
    corpus_dir = Path(args.corpus)
    record: dict[str, Any] = {"corpus": str(corpus_dir), "minutes": args.minutes,
                              "preset": args.preset, "events": args.events,
                              "started": datetime.datetime.now(datetime.timezone.utc)
                              .isoformat(timespec="seconds"),
                              "load_before": [round(x, 2) for x in os.getloadavg()]}
    settings = corpus_config(True, vocabulary=args.events)
    result = train_model(TrainRequest(str(corpus_dir), str(work / "model"), minutes=args.minutes,
                                      preset=args.preset, device="cpu", force=True,
                                      corpus=settings))
    record["train"] = {"steps": result.step, "best_valid": result.best_valid_loss}
    ckpt = resolve_checkpoint_path(find_checkpoint(work / "model"))[0]
    res = evaluate_model(ckpt, split="test", device="cpu",
                         config=EvalConfig(seq_len=TrainConfig().eval_seq_len))
    record["test"] = {name.split()[0]: {k: r[k] for k in ("loss", "nll_per_note", "events")}
                      for name, r in res["models"].items()}
    corpus = open_or_prepare(corpus_dir, settings)
    root = Path(corpus.source or corpus_dir)
    tests = sorted(corpus.paths[i] for i in corpus.files("test"))[: args.pieces]
    out = work / "generated"
    job = GenerateRequest(checkpoint=str(ckpt), out=str(out), device="cpu", copy_warn=0,
                          sample=SampleConfig(temperature=1.0, seconds=args.seconds),
                          include_seed=False, threads=args.threads, force=True)
    for i, rel in enumerate(tests):
        generate_music(replace(job, seed=str(root / rel), seed_seconds=args.seed_seconds,
                               rng_seed=i, prefix=f"s{i:02d}"))
    generate_music(replace(job, num=args.pieces, rng_seed=0, prefix="u"))
    files = sorted(out.glob("*.mid"))
    reference = parts(read([root / p for p in corpus.paths]))
    record["instruments"] = instrument_rows(parts(read(files)), reference)
    seeded = [f for f in files if f.name.startswith("s")]
    if seeded:
        try:
            record["roll"] = str(plot_piano_roll(seeded[0], work / "roll.png"))
        except Exception as e:  # noqa: BLE001 (e.g. a piece of drums only)
            record["roll"] = f"not drawn: {e}"
    record["generated_files"] = len(files)
    return record


def table(record: dict[str, Any]) -> str:
    """The record as markdown."""
    t = record["test"]
    lstm, ngram = t.get("LSTM", {}), next((v for k, v in t.items() if "gram" in k), {})
    lines = [f"{record['corpus']}, {record['minutes']:g} min, {record['events']}: "
             f"test NLL/note LSTM {lstm.get('nll_per_note', float('nan')):.3f}, "
             f"5-gram {ngram.get('nll_per_note', float('nan')):.3f}",
             "", "| instrument | notes | notes/s (corpus) | pitch overlap | outside range |",
             "|---|---:|---:|---:|---:|"]
    for name, r in record["instruments"].items():
        ref = "absent" if r.get("absent") else r.get("corpus_notes_per_s")
        lines.append(f"| {name} | {r['notes']} | {r['notes_per_s']} ({ref}) | {r['overlap']} "
                     f"| {r['outside']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="datasets/ensemble")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--preset", default="auto", choices=["auto", "default", "small", "tiny"])
    p.add_argument("--events", default="auto", choices=["performance", "notes", "auto"])
    p.add_argument("--pieces", type=int, default=10, help="seeded and as many unseeded")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each piece")
    p.add_argument("--seed-seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", help="folder for the run (default: a new temporary folder)")
    p.add_argument("--out", default="instruments.jsonl")
    args = p.parse_args(argv)
    record = run(args)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(table(record), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
