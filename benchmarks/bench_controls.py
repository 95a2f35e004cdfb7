"""How well a model with controls obeys them: issue 23's obedience table.

Usage::

    python benchmarks/bench_controls.py CHECKPOINT CORPUS [--pieces 20] [--seconds 30]
        [--densities 1,2,4,6,8,12] [--keys "C major,D minor,F# major,Bb minor"]
        [--instruments "violin,cello;flute,acoustic bass,drums"] [--steer/--no-steer]
        [--rng-seed 0] [--json OUT.json]

CORPUS is the model's training corpus (a prepared cache or its MIDI folder). Every piece is
generated from the start context (no seed), ``--pieces`` per request in one batch, at the
default sampling settings (``SampleConfig``: its ``density_gain`` / ``scale_penalty``
feedback on; ``--no-steer`` sets both to 0 to measure the model alone). Measured on the
generated notes (the continuation decoded as ``composer generate`` writes it):

- **density** asked 1, 2, 4, 6, 8, 12 notes/s -> produced (onsets / seconds of music):
  Spearman's rank correlation over all pieces (target >= 0.95) and the median relative error
  |produced - asked| / asked (target <= 20%); then a plan rising from 2 to 8 notes/s over the
  piece (six segments): each 5 s window's produced density against the plan's mean there
  (target: within 25% in every window);
- **key**: the share of notes in the asked key's scale (target >= 0.92 in each key), steered
  and unsteered;
- **style** (a model with styles): a Kneser-Ney 5-gram fitted on each style's train files;
  a piece asked in style X counts when X's n-gram gives it the lowest NLL per token (target:
  >= 90% of pieces);
- **instruments** (an instrument-aware model): the General MIDI programs and drums of each
  piece against the asked ensemble: the share playing only asked instruments, drums only
  when asked, the share in which every asked instrument is heard, and per instrument the
  share of 5 s windows it plays in (whether it stays once it entered).

Also the cost of the feedback per step (steps/s with and without it, in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from composer.controls.features import STYLE
from composer.controls.plan import key_profile, key_scale, make_plan
from composer.corpus.cache import CorpusConfig
from composer.corpus.facts import Guards
from composer.corpus.keys import style_labels
from composer.corpus.sources import open_or_prepare
from composer.evaluation.baselines import NGram, score
from composer.generation.config import SampleConfig
from composer.generation.loop import generate
from composer.midi.instruments import parse_instruments
from composer.model.checkpoint import find_checkpoint, load_checkpoint
from composer.tokens.beats import clock_from

DENSITIES = (1.0, 2.0, 4.0, 6.0, 8.0, 12.0)
TARGET_KEYS = ("C major", "D minor", "F# major", "Bb minor")
ENSEMBLES = ("violin,cello", "flute,acoustic bass,drums")
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEYS = [f"{n} {m}" for m in ("major", "minor") for n in NAMES]
PROFILES = np.stack([key_profile(k) for k in KEYS])  # (24, 12)
PITCH_STATS = ("pitch_class_histogram", "pitch_class_transition_matrix")
MAX_REFERENCE = 200  # corpus pieces decoded for the key and style statistics


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def best_key(notes: np.ndarray) -> str | None:
    """The key whose profile correlates best with the notes' pitch-class histogram."""
    if not len(notes):
        return None
    hist = np.bincount(notes["pitch"] % 12, minlength=12).astype(float)
    if hist.std() == 0:
        return None
    corr = [np.corrcoef(hist, p)[0, 1] for p in PROFILES]
    return KEYS[int(np.argmax(corr))]


def in_key(notes: np.ndarray, key: str) -> float:
    """Share of ``notes`` whose pitch class lies in ``key``'s scale."""
    return float(key_scale(key)[notes["pitch"] % 12].mean()) if len(notes) else float("nan")


def style_stats(notes: np.ndarray, seconds: float) -> np.ndarray:
    """(4,) notes per second, mean pitch, pitch spread, mean note length."""
    if not len(notes):
        return np.zeros(4)
    p = notes["pitch"].astype(float)
    return np.array([len(notes) / max(seconds, 1e-9), p.mean(), p.std(),
                     float((notes["end"] - notes["start"]).mean())])


