"""Key fidelity and openings of a model without controls asked (issue 23 items 5 and 6).

Usage::

    python benchmarks/bench_keys.py CHECKPOINT CORPUS [--pieces 20] [--seconds 30]

Generates ``--pieces`` unseeded pieces and as many seeded ones (each seeded with the first
4 s of a test piece) and prints, as JSON: the mean pitch-class histogram overlap (sum of
minima of the normalised histograms, drums left out) of each piece with the corpus's test
pieces taken together (target >= 0.85), the longest silence before an unseeded piece's
first note (target <= 0.5 s), and how many unseeded pieces open with a pitch outside the
range of the test pieces' first pitches.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from composer.corpus.cache import CorpusConfig
from composer.corpus.facts import Guards
from composer.corpus.sources import open_or_prepare
from composer.generation.config import SampleConfig
from composer.generation.loop import generate
from composer.model.checkpoint import find_checkpoint, load_checkpoint
from composer.tokens.beats import clock_from


def histogram(notes: np.ndarray) -> np.ndarray:
    h = np.bincount(notes["pitch"][~notes["is_drum"]] % 12, minlength=12).astype(float)
    return h / max(h.sum(), 1.0)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    ck = load_checkpoint(find_checkpoint(args.checkpoint))
    ev = ck.events
    corpus = open_or_prepare(args.corpus, CorpusConfig(
        vocabulary=ev.kind, **({"notes": ev.config} if ev.is_notes else {"events": ev.config})))
    clock, guards = clock_from(ck.data.get("tempo")), Guards.from_dict(ck.data.get("guards"))
    test = corpus.files("test")
    clocks = {i: clock_from(int(corpus.index["us_per_quarter"][i])) for i in test}
    tokens = {i: np.asarray(corpus.sequence(i), np.int64) for i in test}
    ref_notes = [ev.decode(tokens[i], clocks[i]).notes for i in test]
    reference = histogram(np.concatenate(ref_notes))
    first_ref = [int(n["pitch"][np.argmin(n["start"])]) for n in ref_notes if len(n)]
    config = SampleConfig(seconds=args.seconds, max_num=max(64, args.pieces))
    gen = generate(ck.model, ev, None, args.pieces, config, 0, clock=clock, guards=guards)
    rows = [n for n in (ev.decode(r[gen.seed_len:], clock).notes for r in gen.tokens) if len(n)]
    lo, hi = min(first_ref), max(first_ref)
    firsts = [int(n["pitch"][np.argmin(n["start"])]) for n in rows]
    seeded = []
    for k, i in enumerate(test[: args.pieces]):
        seconds = np.cumsum(ev.token_steps()[tokens[i]]) / ev.steps_per_second(clocks[i])
        n_seed = max(1, int(np.searchsorted(seconds, 4.0)))
        g = generate(ck.model, ev, tokens[i][:n_seed], 1, config, k, clock=clocks[i],
                     guards=guards)
        notes = ev.decode(g.tokens[0][g.seed_len:], clocks[i]).notes
        if len(notes):
            seeded.append(overlap(histogram(notes), reference))
    print(json.dumps({
        "unseeded_overlap": float(np.mean([overlap(histogram(n), reference) for n in rows])),
        "seeded_overlap": float(np.mean(seeded)), "pieces": [len(rows), len(seeded)],
        "opening_silence_max_s": max(float(n["start"].min()) for n in rows),
        "first_pitch_outside_corpus_openings": sum(p < lo or p > hi for p in firsts)}))


if __name__ == "__main__":
    main()
