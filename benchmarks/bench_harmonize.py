"""Benchmark the chorale harmonizer on chorales held out by piece (the corpus's test split by
content hash, never trained on), against baselines trained in the same run.

Prints one table:

- **NLL per note** (nats per note of the predicted voices, their holds and rests included,
  summed over the grid cells and divided by the voices' notes): of the alto, tenor and bass
  given the soprano, and of one voice given the other three (mean over the four voices).
  The bidirectional harmonizer scores by the chain rule over the hidden cells in a random
  order, revealing ``--block`` cells per step (block 1 is exact; larger blocks predict a
  block's cells independently, which can only lose information, so the figure is
  conservative). Baselines: a forward-only LSTM over the grid read step by step (soprano,
  alto, tenor, bass at each step; it sees the melody up to now, never after), trained here
  for ``--baseline-minutes``; and an interpolated n-gram per voice over its own last two
  tokens and the other given voices' current tokens.
- **Harmonizations of 20 held-out melodies** (their soprano lines), with Bach's own alto,
  tenor and bass of the same chorales beside them: parallel fifths/octaves and voice
  crossings per 100 beats, share of written notes outside the voice's training range,
  share of beats forming a triad or seventh, pitch-class overlap with the melody's key
  (:mod:`composer.harmony.metrics`); and the seconds to harmonize a 16-bar melody on one
  CPU thread at the default passes (and the figures at other ``--passes``).

Usage: ``python benchmarks/bench_harmonize.py [--checkpoint DIR] [--baseline-minutes M]``.
Timings print ``os.getloadavg()`` beside them: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter, defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from composer.harmony.config import MASK, PITCH0, TOKENS, HarmonySampleConfig
from composer.harmony.corpus import GridPiece, load_grid_corpus
from composer.harmony.grid import note_count
from composer.harmony.melody import infer_key, key_pitch_classes
from composer.harmony.metrics import figures, summarise
from composer.harmony.sample import gibbs
from composer.harmony.store import load_harmonizer
from composer.harmony.train import make_batch

# ------------------------------------------------------------------ bidirectional harmonizer


def chain_nll(model, grid: np.ndarray, hidden: np.ndarray, block: int, bar: int,
              rng: np.random.Generator) -> float:
    """Nats of the ``hidden`` (V, T) cells of ``grid`` by the chain rule in a random order,
    ``block`` cells revealed per step (all steps batched)."""
    cells = np.argwhere(hidden)
    cells = cells[rng.permutation(len(cells))]
    chunks = [cells[i : i + block] for i in range(0, len(cells), block)]
    total = 0.0
    g = torch.from_numpy(grid)
    for start in range(0, len(chunks), 32):
        part = chunks[start : start + 32]
        inputs = g.unsqueeze(0).repeat(len(part), 1, 1)  # (B, V, T)
        for b in range(len(part)):
            later = np.concatenate(chunks[start + b :])  # this chunk and the ones after
            inputs[b, later[:, 0], later[:, 1]] = MASK
        with torch.no_grad():
            logp = torch.log_softmax(model(inputs, bar), dim=-1)  # (B, V, T, K)
        for b, chunk in enumerate(part):
            v, t = torch.from_numpy(chunk[:, 0]), torch.from_numpy(chunk[:, 1])
            total -= float(logp[b, v, t, g[v, t]].sum())
    return total


# ------------------------------------------------------------------ forward-only baseline


class ForwardLSTM(nn.Module):
    """Reads the grid as S1 A1 T1 B1 S2 A2 ... and predicts each cell from those before."""

    def __init__(self, voices: int, hidden: int = 256):
        super().__init__()
        self.voices = voices
        self.embed = nn.Embedding(TOKENS + 1, 64)
        self.voice = nn.Embedding(voices, 16)
        self.lstm = nn.LSTM(80, hidden, 2, batch_first=True, dropout=0.2)
        self.out = nn.Linear(hidden, TOKENS)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        b, v, t = grid.shape
        seq = grid.permute(0, 2, 1).reshape(b, t * v)  # (B, T*V)
        prev = torch.cat([torch.full_like(seq[:, :1], MASK), seq[:, :-1]], dim=1)
        who = (torch.arange(t * v) % v).expand(b, -1)  # the voice of the cell to predict
        x = torch.cat([self.embed(prev), self.voice(who)], dim=-1)  # (B, T*V, 80)
        y, _ = self.lstm(x)
        return self.out(y).reshape(b, t, v, TOKENS).permute(0, 2, 1, 3)  # (B, V, T, K)


def train_forward(pieces, minutes: float, steps_per_beat: int) -> tuple[ForwardLSTM, int]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ForwardLSTM(pieces[0].grid.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < minutes * 60:
        batch = make_batch(pieces, rng, 16, 32 * steps_per_beat, 5, steps_per_beat)
        logits = model(batch.grid)
        keep = batch.target >= 0
        loss = F.cross_entropy(logits[keep], batch.target[keep])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
    return model.eval(), step


def forward_nll(model: ForwardLSTM, grid: np.ndarray, voices: list[int]) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.from_numpy(grid)[None]), dim=-1)[0]  # (V, T, K)
    g = torch.from_numpy(grid)
    return -float(sum(logp[v].gather(-1, g[v][:, None]).sum() for v in voices))


# ------------------------------------------------------------------ n-gram baseline


class NGram:
    """Per voice and set of given voices: P(x | two before), P(x | one before and the given
    voices now), P(x | one before), P(x) and uniform, mixed with fixed weights; counted over
    the train split in all transpositions within a fourth."""

    WEIGHTS = (0.3, 0.35, 0.2, 0.14, 0.01)

    def __init__(self, pieces, voices: int):
        self.c: dict[tuple, defaultdict] = {}
        for piece in pieces:
            for shift in range(-5, 6):
                g = np.where(piece.grid >= PITCH0, np.clip(piece.grid + shift, PITCH0,
                                                           PITCH0 + 127), piece.grid)
                for v in range(voices):
                    others = tuple(u for u in range(voices) if u != v)
                    for given in ((0,), others) if v else (others,):
                        table = self.c.setdefault((v, given), defaultdict(Counter))
                        for t in range(g.shape[1]):
                            for key in self.keys(g, v, t, given):
                                table[key][int(g[v, t])] += 1

    @staticmethod
    def keys(g: np.ndarray, v: int, t: int, given: tuple[int, ...]) -> list[tuple]:
        a = int(g[v, t - 1]) if t else -1
        b = int(g[v, t - 2]) if t > 1 else -1
        now = tuple(int(g[u, t]) for u in given)
        return [(a, b), (a, now), (a,), ()]

    def nll(self, g: np.ndarray, v: int, given: tuple[int, ...]) -> float:
        table, total = self.c[(v, given)], 0.0
        for t in range(g.shape[1]):
            x, p = int(g[v, t]), self.WEIGHTS[-1] / TOKENS
            for w, key in zip(self.WEIGHTS, self.keys(g, v, t, given), strict=False):
                seen = table.get(key)
                if seen:
                    p += w * seen[x] / sum(seen.values())
            total -= math.log(p)
        return total


# ------------------------------------------------------------------ the run


def harmonize_all(model, pieces: list[GridPiece], config: HarmonySampleConfig, spb: int):
    """(grids written under each piece's soprano, seconds)."""
    out, start = [], time.perf_counter()
    for i, piece in enumerate(pieces):
        grid, free = piece.grid.copy(), np.ones(piece.grid.shape, bool)
        free[0] = False  # the soprano is given
        cfg = HarmonySampleConfig(passes=config.passes, temperature=config.temperature,
                                  rng_seed=i)
        out.append(gibbs(model, grid, free, cfg, 1, piece.beats_per_bar)[0])
    return out, time.perf_counter() - start


def table_row(name: str, rows: list[dict]) -> str:
    s = summarise(rows)
    return (f"| {name} | {s['parallels_per_100_beats']:.2f} | {s['crossings_per_100_beats']:.2f}"
            f" | {100 * s['out_of_range_share']:.2f}% | {100 * s['chord_beat_share']:.1f}% | "
            f"{100 * s['key_overlap']:.1f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="harmonizer folder [default: the shipped one]")
    ap.add_argument("--corpus", default="datasets/bach-chorales")
    ap.add_argument("--baseline-minutes", type=float, default=8.0)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--melodies", type=int, default=20)
    ap.add_argument("--passes", default="8,16,32,64,128", help="passes to compare")
    ap.add_argument("--pieces", type=int, default=0, help="score only this many (0: all)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, meta = load_harmonizer(args.checkpoint)
    cfg = model.config
    spb, nv = cfg.steps_per_beat, len(cfg.voices)
    corpus = load_grid_corpus(args.corpus, spb, cfg.voices)
    test, train = corpus.splits["test"], corpus.splits["train"]
    test = test[: args.pieces or len(test)]
    print(f"held out: {len(test)} chorales (test split by content hash); "
          f"harmonizer trained {meta['metrics'].get('minutes')} min, "
          f"{meta['metrics'].get('step')} updates; load {os.getloadavg()}")
    rng = np.random.default_rng(0)
    fwd, fwd_steps = train_forward(train, args.baseline_minutes, spb)
    ngram = NGram(train, nv)
    nll = defaultdict(float)
    notes = defaultdict(int)
    for piece in test:
        g, bar = piece.grid, piece.beats_per_bar
        counts = note_count(g)
        atb = np.zeros_like(g, bool)
        atb[1:] = True
        nll["bi_atb"] += chain_nll(model, g, atb, args.block, bar, rng)
        nll["fw_atb"] += forward_nll(fwd, g, list(range(1, nv)))
        nll["ng_atb"] += sum(ngram.nll(g, v, (0,)) for v in range(1, nv))
        notes["atb"] += int(counts[1:].sum())
        for v in range(nv):
            one = np.zeros_like(g, bool)
            one[v] = True
            nll["bi_one"] += chain_nll(model, g, one, args.block, bar, rng)
            nll["fw_one"] += forward_nll(fwd, g, [v])
            others = tuple(u for u in range(nv) if u != v)
            nll["ng_one"] += ngram.nll(g, v, others)
        notes["one"] += int(counts.sum())
    print(f"\nNLL per note (nats), {len(test)} held-out chorales, {notes['atb']} A/T/B notes")
    print("| model | A,T,B given S | one voice given three |")
    print("|---|---|---|")
    for key, name in (("bi", f"bidirectional harmonizer (block {args.block})"),
                      ("fw", f"forward-only LSTM given the melody ({args.baseline_minutes:g} "
                             f"min, {fwd_steps} updates)"),
                      ("ng", "n-gram (interpolated, per voice)")):
        print(f"| {name} | {nll[key + '_atb'] / notes['atb']:.3f} | "
              f"{nll[key + '_one'] / notes['one']:.3f} |")
    melodies = test[: args.melodies]
    scales = [key_pitch_classes(*infer_key(p.score.parts[0].notes)) for p in melodies]
    bach = [figures(p.grid, spb, cfg.ranges, range(1, nv), s)
            for p, s in zip(melodies, scales, strict=True)]
    results = {}
    print(f"\nHarmonizations of {len(melodies)} held-out melodies (soprano given)")
    print("| harmonization | parallel 5ths/8ves per 100 beats | crossings per 100 beats | "
          "out of range | triad/seventh beats | key overlap |")
    print("|---|---|---|---|---|---|")
    print(table_row("Bach", bach))
    timing = []
    for passes in [int(p) for p in args.passes.split(",")]:
        grids, seconds = harmonize_all(model, melodies, HarmonySampleConfig(passes=passes), spb)
        rows = [figures(g, spb, cfg.ranges, range(1, nv), s)
                for g, s in zip(grids, scales, strict=True)]
        results[passes] = summarise(rows)
        mark = " (default)" if passes == HarmonySampleConfig().passes else ""
        print(table_row(f"harmonizer, {passes} passes{mark}", rows))
        timing.append((passes, seconds / len(melodies)))
    grid = np.concatenate([p.grid for p in test], axis=1)[:, : 64 * spb]  # 16 bars of 4/4
    free = np.ones(grid.shape, bool)
    free[0] = False
    start = time.perf_counter()
    gibbs(model, grid, free, HarmonySampleConfig(rng_seed=0), 1, 4)
    seconds = time.perf_counter() - start
    print(f"\nTime to harmonize a 16-bar melody (held-out sopranos, {note_count(grid)[0]} notes) "
          f"on one "
          f"CPU thread at {HarmonySampleConfig().passes} passes: {seconds:.2f} s "
          f"(load {os.getloadavg()})")
    print("per held-out melody: " + ", ".join(f"{p} passes {s:.2f} s" for p, s in timing))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"nll": dict(nll), "notes": dict(notes), "passes": results,
                       "bach": summarise(bach), "seconds_16_bars": seconds}, f, indent=1)


if __name__ == "__main__":
    main()
