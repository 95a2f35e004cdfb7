"""The per-step engine behind :mod:`composer.sample`: steppers, sampling, the chunked loop.

- **Steppers** (paths): ``plain`` calls ``model.step`` (``nn.LSTM``) once per event;
  ``fused`` is a hand-written cell: the embedding and layer 0's input weights folded into one
  ``(V, 4H)`` table, then one ``addmm`` per layer on pre-concatenated ``[W_ih | W_hh]``;
  ``int8`` is the fused cell with its matrices quantized by ``quantize_dynamic``.
- **Sampling**: :func:`filter_logits` (silence guard, temperature, top-k, top-p) and
  :func:`draw` (Gumbel-max with counter-based noise from :func:`gumbel_noise`), shared by
  every path.
- **Loop**: ``CHUNK`` steps per iteration; on CUDA each chunk is captured once as a CUDA graph
  and replayed; elsewhere the same code runs eagerly.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from composer import ComposerError
from composer.events import (
    NOTE_OFF,
    NOTE_ON,
    TIME_SHIFT,
    Vocabulary,
)
from composer.model import ComposerLSTM

if TYPE_CHECKING:
    from composer.sample import SampleConfig

ENGINES = ("auto", "plain", "fused", "int8")
# int8 is the CPU default only if its next-event distributions stay within this KL of fp32
# (nats per event, measured by benchmarks/bench_generate.py on Bach chorales).
INT8_KL_THRESHOLD = 0.01
INT8_IS_CPU_DEFAULT = True  # measured KL(int8||fp32) is far below INT8_KL_THRESHOLD
CHUNK = 16  # steps per loop iteration (per CUDA graph replay)
_M32 = 0xFFFFFFFF


class GenerateError(ComposerError):
    """A generation request that cannot be met (bad seed, config, checkpoint or output)."""


# ---------------------------------------------------------------------------- sampling


def filter_logits(logits: torch.Tensor, config: SampleConfig,
                  banned: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, V) / temperature with removed events at -inf (``logits`` itself is never
    modified): ``banned`` (B, V) bool, then all but the top-k (ties with the k-th are kept),
    then top-p (the most likely events whose mass before each is < top_p; the first stays)."""
    t = config.temperature
    out = logits / t if t not in (0, 1) else logits  # (B, V)
    if banned is not None:
        out = out.masked_fill(banned, -math.inf)
    if 0 < config.top_k < out.shape[1]:
        kth = out.topk(config.top_k, dim=1).values[:, -1:]  # (B, 1)
        out = out.masked_fill(out < kth, -math.inf)
    if config.top_p < 1:
        ranked, order = out.sort(dim=1, descending=True)  # (B, V)
        probs = ranked.softmax(dim=1)
        drop = probs.cumsum(dim=1) - probs >= config.top_p  # mass before >= p
        out = out.scatter(1, order, ranked.masked_fill(drop, -math.inf))
    return out


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash of int64 tensors in [0, 2**32) (no overflow)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


@functools.lru_cache(maxsize=16)
def _arange(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device)


@functools.lru_cache(maxsize=16)
def _token_hash(vocab_size: int, device: torch.device) -> torch.Tensor:
    return _mix32(_arange(vocab_size, device) + 0x3C6EF372)


def gumbel_noise(keys: torch.Tensor, step: torch.Tensor | int, count: int,
                 vocab_size: int) -> torch.Tensor:
    """Gumbel(0, 1) noise (B, count, V) for steps ``step .. step+count-1``: a pure function
    of row key (B,) int64 in [0, 2**32), step and token id, so the same on any device, in
    any batch, and inside a CUDA graph (``step`` may be a (1,) tensor). Each (row, step) gets
    a full hash; token ids are folded in by one xor-multiply round (the costly part)."""
    ids = _token_hash(vocab_size, keys.device)  # (V,)
    steps = _arange(count, keys.device) + step  # (S,)
    row = _mix32((_mix32(keys)[:, None] + steps) & _M32)  # (B, S)
    bits = (((row[:, :, None] ^ ids) * 0x6C8E9CF5) & _M32) >> 8  # (B, S, V), 24 bits
    u = bits.float().add_(0.5).mul_(2.0**-24)  # uniform in (0, 1)
    return u.log_().neg_().log_().neg_()  # -log(-log(u))


