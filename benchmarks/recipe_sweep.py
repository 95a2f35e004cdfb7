"""Recipe sweep for short CPU training runs: one run per call, compared at equal training tokens.

A lean copy of ``composer.training.loop``'s loop (no checkpoints) that exposes the knobs the CLI
does
not: warm-up as a fraction of the run, the decay shape, weight decay on weight matrices only,
and truncated backprop through time (TBPTT: each batch row walks its pieces in consecutive
windows and carries the LSTM state from one window to the next). Everything else (model,
sampler, augmentation, loss, validation) is composer's own code.

Machine load: the sweep machine is shared, so wall-clock time says little. Each run records
its process CPU time; with ``--threads 1`` tokens per CPU-second is close to what one quiet
core does, and ``RECIPE.md`` converts it to minutes on a quiet 2-core machine.

Validation and test NLL (nats/event) are computed in windows of ``--eval-len`` events (2048:
whole pieces for nearly every file), whatever the training window, so runs with short
training windows are not penalised by short evaluation windows.

Usage (one JSON line per run is appended to ``--out``)::

    nice python benchmarks/recipe_sweep.py CORPUS_CACHE --tokens 3e6 --batch 16 --seq 64 \\
        --lr 3e-3 --warmup 0.05 --decay cos --dropout 0.1 --wd-matrices --name B
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from composer.corpus.cache import Corpus
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens.performance import Vocabulary
from composer.training.config import AugmentConfig, TrainConfig
from composer.training.data import WindowSampler
from composer.training.loop import evaluate


def lr_factor(progress: float, warmup: float, decay: str, floor: float) -> float:
    """Learning rate / peak at ``progress`` in [0, 1] of the run (warm-up is a fraction)."""
    if progress < warmup:
        return (progress + 1e-6) / warmup
    p = (progress - warmup) / max(1e-9, 1 - warmup)
    if decay == "cos":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))
    if decay == "linear":
        return floor + (1 - floor) * (1 - p)
    if decay == "wsd":  # constant, then linear decay over the last 20% of the run
        return 1.0 if p < 0.8 else floor + (1 - floor) * (1 - p) / 0.2
    return 1.0  # "const"


class StreamSampler:
    """TBPTT batches (no augmentation): row b walks the train files in its own shuffled
    order, ``seq_len`` tokens at a time (consecutive windows overlap by the one token that is
    both a target and the next input); the caller keeps the LSTM state across batches."""

    def __init__(self, corpus: Corpus, seq_len: int, batch_size: int, seed: int) -> None:
        self.seq_len, self.rng = seq_len, np.random.default_rng(seed)
        self.seqs = [np.asarray(s, dtype=np.int64) for s in corpus.sequences("train")]
        self.streams = [self._stream() for _ in range(batch_size)]
        self.pos = [0] * batch_size

    def _stream(self) -> np.ndarray:
        return np.concatenate([self.seqs[i] for i in self.rng.permutation(len(self.seqs))])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for b, stream in enumerate(self.streams):
            if self.pos[b] + self.seq_len + 1 > len(stream):
                self.streams[b], self.pos[b] = self._stream(), 0
                stream = self.streams[b]
            rows.append(stream[self.pos[b]: self.pos[b] + self.seq_len + 1])
            self.pos[b] += self.seq_len
        batch = torch.from_numpy(np.stack(rows))  # (B, T + 1)
        return batch[:, :-1], batch[:, 1:]


def param_groups(model: torch.nn.Module, weight_decay: float, matrices_only: bool) -> list:
    """AdamW groups: decay on LSTM/Linear weight matrices only, or on every parameter."""
    if not matrices_only:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed")]
    keep = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not
                                                            n.startswith("embed"))]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": keep, "weight_decay": 0.0}]


def run(args: argparse.Namespace) -> dict:
    """Train one configuration for ``args.tokens`` training tokens; return its record."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = Corpus.open(args.corpus)
    vocab = Vocabulary(corpus.config.events)
    model = ComposerLSTM(ModelConfig(vocab_size=vocab.size, embed_dim=args.embed,
                                     hidden=args.hidden, layers=args.layers,
                                     dropout=args.dropout))
    opt = torch.optim.AdamW(param_groups(model, args.wd, args.wd_matrices), lr=args.lr)
    augment = AugmentConfig() if args.augment else AugmentConfig(transpose=0, stretch=0.0)
    if args.tbptt:
        sampler = StreamSampler(corpus, args.seq, args.batch, args.seed)
    else:
        sampler = WindowSampler(corpus, "train", args.seq, args.batch,
                                augment if augment.enabled else None, args.seed)
    steps = max(1, round(args.tokens / (args.batch * args.seq)))
    warmup = args.warmup_steps / steps if args.warmup_steps else args.warmup
    state, losses = None, []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model.train()
    for step in range(steps):
        if args.warmup_steps:  # today's train.py: fixed warm-up steps, then cosine
            f = lr_factor(step / steps, warmup, args.decay, args.floor) if step >= \
                args.warmup_steps else (step + 1) / args.warmup_steps
        else:
            f = lr_factor(step / steps, warmup, args.decay, args.floor)
        for group in opt.param_groups:
            group["lr"] = args.lr * f
        x, y = sampler.next_batch()  # (B, T) each
        logits, new_state = model(x, state if args.tbptt else None)  # (B, T, V)
        if args.tbptt:
            state = tuple(s.detach() for s in new_state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    eval_cfg = TrainConfig(seq_len=args.eval_len, batch_size=8)
    dev = torch.device("cpu")
    valid = evaluate(model, corpus, "valid", eval_cfg, dev)["loss"]
    test = evaluate(model, corpus, "test", eval_cfg, dev)["loss"]
    tokens = steps * args.batch * args.seq
    return {"name": args.name, "corpus": Path(args.corpus).name, "tokens": tokens,
            "steps": steps, "batch": args.batch, "seq": args.seq, "lr": args.lr,
            "warmup": round(warmup, 4), "decay": args.decay, "floor": args.floor,
            "dropout": args.dropout, "wd": args.wd, "wd_matrices": args.wd_matrices,
            "model": f"{args.layers}x{args.hidden}e{args.embed}", "tbptt": args.tbptt,
            "augment": args.augment and not args.tbptt, "threads": args.threads,
            "cpu_s": round(cpu, 1),
            "wall_s": round(wall, 1), "tokens_per_cpu_s": round(tokens / cpu),
            "train_loss_last50": round(float(np.mean(losses[-50:])), 4),
            "valid": round(valid, 4), "test": round(test, 4)}


QUIET_TOKENS_PER_S = 34_000  # 2x256, batch 64 x 256, 2 quiet threads (issue 11; not re-measured)


def table(path: Path, baselines: dict[str, float]) -> str:
    """The runs in ``path`` as a markdown table; ``baselines``: corpus name -> 5-gram test NLL."""
    lines = ["| run | corpus | model | batch x seq | lr | warm-up | decay (floor) | dropout | "
             "wd | TBPTT | aug | tokens | steps | ~quiet s | valid | test | test vs 5-gram |",
             "|" + " --- |" * 17]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        five = next((v for k, v in baselines.items() if r["corpus"].startswith(k)), None)
        versus = f"{100 * (r['test'] / five - 1):+.0f}%" if five else "?"
        warm = (f"{r['warmup'] * r['steps']:.0f} steps" if r["warmup"] > 1
                else f"{r['warmup']:g}")
        wd = f"{r['wd']} ({'matrices' if r['wd_matrices'] else 'all'})"
        lines.append(
            f"| {r['name']} | {r['corpus'].rsplit('-', 1)[0]} | {r['model']} | "
            f"{r['batch']}x{r['seq']} | {r['lr']:g} | {warm} | {r['decay']} "
            f"({r['floor']:g}) | {r['dropout']:g} | {wd} | {'yes' if r['tbptt'] else 'no'} | "
            f"{'yes' if r['augment'] else 'no'} | "
            f"{r['tokens'] / 1e6:.2f} M | {r['steps']} | {r['tokens'] / QUIET_TOKENS_PER_S:.0f} | "
            f"{r['valid']:.3f} | {r['test']:.3f} | {versus} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?", help="a prepared corpus cache (composer prepare)")
    p.add_argument("--name", default="run")
    p.add_argument("--tokens", type=float, default=3e6, help="training tokens in all")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=float, default=0.05, help="warm-up fraction of the run")
    p.add_argument("--warmup-steps", type=int, default=0, help="fixed warm-up (today's rule)")
    p.add_argument("--decay", choices=["cos", "linear", "wsd", "const"], default="cos")
    p.add_argument("--floor", type=float, default=0.1, help="final lr / peak")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--wd-matrices", action="store_true", help="decay weight matrices only")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--tbptt", action="store_true", help="carry state across windows")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-len", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/recipe_sweep.jsonl"))
    p.add_argument("--table", action="store_true",
                   help="print --out's runs as a markdown table instead of training")
    p.add_argument("--five-gram", action="append", default=[], metavar="CORPUS=NLL",
                   help="5-gram test NLL of a corpus, for --table (repeatable)")
    args = p.parse_args()
    if args.table:
        print(table(args.out, {k: float(v) for k, v in
                               (item.split("=") for item in args.five_gram)}))
        return
    if args.corpus is None:
        p.error("a corpus cache is needed to train")
    record = run(args)
    print(json.dumps(record))
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
