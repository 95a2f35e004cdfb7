"""Model steppers: one model step per call, every path behind one :class:`Stepper` interface.

- ``plain`` calls ``model.step`` (``nn.LSTM``) once per event;
- ``fused`` is a hand-written cell: the embedding and layer 0's input weights folded into one
  ``(V, 4H)`` table, then one ``addmm`` per layer on pre-concatenated ``[W_ih | W_hh]``;
- ``int8`` is the fused cell with its matrices quantized by ``quantize_dynamic``;
- :func:`cuda_graph` captures any step function as a CUDA graph (the generation loop
  captures its chunks of steps, sampling included, with it).

Every stepper takes the step's control vectors ``(B, C)`` (NaN: unset) for a model with
controls; plain passes them to the model, fused and int8 add their product with layer 0's
control weights (kept in fp32) to the table row. The sampling loop lives in
:mod:`composer.generation.loop`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from composer.core.bounds import check_threads
from composer.core.messages import GenerateError
from composer.model.lstm import ComposerLSTM

ENGINES = ("auto", "plain", "fused", "int8")
# ``auto`` takes int8 on CPU: benchmarks/bench_generate.py measures its next-event
# distributions against fp32 on Bach chorales, and it is the CPU default only while that KL
# stays below this threshold (nats per event); elsewhere (CUDA) it takes fused fp32.
INT8_KL_THRESHOLD = 0.01
# oneDNN's LSTM pays about 10 ms to set up every call, more than torch's plain kernel takes
# for a short input (3x512, 1 thread: 1 token 12 ms against 2, 8 tokens 12 against 5, 64
# tokens 19 against 27; the two agree within 1e-7): seeds shorter than this skip oneDNN.
ONEDNN_FROM = 32
# A seed is read on CPU by the fused or int8 stepper itself, a token at a time for every
# row at once, while rows x tokens stay under this: a forward reads all the fp32 weights
# once a call, which costs more than such steps (3x512, 1 thread, int8; forward, then
# steps: 1 row x 1 token 2.5 ms / 0.23, 1 x 16 8.9 / 3.4, 8 x 4 4.5 / 1.8, 8 x 8 6.1 / 3.7,
# 64 x 1 2.5 / 2.7, 64 x 4 4.4 / 10.9). Past it, one forward and its state copied per row.
STEP_SEED_UNDER = 32


class Stepper(Protocol):
    """What the generation loop sees of a path: its ``name``, its state from ``nn.LSTM``'s
    ``(h, c)``, and one step."""

    name: str

    def from_lstm(self, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This stepper's state from ``nn.LSTM``'s ``(h, c)`` (each (L, B, H))."""
        ...

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...],
             controls: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """tokens (B,) (controls (B, C)) -> logits (B, V) and the new state."""
        ...

    def top(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The top layer's output (B, H) in ``state``: what the logits were computed from."""
        ...


class PlainStepper:
    """``model.step`` (``nn.LSTM``) once per event. State: ``(h, c)``, each (L, B, H)."""

    name = "plain"

    def __init__(self, model: ComposerLSTM) -> None:
        self.model = model

    def from_lstm(self, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This stepper's state from ``nn.LSTM``'s ``(h, c)``."""
        return h, c

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...],
             controls: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """tokens (B,) (controls (B, C)) -> logits (B, V) and the new state."""
        return self.model.step(tokens, state, controls)

    def top(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The top layer's output (B, H) in ``state``."""
        return state[0][-1]


class FusedStepper:
    """Hand-written LSTM cell, fp32 or (``int8``) dynamically quantized. Gate rows are
    reordered to (i, f, o, g) so one sigmoid covers three gates; layer 0's input product
    (embedding included) is a (V, 4H) table lookup. State: h_0..h_{L-1}, c_0..c_{L-1},
    each (B, H)."""

    def __init__(self, model: ComposerLSTM, int8: bool = False) -> None:
        cfg, lstm, self.int8 = model.config, model.lstm, int8
        self.fill, self.wc, e = model.fill_controls, None, cfg.embed_dim
        self.name, self.L, h = ("int8" if int8 else "fused"), cfg.layers, cfg.hidden
        self.gates = (3 * h, h)  # the sigmoid gates (i, f, o) and the cell input g
        perm = torch.cat([torch.arange(2 * h), torch.arange(3 * h, 4 * h),
                          torch.arange(2 * h, 3 * h)]).to(model.head.weight.device)
        with torch.no_grad():
            w, self.bias = [], []  # per matrix: (N, K) weights, (N,) biases (None: in table)
            for layer in range(self.L):
                w_ih, w_hh, b_ih, b_hh = (getattr(lstm, f"{n}_l{layer}")[perm] for n in
                                          ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                if layer == 0:  # token -> layer 0's input gates, biases included
                    if cfg.controls.width:  # controls -> layer 0's gates: (C, 4H)
                        w_ih, self.wc = w_ih[:, :e], w_ih[:, e:].t().contiguous()
                    self.table = F.linear(model.embed.weight, w_ih, b_ih + b_hh)  # (V, 4H)
                w.append(w_hh if layer == 0 else torch.cat([w_ih, w_hh], 1))
                self.bias.append(None if layer == 0 else b_ih + b_hh)
            w.append(model.head.weight.detach())
            self.bias.append(model.head.bias.detach())
            if int8:
                self.q = quantize(w, self.bias)
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

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...],
             controls: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """tokens (B,) (controls (B, C)) -> logits (B, V) and the new state."""
        L = self.L
        x, hs, cs = None, [], []
        for layer in range(L):
            h, c = state[layer], state[L + layer]  # (B, H)
            if layer == 0:
                add = self.table.index_select(0, tokens)  # (B, 4H)
                if self.wc is not None:
                    add = torch.addmm(add, self.fill(controls, tuple(tokens.shape)), self.wc)
                g = self._mm(0, h, add)  # (B, 4H)
            else:
                g = self._mm(layer, torch.cat([x, h], 1))
            ifo, z = g.split_with_sizes(self.gates, 1)  # (B, 3H), (B, H)
            i, f, o = torch.sigmoid(ifo).chunk(3, 1)  # (B, H) each
            c = torch.addcmul(f * c, i, torch.tanh(z))
            x = o * torch.tanh(c)  # (B, H)
            hs.append(x)
            cs.append(c)
        return self._mm(L, x), (*hs, *cs)

    def top(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The top layer's output (B, H) in ``state``."""
        return state[self.L - 1]


def quantize(weights: list[torch.Tensor], biases: list[torch.Tensor | None]
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
        quantized = quantize_dynamic(mods, {nn.Linear: per_channel_dynamic_qconfig})
    return [_direct(m) for m in quantized]


def _direct(mod: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward of a dynamic int8 ``nn.Linear`` as the one kernel call it makes (the
    module's own forward adds a check for traced inputs, which eager generation never has,
    and a dtype cast: together about as much as the kernel at batch 1), else the module's
    forward."""
    packed = getattr(getattr(mod, "_packed_params", None), "_packed_params", None)
    op = getattr(getattr(torch.ops.quantized, "linear_dynamic", None), "default", None)
    if packed is None or op is None or getattr(mod, "version", None) != 4:
        return mod.forward
    kernel = getattr(op, "_op", op)  # the kernel itself, without the check for traced inputs
    return lambda x: kernel(x, packed, True)


def make_stepper(model: ComposerLSTM, engine: str | Stepper = "auto") -> Stepper:
    """The stepper of ``engine`` (see ENGINES; a stepper is returned as it is). ``auto``:
    int8 on CPU (fused fp32 where this torch has no int8 kernels), fused fp32 on CUDA."""
    if not isinstance(engine, str):
        return engine
    if engine not in ENGINES:
        raise GenerateError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    cpu = model.head.weight.device.type == "cpu"
    if engine == "auto":
        if not cpu:
            return FusedStepper(model)
        try:
            return FusedStepper(model, int8=True)
        except GenerateError:  # no int8 kernels in this torch build: fp32 is as correct
            return FusedStepper(model)
    if engine == "int8" and not cpu:
        raise GenerateError("the int8 path runs on CPU only")
    return PlainStepper(model) if engine == "plain" else FusedStepper(model, engine == "int8")


@contextmanager
def inference(model: ComposerLSTM, threads: int | None) -> Iterator[None]:
    """Meanwhile: eval mode, inference mode, and torch's CPU threads set to ``threads``
    (None, or a CUDA model: unchanged)."""
    old, training = torch.get_num_threads(), model.training
    check_threads(threads, GenerateError)
    if threads is not None and model.head.weight.device.type == "cpu":
        torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(old)
        model.train(training)


def prime(model: ComposerLSTM, tokens: torch.Tensor, controls: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``model(tokens, None, controls)``: the logits (B, T, V) and LSTM state of a seed
    (B, T), a short one on CPU through the plain kernel (see ``ONEDNN_FROM``); and the top
    layer's outputs (B, T, H)."""
    short = tokens.device.type == "cpu" and tokens.shape[1] < ONEDNN_FROM
    backend = (torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None,
                                           fp32_precision=None) if short else nullcontext())
    with backend:
        hidden, state = model.features(tokens, None, controls)  # (B, T, H)
        return model.head(hidden), state, hidden


def steps_seed(stepper: Stepper, tokens: torch.Tensor) -> bool:
    """Whether ``stepper`` reads the seed ``tokens`` (rows, T) itself rather than the
    model's forward (see STEP_SEED_UNDER)."""
    return (stepper.name != "plain" and tokens.device.type == "cpu"
            and tokens.numel() < STEP_SEED_UNDER)


def step_logits(model: ComposerLSTM, stepper: Stepper, tokens: torch.Tensor,
                threads: int | None = 1) -> torch.Tensor:
    """Teacher-forced next-event logits (B, T, V) of tokens (B, T): the first token through
    ``model`` (one forward), then ``stepper`` one token at a time."""
    with inference(model, threads):
        logits, (h, c), _ = prime(model, tokens[:, :1])
        out, state = [logits[:, 0]], stepper.from_lstm(h, c)
        for t in range(1, tokens.shape[1]):
            logits, state = stepper.step(tokens[:, t], state)
            out.append(logits)
        return torch.stack(out, dim=1)


def cuda_graph(fn: Callable[[], None], buffers: list[torch.Tensor]) -> Callable[[], None]:
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