def draw(filtered: torch.Tensor, noise: torch.Tensor | None, config: SampleConfig
         ) -> torch.Tensor:
    """Token ids (B,) from :func:`filter_logits` output by Gumbel-max with ``noise`` (B, V);
    argmax when the temperature is 0."""
    if config.temperature == 0 or noise is None:
        return filtered.argmax(dim=1)
    return (filtered + noise).argmax(dim=1)


# --------------------------------------------------------------------- steppers (paths)


class PlainStepper:
    """``model.step`` (``nn.LSTM``) once per event. State: ``(h, c)``, each (L, B, H)."""

    name = "plain"

    def __init__(self, model: ComposerLSTM) -> None:
        self.model = model

    def from_lstm(self, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This stepper's state from ``nn.LSTM``'s ``(h, c)``."""
        return h, c

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """tokens (B,) -> logits (B, V) and the new state."""
        return self.model.step(tokens, state)


class FusedStepper:
    """Hand-written LSTM cell, fp32 or (``int8``) dynamically quantized. Gate rows are
    reordered to (i, f, o, g) so one sigmoid covers three gates; layer 0's input product
    (embedding included) is a (V, 4H) table lookup. State: h_0..h_{L-1}, c_0..c_{L-1},
    each (B, H)."""

    def __init__(self, model: ComposerLSTM, int8: bool = False) -> None:
        cfg, lstm, self.int8 = model.config, model.lstm, int8
        self.name, self.L, self.H = ("int8" if int8 else "fused"), cfg.layers, cfg.hidden
        h = cfg.hidden
        perm = torch.cat([torch.arange(2 * h), torch.arange(3 * h, 4 * h),
                          torch.arange(2 * h, 3 * h)]).to(model.head.weight.device)
        with torch.no_grad():
            w, self.bias = [], []  # per matrix: (N, K) weights, (N,) biases (None: in table)
            for layer in range(self.L):
                w_ih, w_hh, b_ih, b_hh = (getattr(lstm, f"{n}_l{layer}")[perm] for n in
                                          ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                if layer == 0:  # token -> layer 0's input gates, biases included
                    self.table = F.linear(model.embed.weight, w_ih, b_ih + b_hh)  # (V, 4H)
                w.append(w_hh if layer == 0 else torch.cat([w_ih, w_hh], 1))
                self.bias.append(None if layer == 0 else b_ih + b_hh)
            w.append(model.head.weight.detach())
            self.bias.append(model.head.bias.detach())
            if int8:
                self.q = _quantize(w, self.bias)
            else:
                self.wt = [t.t().contiguous() for t in w]  # (K, N): the fastest addmm

    def _mm(self, i: int, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, K) @ matrix i + (its bias, or ``add``) -> (B, N)."""
        if self.int8:
            return self.q[i](x) if add is None else self.q[i](x) + add
        return torch.addmm(self.bias[i] if add is None else add, x, self.wt[i])

    def from_lstm(self, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This stepper's state from ``nn.LSTM``'s ``(h, c)`` (each (L, B, H))."""
        return (*h.unbind(0), *c.unbind(0))

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """tokens (B,) -> logits (B, V) and the new state."""
        L, H = self.L, self.H
        x, hs, cs = None, [], []
        for layer in range(L):
            h, c = state[layer], state[L + layer]  # (B, H)
            if layer == 0:
                g = self._mm(0, h, self.table.index_select(0, tokens))  # (B, 4H)
            else:
                g = self._mm(layer, torch.cat([x, h], 1))
            s = torch.sigmoid(g[:, : 3 * H])  # (B, 3H): i, f, o
            c = torch.addcmul(s[:, H : 2 * H] * c, s[:, :H], torch.tanh(g[:, 3 * H :]))
            x = s[:, 2 * H :] * torch.tanh(c)  # (B, H)
            hs.append(x)
            cs.append(c)
        return self._mm(L, x), (*hs, *cs)


def _quantize(weights: list[torch.Tensor], biases: list[torch.Tensor | None]
              ) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Forward functions of per-channel dynamic int8 ``nn.Linear`` of (N, K) weights."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:
        raise GenerateError(f"the int8 path needs torch.ao.quantization ({e})") from None
    mods = nn.ModuleList()
    for w, b in zip(weights, biases, strict=True):
        mod = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        mod.load_state_dict({"weight": w.float().cpu()} | ({} if b is None else {"bias": b}))
        mods.append(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return [m.forward for m in quantize_dynamic(mods, {nn.Linear: per_channel_dynamic_qconfig})]


Stepper = PlainStepper | FusedStepper


def make_stepper(model: ComposerLSTM, engine: str | Stepper = "auto") -> Stepper:
    """The stepper of ``engine`` (see ENGINES; a stepper is returned as it is). ``auto``:
    int8 on CPU when INT8_IS_CPU_DEFAULT, fused fp32 otherwise (int8 is CPU-only)."""
    if isinstance(engine, (PlainStepper, FusedStepper)):
        return engine
    if engine not in ENGINES:
        raise GenerateError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    cpu = model.head.weight.device.type == "cpu"
    if engine == "auto":
        if not (cpu and INT8_IS_CPU_DEFAULT):
            return FusedStepper(model)
        try:
            return FusedStepper(model, int8=True)
        except GenerateError:  # no int8 kernels in this torch build: fp32 is as correct
            return FusedStepper(model)
    if engine == "int8" and not cpu:
        raise GenerateError("the int8 path runs on CPU only")
    return PlainStepper(model) if engine == "plain" else FusedStepper(model, engine == "int8")


@contextmanager
def _inference(model: ComposerLSTM, threads: int | None) -> Iterator[None]:
    """Meanwhile: eval mode, inference mode, and torch's CPU threads set to ``threads``
    (None, or a CUDA model: unchanged)."""
    old, training = torch.get_num_threads(), model.training
    if threads is not None and model.head.weight.device.type == "cpu":
        torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(old)
        model.train(training)


def step_logits(model: ComposerLSTM, stepper: Stepper, tokens: torch.Tensor,
                threads: int | None = 1) -> torch.Tensor:
    """Teacher-forced next-event logits (B, T, V) of tokens (B, T): the first token through
    ``model`` (one forward), then ``stepper`` one token at a time."""
    with _inference(model, threads):
        logits, (h, c) = model(tokens[:, :1])
        out, state = [logits[:, 0]], stepper.from_lstm(h, c)
        for t in range(1, tokens.shape[1]):
            logits, state = stepper.step(tokens[:, t], state)
            out.append(logits)
        return torch.stack(out, dim=1)


# ---------------------------------------------------------------------------- the loop


class _Track(NamedTuple):
    """Music time per row: ``now`` (B,) steps, and per pitch ``until`` (B, P): the step at
    which the pitch falls silent (an upper bound while it sounds)."""

    now: torch.Tensor
    until: torch.Tensor


class _Loop(NamedTuple):
    logits: torch.Tensor  # (B, V) for the next draw
    state: tuple[torch.Tensor, ...]  # the stepper's
    track: _Track
    step: torch.Tensor  # (1,) int64: events drawn so far


class _Rules:
    """Everything constant during one generation: sampling config, row keys, guards (in
    steps) and per-token tables."""

    def __init__(self, config: SampleConfig, vocab: Vocabulary, keys: torch.Tensor,
                 max_note: int, max_silence: int) -> None:
        self.config, self.keys = config, keys
        self.max_note, self.max_silence = max_note, max_silence
        r, dev, B = vocab.ranges, keys.device, keys.shape[0]
        self.n_pitches = len(r[NOTE_ON])
        table = np.zeros((vocab.size, 3), np.int64)  # per token: pitch index, +-1 notes, steps
        for kind, sign in ((NOTE_ON, 1), (NOTE_OFF, -1)):
            table[r[kind], 0], table[r[kind], 1] = np.arange(len(r[kind])), sign
        self.shifts = torch.arange(1, len(r[TIME_SHIFT]) + 1, device=dev)  # (S,)
        table[r[TIME_SHIFT], 2] = self.shifts.cpu().numpy()
        self.table = torch.as_tensor(table, device=dev)  # (V, 3)
        self.pad = (torch.zeros(B, r[TIME_SHIFT].start, dtype=torch.bool, device=dev),
                    torch.zeros(B, vocab.size - r[TIME_SHIFT].stop, dtype=torch.bool, device=dev))

    def update(self, tr: _Track, tok: torch.Tensor) -> _Track:
        """The track after token ids (B,)."""
        p, d, k = self.table.index_select(0, tok).unbind(1)  # (B,) each
        p = p[:, None]
        u = tr.until.gather(1, p)[:, 0]  # (B,)
        u = torch.where(d > 0, tr.now + self.max_note,  # NOTE_ON: sounds max_note at most
                        torch.where(d < 0, torch.minimum(u, tr.now), u))  # NOTE_OFF: silent
        return _Track(tr.now + k, tr.until.scatter(1, p, u[:, None]))

    def banned(self, tr: _Track) -> torch.Tensor:
        """(B, V) bool: the TIME_SHIFTs that would stretch the silence past the limit."""
        silence = (tr.now - tr.until.amax(1))[:, None] + self.shifts  # (B, S) after each
        return torch.cat([self.pad[0], silence > self.max_silence, self.pad[1]], 1)

    def advance(self, stepper: Stepper, lp: _Loop,
                noise: torch.Tensor | None) -> tuple[_Loop, torch.Tensor]:
        """Draw one event per row with ``noise`` (B, V), step the model: (loop, tokens (B,))."""
        tok = draw(filter_logits(lp.logits, self.config, self.banned(lp.track)), noise,
                   self.config)  # (B,)
        logits, state = stepper.step(tok, lp.state)
        return _Loop(logits, state, self.update(lp.track, tok), lp.step), tok


def _flat(lp: _Loop) -> list[torch.Tensor]:
    return [lp.logits, *lp.state, *lp.track, lp.step]


def _unflat(like: _Loop, ts: list[torch.Tensor]) -> _Loop:
    n = len(like.state)
    return _Loop(ts[0], tuple(ts[1 : 1 + n]), _Track(*ts[1 + n : 3 + n]), ts[3 + n])


def _cuda_graph(fn: Callable[[], None], buffers: list[torch.Tensor]) -> Callable[[], None]:
    """Replay function of a CUDA graph of ``fn``, which updates ``buffers`` in place: two
    warm-up runs on a side stream (the buffers are restored after them), then the capture."""
    backup = [t.clone() for t in buffers]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # cuBLAS handles, allocator pools
            fn()
    torch.cuda.current_stream().wait_stream(side)
    for dst, src in zip(buffers, backup, strict=True):
        dst.copy_(src)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


class _Runner:
    """Draws CHUNK events per :meth:`run` into ``tokens`` (B, CHUNK) (and the logits they
    were drawn from into ``logits`` (B, CHUNK, V) when kept). With ``capture`` the chunk is
    recorded once as a CUDA graph over static buffers and replayed; otherwise the same
    code runs eagerly."""

    def __init__(self, rules: _Rules, stepper: Stepper, lp: _Loop,
                 keep_logits: bool, capture: bool) -> None:
        self.rules, self.stepper, self.replay = rules, stepper, None
        self.lp = _unflat(lp, [t.clone() for t in _flat(lp)])  # buffers of our own
        B, V = lp.logits.shape
        self.tokens = torch.zeros(B, CHUNK, dtype=torch.long, device=lp.logits.device)
        self.logits = torch.zeros(B, CHUNK, V, device=lp.logits.device) if keep_logits else None
        if capture:
            self.replay = _cuda_graph(self._chunk_in_place, _flat(self.lp))

    def _chunk(self, lp: _Loop) -> _Loop:
        noise = None
        if self.rules.config.temperature > 0:
            noise = gumbel_noise(self.rules.keys, lp.step, CHUNK, lp.logits.shape[1])
        tokens, logits = [], []
        for j in range(CHUNK):
            logits.append(lp.logits)
            lp, tok = self.rules.advance(self.stepper, lp, None if noise is None else noise[:, j])
            tokens.append(tok)
        self.tokens.copy_(torch.stack(tokens, 1))
        if self.logits is not None:
            self.logits.copy_(torch.stack(logits, 1))
        return lp._replace(step=lp.step + CHUNK)

    def _chunk_in_place(self) -> None:
        for dst, src in zip(_flat(self.lp), _flat(self._chunk(self.lp)), strict=True):
            dst.copy_(src)

    def run(self) -> None:
        """Draw the next CHUNK events of every row."""
        if self.replay is None:
            self.lp = self._chunk(self.lp)
        else:
            self.replay()
