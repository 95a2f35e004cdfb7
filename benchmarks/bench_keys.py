"""Key fidelity and openings of a model without controls asked (issue 23 items 5 and 6).

Usage::

    python benchmarks/bench_keys.py CHECKPOINT CORPUS [--pieces 20] [--seconds 30]
                                    [--key-hold 0 1]

For each ``--key-hold`` (the :class:`~composer.generation.config.SampleConfig` setting; 0:
the model alone), generates ``--pieces`` unseeded pieces and as many seeded ones (each
seeded with the first 4 s of a test piece) and prints one JSON line:

- ``unseeded`` / ``seeded``: the mean pitch-class histogram overlap (sum of minima of the
  normalised histograms, drums left out) of each piece with the corpus's test pieces taken
  together (the issue's figure; target >= 0.85); ``pooled``: the overlap of all unseeded
  pieces taken together; ``best_shift``: each unseeded piece after the transposition that
  matches best (what the key costs); ``halves``: each unseeded piece's first half against
  its second (does it wander);
- ``opening_silence_max_s``: the longest silence before an unseeded piece's first note
  (target <= 0.5 s); ``first_pitch_outside``: unseeded pieces opening on a pitch outside
  the range the corpus's train pieces open on.

A first line gives the same figures for the corpus's own test pieces (``corpus``): what a
piece of the corpus scores against the pieces taken together.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from composer.corpus.cache import CorpusConfig
from composer.corpus.facts import Guards
from composer.corpus.keys import corpus_keys
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


def halves(notes: np.ndarray) -> float:
    order = np.argsort(notes["start"], kind="stable")
    m = len(order) // 2
    return overlap(histogram(notes[order[:m]]), histogram(notes[order[m:]]))


def best_shift(h: np.ndarray, reference: np.ndarray) -> float:
    return max(overlap(np.roll(h, k), reference) for k in range(12))


def figures(pieces: list[np.ndarray], reference: np.ndarray) -> dict[str, float]:
    hists = [histogram(n) for n in pieces]
    return {"unseeded": float(np.mean([overlap(h, reference) for h in hists])),
            "pooled": overlap(histogram(np.concatenate(pieces)), reference),
            "best_shift": float(np.mean([best_shift(h, reference) for h in hists])),
            "halves": float(np.mean([halves(n) for n in pieces if len(n) >= 16]))}


def first_pitch(notes: np.ndarray) -> int:
    return int(notes["pitch"][np.argmin(notes["start"])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--key-hold", type=float, nargs="+", default=[0.0, SampleConfig.key_hold])
    ap.add_argument("--no-recall", dest="recall", action="store_false",
                    help="sample the model alone, without its recall")
    args = ap.parse_args()
    ck = load_checkpoint(find_checkpoint(args.checkpoint))
    ev = ck.events
    corpus = open_or_prepare(args.corpus, CorpusConfig(
        vocabulary=ev.kind, **({"notes": ev.config} if ev.is_notes else {"events": ev.config})))
    clock, guards = clock_from(ck.data.get("tempo")), Guards.from_dict(ck.data.get("guards"))
    keys = corpus_keys(corpus.tokens, corpus.index, corpus.events, corpus.files("train"))
    test = corpus.files("test")
    clocks = {i: clock_from(int(corpus.index["us_per_quarter"][i])) for i in test}
    tokens = {i: np.asarray(corpus.sequence(i), np.int64) for i in test}
    ref_notes = [n for n in (ev.decode(tokens[i], clocks[i]).notes for i in test) if len(n)]
    reference = histogram(np.concatenate(ref_notes))
    low, high = keys.opening
    print(json.dumps({"corpus": args.corpus, "pieces": len(ref_notes),
                      **figures(ref_notes, reference), "first_pitch_outside": sum(
                          not low <= first_pitch(n) <= high for n in ref_notes)}))
    for hold in args.key_hold:
        config = SampleConfig(seconds=args.seconds, max_num=max(64, args.pieces), key_hold=hold,
                              recall=args.recall)
        gen = generate(ck.model, ev, None, args.pieces, config, 0, clock=clock, guards=guards)
        rows = [n for n in (ev.decode(r[gen.seed_len:], clock).notes for r in gen.tokens)
                if len(n)]
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
            "checkpoint": args.checkpoint, "key_hold": hold, "recall": args.recall,
            "pieces": [len(rows), len(seeded)],
            **figures(rows, reference), "seeded": float(np.mean(seeded)),
            "opening_silence_max_s": max(float(n["start"].min()) for n in rows),
            "first_pitch_outside": sum(not low <= first_pitch(n) <= high for n in rows)}))


if __name__ == "__main__":
    main()