class Bench:
    """A checkpoint, its corpus and the generation settings shared by every request."""

    def __init__(self, checkpoint: str, corpus: str, pieces: int, seconds: float,
                 rng_seed: int, engine: str, steer: bool = True, recall: bool = True) -> None:
        self.ckpt = load_checkpoint(find_checkpoint(checkpoint))
        self.events, self.spec = self.ckpt.events, self.ckpt.model_config.controls
        kind = self.events.kind  # a MIDI folder is prepared with the model's vocabulary
        self.corpus = open_or_prepare(corpus, CorpusConfig(vocabulary=kind, **{
            "notes" if self.events.is_notes else "events": self.events.config}))
        if self.corpus.events != self.events:
            sys.exit(f"{corpus}: not prepared with the model's vocabulary")
        self.clock = clock_from(self.ckpt.data.get("tempo"))
        self.guards = Guards.from_dict(self.ckpt.data.get("guards"))
        self.pieces, self.seconds, self.rng_seed, self.engine = pieces, seconds, rng_seed, engine
        self.steer, self.recall = steer, recall
        self.checkpoint = checkpoint
        rng = np.random.default_rng(0)
        files = np.arange(len(self.corpus.paths))
        self.ref_files = np.sort(rng.permutation(files)[:MAX_REFERENCE])
        self.reference = [self.decode_file(i) for i in self.ref_files]  # (notes, seconds)

    def decode_file(self, i: int) -> tuple[np.ndarray, float]:
        clock = clock_from(int(self.corpus.index["us_per_quarter"][i]))
        tokens = np.asarray(self.corpus.sequence(i), np.int64)
        return self.events.decode(tokens, clock).notes, self.events.seconds_of(tokens, clock)

    def config(self, **extra) -> SampleConfig:
        gains = {} if self.steer else {"density_gain": 0.0, "scale_penalty": 0.0}
        return SampleConfig(seconds=self.seconds, max_num=max(64, self.pieces), **gains,
                            recall=self.recall, **extra)

    def generate(self, flags: dict | None = None, segments: list | None = None, **extra):
        """``pieces`` continuations under control ``flags`` or a plan of ``segments`` (none:
        unsteered); ``extra``: SampleConfig fields (instruments)."""
        plan = make_plan(self.spec, flags, segments or ()) if flags or segments else None
        return generate(self.ckpt.model, self.events, None, self.pieces, self.config(**extra),
                        self.rng_seed, self.engine, clock=self.clock, guards=self.guards,
                        plan=plan)

    def run(self, segments: list | None = None, **flags) -> list[tuple[np.ndarray, float]]:
        """(notes, seconds) of each continuation under ``flags`` / ``segments``."""
        gen = self.generate(flags, segments)
        return [self.decode_row(row[gen.seed_len:]) for row in gen.tokens]

    def decode_row(self, cont: np.ndarray) -> tuple[np.ndarray, float]:
        return (self.events.decode(cont, self.clock).notes,
                max(self.events.seconds_of(cont, self.clock), 1e-9))


def density_table(b: Bench, densities: list[float]) -> dict:
    rows, req, got = [], [], []
    for d in densities:
        produced = [len(n) / s for n, s in b.run(density=float(d))]
        req += [d] * len(produced)
        got += produced
        rows.append({"asked": float(d), "median_produced": float(np.median(produced))})
    req, got = np.array(req), np.array(got)
    # A plan rising from 2 to 8 notes/s in six equal segments, checked per 5 s window.
    cuts = np.linspace(0, b.seconds, 7)[:-1]
    values = np.linspace(2, 8, 6)
    segments = [{"from": float(t), "density": float(v)} for t, v in zip(cuts, values,
                                                                       strict=True)]
    windows = []
    pieces = b.run(segments=segments)
    for w0 in np.arange(0, b.seconds - 4.999, 5.0):
        grid = np.linspace(w0, w0 + 5, 51)[:-1] + 0.05
        want = float(np.mean(values[np.searchsorted(cuts, grid, "right") - 1]))
        have = [float(((n["start"] >= w0) & (n["start"] < w0 + 5)).sum()) / 5
                for n, _ in pieces]
        windows.append({"window": f"{w0:g}-{w0 + 5:g} s", "asked": want,
                        "median_produced": float(np.median(have)),
                        "relative_error": float(abs(np.median(have) - want) / want)})
    return {"rows": rows, "spearman": spearman(req, got),
            "median_relative_error": float(np.median(np.abs(got - req) / req)),
            "plan": windows}


