"""Training speed and memory: composer's training loop vs a bare loop of the same model.

Speed: tokens/s of ``composer.training.loop.train`` (window sampling, augmentation, forward,
backward, clipping, AdamW, logging) against, in the same run on the same device, a bare
loop of the same sizes (embedding + nn.LSTM + linear + cross-entropy + AdamW on random
tokens). Target: ratio >= 0.9.

Memory: peak RSS of a training process on the bundled corpus and on a corpus 20x larger
(the same pieces, each copy made distinct by trailing bytes), each in a fresh process.
The token cache is memory-mapped, so RSS should not grow with the corpus.

    python benchmarks/bench_train.py [--preset small] [--batch 64] [--seq 256] [--steps 60]
                                     [--threads 2] [--device cpu] [--skip-rss]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from composer.core.device import resolve_device
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.model.config import ModelConfig
from composer.training.config import TrainConfig
from composer.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
BACH = ROOT / "datasets" / "bach-chorales"
WARMUP = 5  # steps not timed (allocator and thread-pool warm-up)


def bare_loop(config: ModelConfig, batch: int, seq: int, steps: int, device: torch.device
              ) -> float:
    """Tokens/s of the plain PyTorch loop on random tokens."""
    embed = nn.Embedding(config.vocab_size, config.embed_dim)
    lstm = nn.LSTM(config.embed_dim, config.hidden, config.layers, batch_first=True,
                   dropout=config.dropout if config.layers > 1 else 0.0)
    head = nn.Linear(config.hidden, config.vocab_size)
    modules = nn.ModuleList([embed, lstm, head]).to(device)
    opt = torch.optim.AdamW(modules.parameters(), lr=1e-3)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    start = 0.0
    for i in range(steps + WARMUP):
        if i == WARMUP:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        tokens = torch.randint(0, config.vocab_size, (batch, seq + 1), device=device)
        with autocast:
            out, _ = lstm(embed(tokens[:, :-1]))
            logits = head(out)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch * seq / (time.perf_counter() - start)


def project_loop(corpus: Corpus, config: ModelConfig, batch: int, seq: int, steps: int,
                 device: str) -> float:
    """Tokens/s of composer's own training loop (timed between steps, no evaluation)."""
    times: dict[int, float] = {}

    def progress(step: int, total: int, info: dict) -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(steps=steps + WARMUP, batch_size=batch, seq_len=seq,
                          eval_every=10**9, eval_max_batches=1, log_every=10)
        train(corpus, out, config, cfg, device=device, progress=progress)
    return steps * batch * seq / (times[steps + WARMUP] - times[WARMUP])


def rss_run(cache: str, preset: str, steps: int) -> None:
    """Child process: train a few steps on ``cache``, print peak RSS in MiB."""
    corpus = Corpus.open(cache)
    config = ModelConfig.preset(preset)
    project_loop(corpus, config, 16, 128, steps, "cpu")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def grown_corpus(folder: Path, copies: int) -> Path:
    """``copies`` distinct copies of every bundled piece (trailing bytes change the hash)."""
    for k in range(copies):
        for src in BACH.glob("*.mid"):
            (folder / f"{src.stem}-{k}.mid").write_bytes(src.read_bytes() + bytes(k))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", nargs=2, metavar=("CACHE", "PRESET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_run(args.rss_child[0], args.rss_child[1], 10)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        prepare(BACH, Path(tmp) / "cache", CorpusConfig())
        corpus = Corpus.open(Path(tmp) / "cache")
        config = ModelConfig.preset(args.preset, vocab_size=388)
        print(f"model {args.preset} ({config.layers}x{config.hidden}), batch {args.batch} x "
              f"seq {args.seq}, {args.steps} timed steps, device {device}, "
              f"{torch.get_num_threads()} threads")
        torch.manual_seed(0)
        bare = bare_loop(config, args.batch, args.seq, args.steps, device)
        ours = project_loop(corpus, config, args.batch, args.seq, args.steps, str(device))
        print(f"bare loop        {bare:12,.0f} tokens/s")
        print(f"composer train   {ours:12,.0f} tokens/s")
        print(f"ratio            {ours / bare:12.2f}   (target >= 0.9)")
        if args.skip_rss:
            return
        big = Path(tmp) / "big"
        big.mkdir()
        prepare(grown_corpus(big, 20), Path(tmp) / "bigcache", CorpusConfig())
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        rss = {}
        for name, cache in (("bundled", Path(tmp) / "cache"), ("20x", Path(tmp) / "bigcache")):
            events = Corpus.open(cache).tokens.shape[0]
            out = subprocess.run([sys.executable, __file__, "--rss-child", str(cache),
                                  args.preset], capture_output=True, text=True, env=env,
                                 check=True)
            rss[name] = float(out.stdout.split()[-1])
            print(f"peak RSS, {name:8} corpus ({events:>10,} events): {rss[name]:8.1f} MiB")
        print(f"RSS ratio 20x / bundled: {rss['20x'] / rss['bundled']:.2f}")
        shutil.rmtree(big)


if __name__ == "__main__":
    main()
