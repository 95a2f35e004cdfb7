"""Generation speed and int8 fidelity: naive ``nn.LSTM`` steps vs the fused and int8 paths.

Speed: steps/s and events/s (= steps/s x batch) at batch 1, 8 and 64, for the default 3x512
size (random weights: speed does not depend on them), on CPU at each thread count asked
for, and on CUDA when present. Two figures per path:

- ``step``: the model step alone (``stepper.step`` per event, the issue's measure);
- ``generate``: the whole loop of :func:`composer.generation.loop.generate` (sampling filters,
  Gumbel-max draw, silence guard, note bookkeeping), on CUDA as a CUDA graph; each call
  (256 events at most) also pays its start: checks, the seed's read (a seed of rows x
  tokens under ``STEP_SEED_UNDER`` by the stepper's own steps, ~0.25 ms for this one-token
  seed; a longer one by one ``nn.LSTM`` forward, ~2.5 ms even for one token), building the
  processors;
- ``loop alone`` (``--marginal``): the same loop without that start: N events over the
  time that a call of 2N takes more than one of N (the fastest of ``--repeat`` calls each);
- ``--rounds N``: the int8 loop against ``bare int8`` (below) in N alternating rounds of
  256 steps each, the loop alone timed by the call's progress calls, by wall and by CPU
  time (the median ratio: it holds on a loaded machine, where the table's bests do not).

``naive`` is ``model.step`` (one ``nn.LSTM`` call per event) in the same run; ``x first``
is against the first path timed (naive by default). ``bare int8`` is the anchor of issue
24: a plain embedding, ``nn.LSTM`` and ``nn.Linear`` head of the same size, dynamically
quantized by ``torch.ao.quantization.quantize_dynamic`` and stepped one event at a time,
with no sampling at all; ``x bare`` is a path's step (and whole loop) against it (target:
loop >= 0.8 at batch 1 and 8, one thread). ``--repeat N`` takes the best of N timings
per figure, the paths interleaved (a shared machine's load moves between figures).

Measured (int8, 1 thread, ``--batches 1 8 --paths int8 --repeat 5 --marginal --rounds 20``,
after the tensor ops per step outside the model went from about 40 to 24; load 4-5,
each run beside one of the previous code, alternating), batch 1 / 8: by CPU time in the
rounds, whole call 0.75-0.76 / 0.88-0.90 and loop alone 0.83 / 0.94-0.96 (before: 0.72 /
0.81-0.84 and 0.78 / 0.84-0.89); the table, in the runs the load disturbed least (``cpu``
>= 0.96), whole call 0.73-0.77 / 0.84-0.94 and loop alone 0.80-0.89 / 0.80-0.90 (before:
0.68-0.70 / 0.82-0.87 and 0.69-0.73 / 0.81-0.92). Then a short seed skipped oneDNN (quiet,
load 0.9, 10 rounds twice, before -> after): whole call 0.73-0.74 -> 0.78 at batch 1 and
0.84-0.85 -> 0.88 at batch 8, loop alone 0.81-0.82 and 0.88-0.91 either way. The whole
call at batch 1 stays below 0.8: the plain forward (~2 ms) and building the processors.

Targets (issue 4), 3x512 at batch 1: fused fp32 >= 900 steps/s, int8 >= 2,500
steps/s on CPU, >= 10,000 steps/s on an H100 (CUDA graph).

Fidelity: KL(int8 || fp32) and KL(fp32 || int8) of the next-event distributions, teacher-
forced over the first ``--window`` events of held-out Bach chorales, for the random 3x512
model, a small model trained briefly here (``--train-seconds``; a random model's
distributions are nearly uniform, which makes its KL meaninglessly small; a 3x512 model
gets only a few dozen steps in a minute on 2 CPU cores) and any ``--checkpoint`` given.

``cpu`` is the CPU time the process got per wall second while timing the step: below 1.0
with one thread, other work had the core part of the time (the figures are wall-clock).

    python benchmarks/bench_generate.py [--threads 1 2] [--train-seconds 45]
                                        [--checkpoint checkpoints/default]
    python benchmarks/bench_generate.py --threads 1 --batches 1 8 --paths int8 --repeat 5
                                        --marginal --rounds 20 --train-seconds 0
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from composer.generation.config import SampleConfig
from composer.generation.loop import CHUNK, generate
from composer.midi.io import load
from composer.model.checkpoint import load_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.model.steppers import INT8_KL_THRESHOLD, FusedStepper, PlainStepper, step_logits
from composer.tokens.performance import EventConfig, encode

ROOT = Path(__file__).resolve().parents[1]
BACH = ROOT / "datasets" / "bach-chorales"
BATCHES = (1, 8, 64)


def rate(fn, seconds: float, min_calls: int = 3, warmup: int = 2) -> tuple[float, float]:
    """Calls per second of ``fn()`` over about ``seconds`` (after ``warmup`` calls), and
    the CPU time this process used per second meanwhile (1.0: one core all the time)."""
    for _ in range(warmup):
        fn()
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    wall = time.perf_counter() - start
    return calls / wall, (time.process_time() - cpu) / wall


def step_rate(model: ComposerLSTM, stepper, batch: int, seconds: float) -> tuple[float, float]:
    """Model steps per second of ``stepper`` alone, and the CPU share (see :func:`rate`)."""
    tok = torch.zeros(batch, dtype=torch.long, device=model.head.weight.device)
    h = model.init_state(batch)
    state = [stepper.from_lstm(*h)]

    def one() -> None:
        _, state[0] = stepper.step(tok, state[0])
        if tok.is_cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        return rate(one, seconds)


class BareInt8(nn.Module):
    """The anchor: embedding, ``nn.LSTM`` and head of ``config``'s size, dynamically
    quantized (int8 LSTM and head), stepped one event at a time; no sampling."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden, config.layers)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def step(self, tok: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tok (B,) -> logits (B, V), new (h, c)."""
        out, state = self.lstm(self.embed(tok)[None], state)  # (1, B, H)
        return self.head(out[0]), state


