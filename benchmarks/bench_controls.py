"""How well a model trained with controls obeys them (issue 13's obedience table).

Usage::

    python benchmarks/bench_controls.py CHECKPOINT CORPUS [--pieces 10] [--seconds 30]
        [--keys "C major,A minor,..."] [--rng-seed 0] [--engine auto] [--json OUT.json]

CORPUS is the model's training corpus (a prepared cache or its MIDI folder). Every piece is
generated from the start context (no seed), ``--pieces`` per request in one batch.

- **density**: 5 requests at the 10th, 30th, 50th, 70th and 90th percentile of the corpus's
  per-piece density (notes / seconds); produced density = onsets / seconds of the
  continuation. Reported: Spearman's rank correlation of produced against requested over
  all pieces (target >= 0.9) and the median relative error |produced - asked| / asked
  (target <= 25%).
- **key**: 4 keys: the corpus's most common major and minor key and its rarest major and
  minor key (each corpus piece's key is the one whose profile, :func:`~composer.steering.
  key_profile`, correlates best with its pitch-class histogram). Reported per key: the share
  of notes in the key's scale (:func:`~composer.controls.plan.key_scale`) steered and unsteered
  (the same model, no controls), the corpus median for pieces in that mode (target: steered
  at least that), and the largest change of any other statistic's overlap with the corpus
  (:func:`~composer.evaluation.musicstats.compare_sets`, pitch-class statistics left out; target
  <= 0.1) against the unsteered model's.
- **style** (a model with styles): each style's pieces are classified by the nearest corpus
  style centroid of (notes per second, mean pitch, pitch spread, mean note length),
  standardised; reported: the share classified as the style asked for, steered and not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from composer.controls.features import STYLE, style_labels
from composer.controls.plan import key_profile, key_scale, make_plan
from composer.corpus.cache import CorpusConfig
from composer.corpus.facts import Guards
from composer.corpus.sources import open_or_prepare
from composer.evaluation.musicstats import compare_sets
from composer.generation.config import SampleConfig
from composer.generation.loop import generate
from composer.model.checkpoint import load_checkpoint
from composer.tokens.beats import clock_from

PERCENTILES = (10, 30, 50, 70, 90)
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
                 rng_seed: int, engine: str) -> None:
        self.ckpt = load_checkpoint(checkpoint)
        self.events, self.spec = self.ckpt.events, self.ckpt.model_config.controls
        kind = self.events.kind  # a MIDI folder is prepared with the model's vocabulary
        self.corpus = open_or_prepare(corpus, CorpusConfig(vocabulary=kind, **{
            "notes" if self.events.is_notes else "events": self.events.config}))
        if self.corpus.events != self.events:
            sys.exit(f"{corpus}: not prepared with the model's vocabulary")
        self.clock = clock_from(self.ckpt.data.get("tempo"))
        self.guards = Guards.from_dict(self.ckpt.data.get("guards"))
        self.pieces, self.seconds, self.rng_seed, self.engine = pieces, seconds, rng_seed, engine
        rng = np.random.default_rng(0)
        files = np.arange(len(self.corpus.paths))
        self.ref_files = np.sort(rng.permutation(files)[:MAX_REFERENCE])
        self.reference = [self.decode_file(i) for i in self.ref_files]  # (notes, seconds)

    def decode_file(self, i: int) -> tuple[np.ndarray, float]:
        clock = clock_from(int(self.corpus.index["us_per_quarter"][i]))
        tokens = np.asarray(self.corpus.sequence(i), np.int64)
        return self.events.decode(tokens, clock).notes, self.events.seconds_of(tokens, clock)

    def run(self, **flags) -> list[tuple[np.ndarray, float]]:
        """``pieces`` continuations under ``flags`` (none: unsteered): (notes, seconds) each."""
        plan = make_plan(self.spec, flags) if flags else None
        gen = generate(self.ckpt.model, self.events, None, self.pieces,
                       SampleConfig(seconds=self.seconds, max_num=max(64, self.pieces)),
                       self.rng_seed, self.engine, clock=self.clock, guards=self.guards,
                       plan=plan)
        out = []
        for row in gen.tokens:
            cont = row[gen.seed_len:]
            out.append((self.events.decode(cont, self.clock).notes,
                        max(self.events.seconds_of(cont, self.clock), 1e-9)))
        return out


def density_table(b: Bench) -> dict:
    index = b.corpus.index
    per_piece = index["notes"] / np.maximum(index["seconds"], 1e-9)
    asked = np.percentile(per_piece[index["seconds"] > 0], PERCENTILES)
    rows, req, got = [], [], []
    for d in asked:
        produced = [len(n) / s for n, s in b.run(density=float(d))]
        req += [d] * len(produced)
        got += produced
        rows.append({"asked": float(d), "median_produced": float(np.median(produced))})
    req, got = np.array(req), np.array(got)
    return {"rows": rows, "spearman": spearman(req, got),
            "median_relative_error": float(np.median(np.abs(got - req) / req))}


def key_table(b: Bench, keys: list[str] | None) -> dict:
    found = [best_key(n) for n, _ in b.reference]
    counts = {k: found.count(k) for k in KEYS}
    if keys is None:
        major, minor = KEYS[:12], KEYS[12:]
        keys = [max(major, key=counts.get), max(minor, key=counts.get),
                min(major, key=counts.get), min(minor, key=counts.get)]
    mode_median = {}
    for mode in ("major", "minor"):
        shares = [in_key(n, k) for (n, _), k in zip(b.reference, found, strict=True)
                  if k is not None and k.endswith(mode)]
        mode_median[mode] = float(np.median(shares)) if shares else float("nan")
    plain = b.run()
    ref_notes = [n for n, _ in b.reference]
    base = compare_sets([n for n, _ in plain], ref_notes)["features"]
    rows = []
    for key in keys:
        steered = b.run(key=key)
        feats = compare_sets([n for n, _ in steered], ref_notes)["features"]
        drift = max(abs(feats[f]["overlap"] - base[f]["overlap"]) for f in feats
                    if f not in PITCH_STATS and np.isfinite(feats[f]["overlap"])
                    and np.isfinite(base[f]["overlap"]))
        rows.append({"key": key, "corpus_pieces": counts.get(key, 0),
                     "in_key_steered": float(np.nanmedian([in_key(n, key) for n, _ in steered])),
                     "in_key_unsteered": float(np.nanmedian([in_key(n, key) for n, _ in plain])),
                     "corpus_mode_median": mode_median[key.split()[1]],
                     "other_overlap_drift": float(drift)})
    return {"rows": rows}


def style_table(b: Bench) -> dict:
    if STYLE not in b.spec.names:
        return {"skipped": "the model has no style control"}
    labels = [style_labels([b.corpus.paths[i]]) for i in b.ref_files]
    stats = np.stack([style_stats(n, s) for n, s in b.reference])
    scale = stats.std(0) + 1e-9
    centroids = {s: stats[[lab == (s,) for lab in labels]].mean(0) for s in b.spec.styles
                 if any(lab == (s,) for lab in labels)}

    def nearest(x: np.ndarray) -> str:
        return min(centroids, key=lambda s: float(np.linalg.norm((x - centroids[s]) / scale)))

    plain = [nearest(style_stats(n, s)) for n, s in b.run()]
    rows = []
    for style in centroids:
        got = [nearest(style_stats(n, s)) for n, s in b.run(style=style)]
        rows.append({"style": style, "classified_as_asked": got.count(style) / len(got),
                     "unsteered_share": plain.count(style) / len(plain)})
    return {"rows": rows, "method": "nearest corpus-style centroid of 4 standardised stats"}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--pieces", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--keys", help="comma list of 4 keys [default: common and rare ones]")
    ap.add_argument("--rng-seed", type=int, default=0)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    b = Bench(args.checkpoint, args.corpus, args.pieces, args.seconds, args.rng_seed,
              args.engine)
    if not b.spec.width:
        sys.exit(f"{args.checkpoint}: the model was trained without controls")
    result: dict = {"checkpoint": args.checkpoint, "pieces": args.pieces,
                    "seconds": args.seconds, "controls": b.spec.to_dict()}
    if "density" in b.spec.names:
        result["density"] = density_table(b)
    if "pitch-classes" in b.spec.names:
        result["key"] = key_table(b, args.keys.split(",") if args.keys else None)
    result["style"] = style_table(b)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(r: dict) -> None:
    """The obedience table in Markdown."""
    if "density" in r:
        d = r["density"]
        print(f"density: Spearman {d['spearman']:.3f} (target >= 0.9), median relative "
              f"error {d['median_relative_error']:.1%} (target <= 25%)")
        print("| asked (notes/s) | median produced |\n|---|---|")
        for row in d["rows"]:
            print(f"| {row['asked']:.2f} | {row['median_produced']:.2f} |")
    if "key" in r:
        print("| key | corpus pieces | in key, steered | unsteered | corpus median (mode) | "
              "other overlaps' drift |\n|---|---|---|---|---|---|")
        for row in r["key"]["rows"]:
            print(f"| {row['key']} | {row['corpus_pieces']} | {row['in_key_steered']:.3f} | "
                  f"{row['in_key_unsteered']:.3f} | {row['corpus_mode_median']:.3f} | "
                  f"{row['other_overlap_drift']:.3f} |")
    for row in r["style"].get("rows", []):
        print(f"style {row['style']}: {row['classified_as_asked']:.0%} classified as asked "
              f"(unsteered {row['unsteered_share']:.0%})")
    if "skipped" in r["style"]:
        print(f"style: skipped ({r['style']['skipped']})")


if __name__ == "__main__":
    main()
