"""Budget sweep (issue 11): test NLL and music statistics against minutes of training.

For each corpus, recipe and budget it trains a model for M wall-clock minutes, scores it on
the corpus's test split against the Kneser-Ney 5-gram and the unigram of ``composer
evaluate`` (fitted on the train split), generates 20 pieces of 30 s at temperature 1.0 (10
seeded with the first seconds of test files, 10 unseeded) and compares them with the
corpus's pieces (:func:`composer.evaluation.musicstats.compare_sets`). Recipes:

- ``new``: what a user gets from ``composer train DIR --minutes M`` alone (the library
  call :func:`composer.training.recipe.train_model` with the default :class:`TrainConfig`).
- ``old``: the pre-issue-11 defaults on the same budget: batch 64 x window 256, lr 1e-3, a
  fixed 200-step warm-up, validation in the training windows (256 events; the test NLL of
  every recipe is scored in today's 2048-event windows). Weight decay on
  matrices only and the budget's evaluation cadence are today's code, shared by both.
- ``streams``: today's defaults with ``carry_state`` (truncated backprop through time,
  :mod:`composer.training.streams`).

Run (from the repository root, one training at a time; a busy machine slows every number)::

    nice python benchmarks/bench_quality.py --corpora bach-chorales irish-folk \\
        --minutes 1.5 4 10 20 --recipes new old --out results.jsonl [--work DIR]
    python benchmarks/bench_quality.py --table results.jsonl      # markdown tables

Each finished run appends one JSON line to ``--out`` (so a stopped sweep keeps what it did),
with the load average before and after it. ``--events KIND`` (performance, notes or auto)
chooses the event vocabulary of the corpus trained on (default: auto, what ``composer
train`` does: the beat vocabulary on quantised corpora).

Targets of issue 11 (2 quiet cores, the ``new`` recipe): below the 5-gram per event on test
within 1.5 minutes on both corpora; at 4 minutes at least 35% below it, pitch-class
histogram overlap >= 0.8 and note-length and polyphony overlaps >= 0.7 (the 20 pieces); at
20 minutes at least 45% below it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from composer.corpus.cache import AUTO_CHOICE, CorpusConfig
from composer.corpus.sources import load_folder, open_or_prepare
from composer.evaluation.baselines import EvalConfig
from composer.evaluation.likelihood import evaluate_model
from composer.evaluation.musicstats import compare_sets
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.session import generate_music
from composer.model.checkpoint import find_checkpoint, resolve_checkpoint_path
from composer.tokens.vocab import CHOICES
from composer.training.config import TrainConfig, TrainRequest
from composer.training.recipe import TrainCallbacks, train_model

OLD_DEFAULTS = TrainConfig(batch_size=64, seq_len=256, eval_seq_len=256, lr=1e-3,
                           warmup_steps=200)
EVAL_WINDOW = TrainConfig().eval_seq_len  # events per test window, for every recipe
# music statistics shown in the tables: (feature, short name)
FEATURES = [("polyphony", "poly"), ("note_length_histogram", "len"),
            ("notes_per_second", "n/s"), ("pitch_class_histogram", "pc"),
            ("pitch_class_transition_matrix", "pc-trans"), ("restrike_share", "restrike"),
            ("longest_run", "run s"), ("grid_share", "grid"), ("max_polyphony", "max poly")]
SCALARS = {"polyphony", "notes_per_second", "restrike_share", "longest_run", "grid_share",
           "max_polyphony"}
TARGETS = {1.5: (0.0, None), 4.0: (35.0, (0.8, 0.7, 0.7)), 20.0: (45.0, None)}
# issue 12, every budget and vocabulary (all pieces): polyphony and note-length overlaps,
# onsets on the grid (beat vocabulary on quantised corpora)
VOCAB_TARGETS = {"polyphony": 0.5, "note_length_histogram": 0.7, "grid_share": 0.95}


def load_avg() -> list[float]:
    """The 1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def loop_speed(run: Path) -> float | None:
    """Median tokens/s of the training loop's log lines (``run/metrics.jsonl``): the speed
    of the steps alone, without preparing, validating and saving."""
    with open(run / "metrics.jsonl") as f:
        speeds = sorted(r["tokens_per_s"] for r in map(json.loads, f)
                        if r.get("split") == "train" and "tokens_per_s" in r)
    return round(speeds[len(speeds) // 2]) if speeds else None


def train_run(source: Path, out: Path, recipe: str, minutes: float,
              events: str, threads: int) -> dict[str, Any]:
    """Train one model into ``out``; what it reached and how fast."""
    config = {"old": OLD_DEFAULTS, "streams": TrainConfig(carry_state=True)}.get(
        recipe, TrainConfig())
    plan: list[str] = []
    t0 = time.perf_counter()
    result = train_model(TrainRequest(str(source), str(out), config=config, minutes=minutes,
                                      device="cpu", force=True, threads=threads,
                                      corpus=CorpusConfig(vocabulary=events)),
                         TrainCallbacks(plan=plan.append))
    wall = time.perf_counter() - t0
    tokens = result.step * config.batch_size * config.seq_len
    return {"steps": result.step, "tokens": tokens, "wall_s": round(wall, 1),
            "tokens_per_s": round(tokens / wall), "loop_tokens_per_s": loop_speed(out),
            "stopped": result.stopped,
            "best_valid": result.best_valid_loss, "plan": plan[:1],
            "events": events}


def nll_run(checkpoint: Path) -> dict[str, Any]:
    """Test NLL of the LSTM and the baselines (per event, note and second), the LSTM scored
    in windows of :data:`EVAL_WINDOW` events whatever window it trained and validated in."""
    res = evaluate_model(checkpoint, split="test", device="cpu",
                         config=EvalConfig(seq_len=EVAL_WINDOW))
    keep = ("loss", "nll_per_note", "nll_per_second", "events")
    return {"window": EVAL_WINDOW, "files": res["files"], "notes": res["notes"],
            "seconds": res["seconds"],
            **{_key(name): {k: r[k] for k in keep} for name, r in res["models"].items()}}


def _key(model: str) -> str:
    """A results key of one of evaluate's models: "LSTM" (with its recall, when it has
    one), "LSTM-alone" (without it), "5-gram", "unigram"."""
    return "LSTM-alone" if model == "LSTM alone" else model.split()[0]


def music_summary(generated: list, reference: list) -> dict[str, Any]:
    """The overlaps (and scalar means) of the table's features, and what goes beyond."""
    cmp = compare_sets(generated, reference)
    out: dict[str, Any] = {"files": len(generated), "beyond": cmp["beyond_reference"]}
    for name, _ in FEATURES:
        f = cmp["features"][name]
        out[name] = {"overlap": f["overlap"]}
        if name in SCALARS:
            out[name].update(gen=f["generated"]["mean"], ref=f["reference"]["mean"])
    return out


def generate_run(checkpoint: Path, corpus_dir: Path, folder: Path, reference: list,
                 pieces: int, seed_seconds: float, threads: int) -> dict[str, Any]:
    """``pieces`` seeded (test-file openings) + ``pieces`` unseeded 30 s pieces at
    temperature 1.0, compared with ``reference`` as seeded, unseeded and all."""
    corpus = open_or_prepare(corpus_dir)
    tests = sorted(corpus.paths[i] for i in corpus.files("test"))[:pieces]
    root = Path(corpus.source or corpus_dir)
    job = GenerateRequest(checkpoint=str(checkpoint),
                          sample=SampleConfig(temperature=1.0, seconds=30.0), device="cpu",
                          copy_warn=0, include_seed=False, threads=threads, force=True)
    for i, rel in enumerate(tests):
        generate_music(replace(job, seed=str(root / rel), seed_seconds=seed_seconds,
                               out=str(folder / "seeded"), rng_seed=i, prefix=f"s{i:02d}"))
    generate_music(replace(job, out=str(folder / "unseeded"), num=pieces, rng_seed=0,
                           prefix="u"))
    sets = {k: load_folder(folder / k)[1] for k in ("seeded", "unseeded")}
    sets["all"] = sets["seeded"] + sets["unseeded"]
    return {"seed_files": tests, "seed_seconds": seed_seconds,
            **{k: music_summary(v, reference) for k, v in sets.items()}}


def sweep(args: argparse.Namespace) -> None:
    """Every corpus x recipe x budget, one at a time, appending to ``args.out``."""
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-quality-"))
    for name in args.corpora:
        corpus_dir = Path(args.datasets) / name
        reference = load_folder(corpus_dir)[1]
        for recipe in args.recipes:
            for minutes in args.minutes:
                run = work / f"{name}-{recipe}-{args.events}-{minutes:g}"
                record: dict[str, Any] = {
                    "corpus": name, "recipe": recipe, "minutes": minutes,
                    "threads": args.threads, "started": datetime.datetime.now(
                        datetime.timezone.utc).isoformat(timespec="seconds"),
                    "load_before": load_avg()}
                print(f"[{record['started']}] {name} {recipe} {minutes:g} min, load "
                      f"{record['load_before']}", file=sys.stderr, flush=True)
                record["train"] = train_run(corpus_dir, run / "model", recipe, minutes,
                                            args.events, args.threads)
                record["load_after_train"] = load_avg()
                ckpt = resolve_checkpoint_path(find_checkpoint(run / "model"))[0]
                record["test"] = nll_run(ckpt)
                if args.pieces:
                    shutil.rmtree(run / "generated", ignore_errors=True)
                    record["music"] = generate_run(ckpt, corpus_dir, run / "generated",
                                                   reference, args.pieces, args.seed_seconds,
                                                   args.threads)
                record["load_after"] = load_avg()
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(format_tables([record]), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- tables


def _pct(lstm: float, base: float) -> float:
    return 100.0 * (lstm - base) / base


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:,}"


def _recipe(r: dict[str, Any]) -> str:
    """The recipe and, where recorded, the vocabulary it trained on."""
    events = r["train"].get("events")
    return f"{r['recipe']} ({events})" if events else r["recipe"]


def vocab_targets(records: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of issue 12's targets for each run with generated pieces."""
    lines = ["", "Targets of issue 12 (all pieces, temperature 1.0):", "",
             "| corpus | recipe | min | below its 5-gram per note | polyphony >= 0.5 "
             "| note length >= 0.7 | longest run gen / corpus s | grid share (>= 95%, notes) |",
             "|" + " --- |" * 8]
    for r in records:
        a = r.get("music", {}).get("all")
        if not a:
            continue
        per_note = _pct(r["test"]["LSTM"]["nll_per_note"], r["test"]["5-gram"]["nll_per_note"])
        run = a["beyond"]["longest_run"]
        cells = [f"{'met' if per_note < 0 else 'missed'} ({per_note:+.0f}%)"]
        for name in ("polyphony", "note_length_histogram"):
            got = a[name]["overlap"]
            cells.append(f"{'met' if got >= VOCAB_TARGETS[name] else 'missed'} ({got:.2f})")
        cells.append(f"{'met' if run['generated'] <= run['reference'] else 'missed'} "
                     f"({run['generated']:.1f} / {run['reference']:.1f})")
        grid = a["grid_share"]["gen"]
        cells.append(f"{'met' if grid >= VOCAB_TARGETS['grid_share'] else 'missed'} "
                     f"({grid:.0%})")
        lines.append(f"| {r['corpus']} | {_recipe(r)} | {r['minutes']:g} | "
                     + " | ".join(cells) + " |")
    return lines


def format_tables(records: list[dict[str, Any]]) -> str:
    """Markdown: the NLL table, the music-statistics table and the target checks."""
    lines = ["| corpus | recipe | min | steps | tokens | tokens/s (loop) | wall s "
             "| load before/after "
             "| LSTM /event | /note | /s | 5-gram /event | /note | /s | vs 5-gram /event "
             "| /note | LSTM alone /note |", "|" + " --- |" * 17]
    for r in records:
        t, e = r["train"], r["test"]
        lstm, kn = e["LSTM"], e["5-gram"]
        lines.append(
            f"| {r['corpus']} | {_recipe(r)} | {r['minutes']:g} | {t['steps']:,} "
            f"| {t['tokens'] / 1e6:.2f} M | {t['tokens_per_s']:,} "
            f"({_n(t.get('loop_tokens_per_s'))}) | {t['wall_s']:.0f} "
            f"| {r['load_before'][0]:.1f} / {r.get('load_after_train', [0])[0]:.1f} "
            f"| {_f(lstm['loss'])} | {_f(lstm['nll_per_note'])} | {_f(lstm['nll_per_second'], 2)} "
            f"| {_f(kn['loss'])} | {_f(kn['nll_per_note'])} | {_f(kn['nll_per_second'], 2)} "
            f"| {_pct(lstm['loss'], kn['loss']):+.0f}% "
            f"| {_pct(lstm['nll_per_note'], kn['nll_per_note']):+.0f}% "
            f"| {_f(e.get('LSTM-alone', lstm)['nll_per_note'])} |")
    lines += ["", "Music statistics of the generated pieces against the corpus: overlap "
              "(1 = spread like the corpus); scalars as generated / corpus mean.", "",
              "| corpus | recipe | min | set | " + " | ".join(s for _, s in FEATURES)
              + " | longest note gen / corpus s |", "|" + " --- |" * (len(FEATURES) + 5)]
    for r in records:
        for which in ("seeded", "unseeded", "all"):
            m = r.get("music", {}).get(which)
            if not m:
                continue
            cells = []
            for name, _ in FEATURES:
                f = m[name]
                cell = _f(f["overlap"], 2)
                if name in SCALARS:
                    cell += f" ({_f(f['gen'], 2)} / {_f(f['ref'], 2)})"
                cells.append(cell)
            note = m["beyond"]["longest_note"]
            lines.append(f"| {r['corpus']} | {_recipe(r)} | {r['minutes']:g} | {which} "
                         f"({m['files']}) | " + " | ".join(cells)
                         + f" | {note['generated']:.1f} / {note['reference']:.1f} |")
    lines += ["", "Targets of issue 11 (new recipe; music: all 20 pieces):", "",
              "| corpus | recipe | min | NLL target | reached | music target | reached |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        target = TARGETS.get(float(r["minutes"]))
        if r["recipe"] != "new" or target is None:
            continue
        below, music = target
        pct = _pct(r["test"]["LSTM"]["loss"], r["test"]["5-gram"]["loss"])
        nll_ok = "met" if -pct >= below and pct < 0 else "missed"
        mcell = mres = "-"
        if music and r.get("music"):
            a = r["music"]["all"]
            got = (a["pitch_class_histogram"]["overlap"], a["note_length_histogram"]["overlap"],
                   a["polyphony"]["overlap"])
            ok = all(g >= t for g, t in zip(got, music, strict=True))
            mcell = "pc >= 0.8, length >= 0.7, polyphony >= 0.7"
            mres = f"{'met' if ok else 'missed'} ({', '.join(f'{g:.2f}' for g in got)})"
        lines.append(f"| {r['corpus']} | {_recipe(r)} | {r['minutes']:g} "
                     f"| >= {below:g}% below 5-gram | {nll_ok} ({pct:+.0f}%) | {mcell} | {mres} |")
    return "\n".join(lines + vocab_targets(records))


def main(argv: list[str] | None = None) -> None:
    """Parse the command line; sweep or print tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", metavar="JSONL", help="print the tables of a results file")
    p.add_argument("--corpora", nargs="+", default=["bach-chorales", "irish-folk"])
    p.add_argument("--datasets", default="datasets", help="folder holding the corpora")
    p.add_argument("--minutes", nargs="+", type=float, default=[1.5, 4, 10, 20])
    p.add_argument("--recipes", nargs="+", choices=["new", "old", "streams"],
                   default=["new", "old"])
    p.add_argument("--events", default=AUTO_CHOICE, choices=CHOICES,
                   help="event vocabulary of the corpus trained on (default: what `composer "
                        "train` picks)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training, evaluation and generation (default: "
                        "what `composer train` uses)")
    p.add_argument("--pieces", type=int, default=10,
                   help="seeded and unseeded pieces each (0: no generation)")
    p.add_argument("--seed-seconds", type=float, default=4.0)
    p.add_argument("--work", help="folder for the runs (default: a new temporary folder)")
    p.add_argument("--out", default="results.jsonl")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(format_tables([json.loads(line) for line in f if line.strip()]))
    else:
        sweep(args)


if __name__ == "__main__":
    main()