def bare_step(config: ModelConfig, batch: int) -> Callable[[], None]:
    """One step of :class:`BareInt8` (random weights) at ``batch``, as a function."""
    from torch.ao.quantization import quantize_dynamic

    torch.manual_seed(0)
    bare = quantize_dynamic(BareInt8(config).eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    tok = torch.zeros(batch, dtype=torch.long)
    zero = torch.zeros(config.layers, batch, config.hidden)
    state = [(zero, zero.clone())]

    def one() -> None:
        with torch.inference_mode():
            _, state[0] = bare.step(tok, state[0])

    return one


def generate_rate(model: ComposerLSTM, stepper, batch: int, events: int,
                  seconds: float) -> float:
    """Steps per second of the whole :func:`generate` loop (events per row / wall time), the
    stepper built beforehand, at torch's current thread count."""
    config = SampleConfig(events=events)
    graph = stepper.name != "plain"  # on CUDA: the naive path stays a Python loop

    def run() -> None:
        generate(model, EventConfig(), None, batch, config, rng_seed=0, engine=stepper,
                 cuda_graph=graph, threads=None)

    return events * rate(run, seconds, min_calls=1, warmup=1)[0]


def call_times(model: ComposerLSTM, stepper, batch: int, events: int) -> tuple[float, float]:
    """Wall seconds of one :func:`generate` call of ``events`` and of one of twice as many:
    the events they differ by over the time they differ by is the loop alone, without the
    per-call start (checks, the seed's forward through ``nn.LSTM``, the processors)."""
    times = []
    for n in (events, 2 * events):
        config = SampleConfig(events=n)
        start = time.perf_counter()
        generate(model, EventConfig(), None, batch, config, rng_seed=0, engine=stepper,
                 cuda_graph=stepper.name != "plain", threads=None)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def speed(model: ComposerLSTM, device: str, seconds: float, batches: tuple[int, ...],
          paths: tuple[str, ...], repeat: int, marginal: bool = False) -> None:
    """Print the speed table for ``model`` on ``device`` (on CPU against the bare int8 step).
    Each figure is the best of ``repeat`` timings, the paths interleaved, so that a load
    change on a shared machine hits them alike; ``marginal`` adds the loop alone
    (:func:`marginal_rate`)."""
    engines = [e for e in ("naive", "fused", "int8") if e in paths
               and (e != "int8" or device == "cpu")]
    steppers = {}
    for engine in engines:
        start = time.perf_counter()
        steppers[engine] = (PlainStepper(model) if engine == "naive"
                            else FusedStepper(model, int8=engine == "int8"))
        build = time.perf_counter() - start
        if engine != "naive":
            print(f"  {engine} path built in {build * 1000:.0f} ms")
    print(f"{'batch':>5} {'path':>9} {'step/s':>9} {'x first':>8} {'x bare':>7} {'cpu':>5} "
          f"{'gen step/s':>11} {'x first':>8} {'x bare':>7} {'gen events/s':>13}"
          + (f" {'loop alone':>10} {'x bare':>7}" if marginal else ""))
    for batch in batches:
        bare_fn = bare_step(model.config, batch) if device == "cpu" else None
        bare, best = 0.0, {e: [0.0] * 3 for e in steppers}  # step/s, cpu, gen step/s
        calls = {e: [math.inf, math.inf, 0] for e in steppers}  # fastest of N, of 2N; N
        for _ in range(repeat):
            if bare_fn is not None:
                bare = max(bare, rate(bare_fn, seconds)[0])
            for engine, stepper in steppers.items():
                s, cpu = step_rate(model, stepper, batch, seconds)
                events = int(min(256, max(CHUNK, s * seconds / 2)) // CHUNK * CHUNK)
                g = generate_rate(model, stepper, batch, events, seconds)
                best[engine] = [max(x, y) for x, y in zip(best[engine], (s, cpu, g),
                                                           strict=True)]
                if marginal:
                    one, two = call_times(model, stepper, batch, events)
                    c = calls[engine]
                    c[:] = [min(c[0], one), min(c[1], two), events]
        if bare:
            print(f"{batch:>5} {'bare int8':>9} {bare:>9,.0f} {'':>8} {1:>6.2f}x", flush=True)
        if not best:  # the anchor only
            continue
        base_step, base_gen = next(iter(best.values()))[0], next(iter(best.values()))[2]
        for engine, (s, cpu, g) in best.items():
            one, two, n = calls[engine]
            m = n / max(two - one, 1e-9) if marginal else 0.0  # the loop alone
            xs, xg, xm = (f"{x / bare:>6.2f}x" if bare else f"{'-':>7}" for x in (s, g, m))
            print(f"{batch:>5} {engine:>9} {s:>9,.0f} {s / base_step:>7.1f}x {xs} {cpu:>5.2f} "
                  f"{g:>11,.0f} {g / base_gen:>7.1f}x {xg} {g * batch:>13,.0f}"
                  + (f" {m:>10,.0f} {xm}" if marginal else ""), flush=True)


def rounds(model: ComposerLSTM, batch: int, n: int, steps: int = 256) -> None:
    """Print the int8 loop against the bare int8 step by ``n`` alternating rounds
    (``--rounds``): per round ``steps`` bare steps, then one :func:`generate` call of
    ``steps + CHUNK`` events, whose progress calls (one per chunk) time the loop alone from
    the first chunk's end to the last's. Each figure is the median of the rounds' ratios,
    by wall time and by this thread's CPU time (which other processes' time slices do not
    inflate, so it holds on a loaded machine; cache contention still shows)."""
    bare, stepper = bare_step(model.config, batch), FusedStepper(model, int8=True)
    config, events = SampleConfig(events=steps + CHUNK), steps + CHUNK
    whole: list[list[float]] = [[], []]  # per round: wall, cpu
    alone: list[list[float]] = [[], []]
    marks: list[tuple[float, float]] = []  # (wall, cpu) at each progress call

    def clocks() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    for i in range(n + 1):  # the first round warms up
        t0 = clocks()
        for _ in range(steps):
            bare()
        t1 = clocks()
        marks.clear()
        generate(model, EventConfig(), None, batch, config, rng_seed=0, engine=stepper,
                 threads=None, progress=lambda *_: marks.append(clocks()))
        t2 = clocks()
        if i == 0:
            continue
        for k in (0, 1):  # wall, cpu
            per_step = (t1[k] - t0[k]) / steps  # the bare step
            whole[k].append(per_step / ((t2[k] - t1[k]) / events))
            alone[k].append(per_step / ((marks[-1][k] - marks[0][k]) / steps))
    med = statistics.median
    print(f"{batch:>5} int8 x bare, median of {n} rounds: whole call {med(whole[0]):.2f} wall "
          f"/ {med(whole[1]):.2f} cpu; loop alone {med(alone[0]):.2f} wall / "
          f"{med(alone[1]):.2f} cpu (load {os.getloadavg()[0]:.1f})", flush=True)


def bach_tokens(config: EventConfig) -> list[np.ndarray]:
    """Encoded Bach chorales, sorted by file name."""
    return [encode(load(p).notes, config).astype(np.int64) for p in sorted(BACH.glob("*.mid"))]


def train_briefly(config: ModelConfig, pieces: list[np.ndarray], seconds: float,
                  seq_len: int = 128, batch: int = 16) -> tuple[ComposerLSTM, int, float]:
    """A model trained for ``seconds`` on random windows (AdamW, lr 3e-3): model, steps,
    last loss."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ComposerLSTM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    long = [p for p in pieces if len(p) > seq_len + 1]
    steps, loss, start = 0, float("nan"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        windows = []
        for i in rng.integers(len(long), size=batch):
            at = rng.integers(len(long[i]) - seq_len - 1)
            windows.append(long[i][at : at + seq_len + 1])
        x = torch.as_tensor(np.stack(windows))
        logits, _ = model(x[:, :-1])
        loss_t = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps, loss = steps + 1, loss_t.item()
    return model.eval(), steps, loss


def kl(model: ComposerLSTM, tokens: torch.Tensor) -> tuple[float, float, float, float]:
    """Mean KL(int8||fp32), KL(fp32||int8), max KL(int8||fp32), agreement of argmax;
    teacher-forced over tokens (B, T). fp32 is one full forward (exact fp32)."""
    with torch.inference_mode():
        ref = model(tokens)[0].log_softmax(-1)  # (B, T, V)
    q8 = step_logits(model, FusedStepper(model, int8=True), tokens).log_softmax(-1)
    a = (q8.exp() * (q8 - ref)).sum(-1)  # (B, T)
    b = (ref.exp() * (ref - q8)).sum(-1)
    agree = (q8.argmax(-1) == ref.argmax(-1)).float().mean()
    return a.mean().item(), b.mean().item(), a.max().item(), agree.item()


def fidelity(window: int, files: int, train_seconds: float, checkpoints: list[Path]) -> None:
    """Print int8-vs-fp32 KL on held-out chorales for a random model, a briefly trained
    small one (unless ``train_seconds`` is 0) and the given checkpoints."""
    pieces = bach_tokens(EventConfig())
    held_out = [p[:window] for p in pieces[-files:] if len(p) >= window]
    tokens = torch.as_tensor(np.stack(held_out))  # (files, window)
    print(f"\nKL on the first {window} events of {len(held_out)} held-out chorales "
          f"(nats/event; threshold for int8 as CPU default: {INT8_KL_THRESHOLD}):")
    torch.manual_seed(0)
    models = [("default 3x512, random init", ComposerLSTM(ModelConfig()).eval(), 0, None)]
    if train_seconds > 0:
        model, steps, loss = train_briefly(ModelConfig.preset("small"), pieces[:-files],
                                           train_seconds)
        models.append((f"small 2x256, trained {train_seconds:g} s", model, steps, loss))
    for path in checkpoints:
        ckpt = load_checkpoint(path)
        models.append((f"checkpoint {path} ({ckpt.step} steps)", ckpt.model, 0, None))
    for name, model, steps, loss in models:
        a, b, worst, agree = kl(model, tokens)
        trained = "" if loss is None else f" ({steps} steps, train loss {loss:.2f})"
        print(f"  {name}{trained}: KL(int8||fp32) {a:.2e} mean, {worst:.2e} max; "
              f"KL(fp32||int8) {b:.2e}; argmax agrees {agree:.1%}")
    print(f"  int8 stays the CPU default while every KL(int8||fp32) above is below "
          f"{INT8_KL_THRESHOLD}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=1.0, help="timing per figure")
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    ap.add_argument("--paths", nargs="+", default=["naive", "fused", "int8"],
                    help="paths to time (the first is the 'x first' base)")
    ap.add_argument("--marginal", action="store_true",
                    help="also time the loop alone, without each call's start")
    ap.add_argument("--rounds", type=int, default=0,
                    help="also time the int8 loop against the bare step by alternating rounds")
    ap.add_argument("--repeat", type=int, default=1,
                    help="best of this many timings per figure, paths interleaved")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--files", type=int, default=8, help="held-out chorales for KL")
    ap.add_argument("--train-seconds", type=float, default=45.0,
                    help="training time of the small model for the KL (0: none)")
    ap.add_argument("--checkpoint", type=Path, nargs="*", default=[],
                    help="also measure the KL of these checkpoints (e.g. checkpoints/default)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = ComposerLSTM(ModelConfig()).eval()  # 3x512, embed 256, 388 events
    print(f"torch {torch.__version__}; model 3x512 ({model.num_parameters():,} parameters)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\nCPU, {torch.get_num_threads()} thread(s) (load average {load} on "
              f"{os.cpu_count()} cores):")
        speed(model, "cpu", args.seconds, tuple(args.batches), tuple(args.paths), args.repeat,
              args.marginal)
        if args.rounds:
            for batch in args.batches:
                rounds(model, batch, args.rounds)
    if not torch.cuda.is_available():
        print("\nCUDA (bf16, CUDA-graph steps/s at batch 1 and 64): not measured: no GPU lent")
    else:
        print(f"\nCUDA ({torch.cuda.get_device_name()}):")
        speed(model.cuda(), "cuda", args.seconds, tuple(args.batches), tuple(args.paths),
              args.repeat)
        model.cpu()
    torch.set_num_threads(min(args.threads))
    fidelity(args.window, args.files, args.train_seconds, args.checkpoint)


if __name__ == "__main__":
    main()