def key_table(b: Bench, keys: list[str]) -> dict:
    plain = b.run()
    rows = []
    for key in keys:
        steered = b.run(key=key)
        rows.append({"key": key,
                     "in_key_steered": float(np.nanmedian([in_key(n, key) for n, _ in steered])),
                     "worst_steered": float(np.nanmin([in_key(n, key) for n, _ in steered])),
                     "in_key_unsteered": float(np.nanmedian([in_key(n, key) for n, _ in plain]))})
    return {"rows": rows}


def style_table(b: Bench) -> dict:
    if STYLE not in b.spec.names:
        return {"skipped": "the model has no style control"}
    train = b.corpus.files("train")
    labels = [style_labels([b.corpus.paths[i]]) for i in train]
    models = {}
    for style in b.spec.styles:
        seqs = [np.asarray(b.corpus.sequence(i), np.int64)
                for i, lab in zip(train, labels, strict=True) if lab == (style,)]
        if seqs:
            models[style] = NGram(seqs, b.events.size, 5)
    rows = []
    for style in models:
        gen = b.generate({"style": style})
        hits = 0
        for row in gen.tokens:
            cont = np.asarray(row[gen.seed_len:], np.int64)
            nll = {s: score(m, [cont])["loss"] for s, m in models.items()}
            hits += min(nll, key=nll.get) == style
        rows.append({"style": style, "scored_best_by_its_ngram": hits / len(gen.tokens)})
    return {"rows": rows, "method": "lowest NLL per token under each style's 5-gram"}


def instrument_table(b: Bench, ensembles: list[str]) -> dict:
    """Per ensemble: the share of pieces whose programs (decoded as ``composer generate``
    writes them: notes before any PROGRAM token play the first asked instrument) lie within
    the asked ones with drums only when asked, the share where every asked instrument
    (and the drums, when asked) is heard, and per asked instrument the share of the pieces'
    whole 5 s windows in which it plays (whether it stays once it entered)."""
    if not b.events.instruments:
        return {"skipped": "the model has no instruments"}
    rows = []
    for text in ensembles:
        ensemble = parse_instruments(text)
        gen = b.generate(instruments=ensemble.programs, drums=ensemble.drums)
        within = every = 0
        parts = [*ensemble.programs, *(["drums"] if ensemble.drums else [])]
        windows: dict = {p: [] for p in parts}
        whole = max(1, int(b.seconds // 5))  # whole 5 s windows in a piece
        for row in gen.tokens:
            cont = np.asarray(row[gen.seed_len:], np.int64)
            notes = b.events.decode(cont, b.clock, ensemble.programs[0]).notes
            programs = set(notes["program"][~notes["is_drum"]].tolist())
            drums = bool(notes["is_drum"].any())
            within += programs <= set(ensemble.programs) and drums <= ensemble.drums
            every += programs == set(ensemble.programs) and drums == ensemble.drums
            for p in parts:
                plays = notes["is_drum"] if p == "drums" else (
                    (notes["program"] == p) & ~notes["is_drum"])
                at = np.unique((notes["start"][plays] // 5).astype(np.int64))
                windows[p].append(float((at < whole).sum()) / whole)
        n = len(gen.tokens)
        rows.append({"asked": text, "within": within / n, "every": every / n,
                     "windows": {str(p): float(np.mean(w)) for p, w in windows.items()}})
    return {"rows": rows}


def step_cost(b: Bench) -> dict:
    """Steps/s drawing with the density and key feedback and without (same plan)."""
    out = {}
    for name, steer in (("with feedback", True), ("without", False)):
        b.steer = steer
        t = time.perf_counter()
        gen = b.generate({"density": 4.0, "key": "C major"})
        steps = sum(len(r) - gen.seed_len for r in gen.tokens) / len(gen.tokens)
        out[name] = steps / (time.perf_counter() - t)
    b.steer = True
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--densities", default=",".join(f"{d:g}" for d in DENSITIES))
    ap.add_argument("--keys", default=",".join(TARGET_KEYS))
    ap.add_argument("--instruments", default=";".join(ENSEMBLES),
                    help="ensembles separated by ';'")
    ap.add_argument("--no-steer", dest="steer", action="store_false")
    ap.add_argument("--no-recall", dest="recall", action="store_false",
                    help="the model alone, without its recall")
    ap.add_argument("--rng-seed", type=int, default=0)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    b = Bench(args.checkpoint, args.corpus, args.pieces, args.seconds, args.rng_seed,
              args.engine, args.steer, args.recall)
    if not b.spec.width:
        sys.exit(f"{args.checkpoint}: the model was trained without controls")
    result: dict = {"checkpoint": args.checkpoint, "pieces": args.pieces,
                    "seconds": args.seconds, "steer": args.steer, "recall": args.recall,
                    "controls": b.spec.to_dict(), "load": os.getloadavg()}
    if "density" in b.spec.names:
        result["density"] = density_table(b, [float(d) for d in args.densities.split(",")])
    if "pitch-classes" in b.spec.names:
        result["key"] = key_table(b, args.keys.split(","))
    result["style"] = style_table(b)
    result["instruments"] = instrument_table(b, args.instruments.split(";"))
    result["steps_per_second"] = step_cost(b)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(r: dict) -> None:
    """The obedience table in Markdown."""
    print(f"{r['checkpoint']}: {r['pieces']} pieces x {r['seconds']:g} s per request, "
          f"feedback {'on' if r['steer'] else 'off'}, load {r['load'][0]:.1f}")
    if "density" in r:
        d = r["density"]
        print(f"density: Spearman {d['spearman']:.3f} (target >= 0.95), median relative "
              f"error {d['median_relative_error']:.1%} (target <= 20%)")
        print("| asked (notes/s) | median produced |\n|---|---|")
        for row in d["rows"]:
            print(f"| {row['asked']:g} | {row['median_produced']:.2f} |")
        print("| plan window | asked | median produced | error (target <= 25%) |\n"
              "|---|---|---|---|")
        for row in d["plan"]:
            print(f"| {row['window']} | {row['asked']:.2f} | {row['median_produced']:.2f} | "
                  f"{row['relative_error']:.0%} |")
    if "key" in r:
        print("| key | in scale, steered (median / worst) | unsteered |\n|---|---|---|")
        for row in r["key"]["rows"]:
            print(f"| {row['key']} | {row['in_key_steered']:.3f} / {row['worst_steered']:.3f} "
                  f"| {row['in_key_unsteered']:.3f} |")
    for name in ("style", "instruments"):
        if "skipped" in r[name]:
            print(f"{name}: skipped ({r[name]['skipped']})")
    for row in r["style"].get("rows", []):
        print(f"style {row['style']}: {row['scored_best_by_its_ngram']:.0%} of pieces scored "
              "best by its own 5-gram (target >= 90%)")
    for row in r["instruments"].get("rows", []):
        print(f"instruments {row['asked']!r}: {row['within']:.0%} of pieces play only the asked "
              f"instruments (drums only when asked), {row['every']:.0%} play every one; "
              "5 s windows each plays in: " + ", ".join(
                  f"{k} {v:.0%}" for k, v in row["windows"].items()))
    sps = r["steps_per_second"]
    print("steps/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in sps.items()))


if __name__ == "__main__":
    main()
