"""Generation: continue a seed with a trained model, token ids in and token ids out.

The seed (a MIDI file's opening, a pitch list, or the start context) goes through the LSTM
once, in one forward call, to set the recurrent state; then events are drawn one at a time
for all ``num`` continuations in one batch, carrying ``(h, c)`` forward. The prefix is
never re-run.

**Sampling.** Every path draws through :func:`filter_logits` (silence guard, temperature,
top-k, top-p) and :func:`draw` (Gumbel-max), from the private
:mod:`composer.generation.processors`. The
Gumbel noise is counter-based: a hash of (row seed, step, token id), so row ``i`` of
``rng_seed=S`` draws exactly what a single run with ``rng_seed=S+i`` draws, on any device
and inside a CUDA graph.

**Limits.** Before anything is allocated, ``num`` and the length are checked against
``SampleConfig.max_num`` / ``max_seconds`` (raised on purpose) and the memory the batch
needs (:func:`memory_needed`) against the free memory. Ctrl-C raises
:class:`GenerationInterrupted` carrying the rows drawn so far.

**Guards** (:mod:`composer.generation.processors`, one class per vocabulary): a shift that would
stretch a
silence past ``max_silence_seconds`` is masked; a sounding pitch is never struck again; no
note starts while ``max_polyphony`` notes sound; no note lasts past ``max_note_seconds``
(performance events: its NOTE_OFF is forced; beat vocabulary: longer DURATIONs are masked);
the beat vocabulary's grammar holds (a DURATION right after each PITCH, nowhere else).
Polyphony and note length default to the guards measured on the training corpus
(``guards``); a performance-event model without them, given no limit, samples under the old
rules (the silence guard only, notes clipped at 5 s on decoding), token for token.

**Paths** (``engine``): ``plain`` calls ``model.step`` (``nn.LSTM``) once per event;
``fused`` is a hand-written cell: the embedding and layer 0's input weights folded into one
``(V, 4H)`` table, then one ``addmm`` per layer on pre-concatenated ``[W_ih | W_hh]``;
``int8`` is the fused cell with its matrices quantized by ``quantize_dynamic``. On CUDA the
fused step, sampling and guards are captured in a CUDA graph, ``CHUNK`` steps per replay.
The steppers are in the private :mod:`composer.model.steppers`; seeds and files in
:mod:`composer.generation.output`.

**Controls** (a model trained with them; :mod:`composer.controls.plan`): a
:class:`~composer.controls.plan.ControlPlan` gives control vectors over generated time. Each step
feeds every row the vector of the segment its own music time has reached (the row's shift
sum since the seed: TIME_SHIFTs, or SHIFT beats at ``clock``'s tempo), so a schedule
switches at the right second in each row, on every path and inside the CUDA graph. The seed
is read under the plan's first segment. No plan: the same operations as before controls.
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from composer.controls.plan import ControlPlan
from composer.core.device import free_memory
from composer.core.messages import GenerateError, check_seed
from composer.corpus.facts import Guards
from composer.generation.config import CHUNK, SampleConfig
from composer.generation.processors import (
    MASK32,
    Track,
    draw,
    filter_logits,
    gumbel_noise,
    make_rules,
    max_note_seconds,
)
from composer.model.config import MEMORY_SHARE
from composer.model.lstm import ComposerLSTM
from composer.model.steppers import Stepper, cuda_graph, inference, make_stepper
from composer.tokens.beats import DEFAULT_CLOCK, Clock
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, vocabulary_of

NO_GUARDS = Guards()  # no measured guards: no polyphony limit, notes up to 5 s



# ---------------------------------------------------------------------------- sampling


def start_tokens(event_config: EventConfig | Events) -> np.ndarray:
    """The context of an unseeded continuation: one VELOCITY token, the bin of
    DEFAULT_VELOCITY (a mid bin; encoded pieces carry one before their first note)."""
    return vocabulary_of(event_config).start_tokens()


# ---------------------------------------------------------------------------- the loop


class _Schedule:
    """A :class:`ControlPlan` on the device: ``starts`` (S,) in absolute music steps of the
    rows, ``values`` (S, C)."""

    def __init__(self, plan: ControlPlan, now0: int, sps: float, device: torch.device) -> None:
        steps = np.rint(plan.starts * sps).astype(np.int64) + now0
        self.starts = torch.as_tensor(steps, device=device)  # (S,)
        self.values = torch.as_tensor(plan.values, dtype=torch.float32, device=device)

    def at(self, now: torch.Tensor) -> torch.Tensor:
        """(B, C): each row's control vector at its time ``now`` (B,)."""
        return self.values[torch.searchsorted(self.starts, now, right=True) - 1]


class _Loop(NamedTuple):
    logits: torch.Tensor  # (B, V) for the next draw
    state: tuple[torch.Tensor, ...]  # the stepper's
    track: Track  # the guards' (composer.generation.processors)
    step: torch.Tensor  # (1,) int64: events drawn so far


def _advance(rules: Any, stepper: Stepper, lp: _Loop, noise: torch.Tensor | None,
             schedule: _Schedule | None = None) -> tuple[_Loop, torch.Tensor]:
    """Draw one event per row with ``noise`` (B, V) among those ``rules`` (the guards of
    :mod:`composer.generation.processors`) allow, step the model (with the controls of ``schedule``
    at each
    row's time after the event): (loop, tokens (B,))."""
    tok = draw(filter_logits(lp.logits, rules.config, rules.banned(lp.track)), noise,
               rules.config)  # (B,)
    if schedule is None:
        logits, state = stepper.step(tok, lp.state)
        return _Loop(logits, state, rules.update(lp.track, tok), lp.step), tok
    track = rules.update(lp.track, tok)
    logits, state = stepper.step(tok, lp.state, schedule.at(track.now))
    return _Loop(logits, state, track, lp.step), tok


def _flat(lp: _Loop) -> list[torch.Tensor]:
    return [lp.logits, *lp.state, *lp.track, lp.step]


def _unflat(like: _Loop, ts: list[torch.Tensor]) -> _Loop:
    n = len(like.state)
    return _Loop(ts[0], tuple(ts[1 : 1 + n]), Track(*ts[1 + n : 4 + n]), ts[4 + n])


class _Runner:
    """Draws CHUNK events per :meth:`run` into ``tokens`` (B, CHUNK) (and the logits they
    were drawn from into ``logits`` (B, CHUNK, V) when kept). With ``capture`` the chunk is
    recorded once as a CUDA graph over static buffers and replayed; otherwise the same
    code runs eagerly."""

    def __init__(self, rules: Any, stepper: Stepper, lp: _Loop,
                 keep_logits: bool, capture: bool, schedule: _Schedule | None = None) -> None:
        self.rules, self.stepper, self.replay, self.schedule = rules, stepper, None, schedule
        self.lp = _unflat(lp, [t.clone() for t in _flat(lp)])  # buffers of our own
        B, V = lp.logits.shape
        self.tokens = torch.zeros(B, CHUNK, dtype=torch.long, device=lp.logits.device)
        self.logits = torch.zeros(B, CHUNK, V, device=lp.logits.device) if keep_logits else None
        if capture:
            self.replay = cuda_graph(self._chunk_in_place, _flat(self.lp))

    def _chunk(self, lp: _Loop) -> _Loop:
        noise = None
        if self.rules.config.temperature > 0:
            noise = gumbel_noise(self.rules.keys, lp.step, CHUNK, lp.logits.shape[1])
        tokens, logits = [], []
        for j in range(CHUNK):
            logits.append(lp.logits)
            lp, tok = _advance(self.rules, self.stepper, lp,
                               None if noise is None else noise[:, j], self.schedule)
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


@dataclass
class Generation:
    """Token ids drawn by :func:`generate`."""

    tokens: list[np.ndarray]  # per row: seed + continuation (int64); rows may differ in length
    seed_len: int  # tokens of the seed (start context included) at the front of each row
    rng_seed: int  # row i used rng_seed + i
    engine: str  # path that drew them, e.g. "int8" or "fused+cuda-graph"
    logits: torch.Tensor | None  # (B, T, V) logits of each drawn event, when asked for
    max_note_seconds: float = 5.0  # the longest-note guard it was drawn under


class GenerationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`generate`: ``generation`` holds what every row drew until then
    (None when nothing was drawn yet); :func:`composer.generation.output.compose` adds ``outputs``,
    the partial files it wrote."""

    def __init__(self, generation: Generation | None) -> None:
        super().__init__("generation interrupted")
        self.generation = generation
        self.outputs: list = []


def memory_needed(model: ComposerLSTM, num: int, config: SampleConfig,
                  keep_logits: bool = False) -> int:
    """Bytes a generation of ``num`` rows is planned to need at most (an estimate, on the
    side of too much): the drawn tokens three times over (chunks, joined, rows), the
    per-chunk noise and logits, the recurrent state, and the kept logits if asked for."""
    V, cfg = model.config.vocab_size, model.config
    per_row = (3 * 8 * config.events_per_row()  # int64 tokens
               + 4 * 8 * CHUNK * V  # noise hash (int64) and logits (float) of one chunk
               + 8 * 4 * cfg.layers * cfg.hidden)  # h, c and the fused steps' gates
    if keep_logits:
        per_row += 2 * 4 * config.events_per_row() * V
    return num * per_row + 8 * 4 * V * (cfg.embed_dim + cfg.hidden)  # + the fused tables


def _check_memory(need: int, device: torch.device) -> None:
    if (free := free_memory(device)) is not None and need > MEMORY_SHARE * free:
        raise GenerateError(f"this generation needs about {need / 2**30:.1f} GiB of memory, "
                            f"more than {MEMORY_SHARE:.0%} of the {free / 2**30:.1f} GiB free "
                            f"on {device.type}; ask for fewer (--num) or shorter (--length, "
                            "--events) continuations")


def _rows(chunks: list[torch.Tensor], seed: np.ndarray, config: SampleConfig, events: Events,
          target: int, limit: int) -> list[np.ndarray]:
    """Per row: the seed and its continuation, cut at the event count or at the event that
    reaches the length in music time."""
    out = []
    for row in torch.cat(chunks, 1).cpu().numpy():  # (drawn,) per row
        if config.events:
            row = row[: config.events]
        else:  # up to the event that reaches the length
            reached = np.flatnonzero(np.cumsum(events.token_steps()[row]) >= target)
            row = row[: reached[0] + 1 if reached.size else limit]
        out.append(np.concatenate([seed, row]))
    return out


def generate(model: ComposerLSTM, event_config: EventConfig | Events,
             seed: Sequence[int] | np.ndarray | None = None, num: int = 1,
             config: SampleConfig = SampleConfig(), rng_seed: int | None = None,
             engine: str | Stepper = "auto", cuda_graph: bool | None = None,
             keep_logits: bool = False, threads: int | None = 1,
             progress: Callable[[int, int], None] | None = None, *,
             clock: Clock = DEFAULT_CLOCK, guards: Guards = NO_GUARDS,
             controls: ControlPlan | None = None) -> Generation:
    """Draw ``num`` continuations of ``seed`` (token ids; None: :func:`start_tokens`) in one
    batch; row i uses ``rng_seed + i`` (None: a random seed; else 0..2**63-1).
    ``cuda_graph``: capture the loop as a CUDA graph (None: when the model is on CUDA;
    without CUDA it warns and runs eagerly). ``threads``: torch's CPU threads meanwhile
    (None: unchanged; more than one is many times slower when other work shares the cores).
    ``progress(done, total)`` counts events (``config.events``) or whole seconds of music.
    ``clock``: the tempo of the beat vocabulary's music (seconds <-> steps); ``guards``: the
    limits measured on the training corpus, used where ``config`` leaves them None
    (:func:`composer.generation.processors.make_rules`); ``controls``: the control plan of a model
    with
    controls (see the module docstring). Limits and Ctrl-C: see the module docstring."""
    events = vocabulary_of(event_config)
    V = events.size
    if V != model.config.vocab_size:
        raise GenerateError(f"vocabulary mismatch: the event config has {V} tokens, the "
                            f"model {model.config.vocab_size}")
    if controls is not None and controls.values.shape[1] != model.config.controls.width:
        raise GenerateError(f"the control plan has {controls.values.shape[1]} values per "
                            f"step, the model takes {model.config.controls.width}")
    seed = start_tokens(event_config) if seed is None else np.asarray(seed, dtype=np.int64)
    if seed.ndim != 1 or seed.size == 0:
        raise GenerateError("the seed is empty")
    bad = seed[(seed < 0) | (seed >= V)]
    if bad.size:
        raise GenerateError(f"vocabulary mismatch: seed token id {bad[0]} is outside the "
                            f"model's vocabulary (0..{V - 1})")
    num = config.check_num(num)
    rng_seed = (secrets.randbelow(2**31) if rng_seed is None
                else check_seed(rng_seed, GenerateError, "rng seed"))
    sps = events.steps_per_second(clock)
    target = max(1, round(config.seconds * sps))  # music steps per continuation
    limit = config.events_per_row()
    device = model.head.weight.device
    _check_memory(memory_needed(model, num, config, keep_logits), device)
    chunks, logit_chunks, capture, stepper = [], [], False, None
    try:
        with inference(model, threads):
            stepper = make_stepper(model, engine)
            keys = (torch.arange(num, device=device) + (rng_seed & MASK32)) & MASK32  # (B,)
            rules = make_rules(events, config, keys, clock, guards)
            lp = _prime(model, stepper, rules, torch.as_tensor(seed, device=device), num,
                        controls)
            now0 = int(lp.track.now[0])
            schedule = None if controls is None else _Schedule(controls, now0, sps, device)
            capture = device.type == "cuda" if cuda_graph is None else cuda_graph
            try:
                runner = _Runner(rules, stepper, lp, keep_logits, capture, schedule)
            except (RuntimeError, AssertionError) as e:  # no graph here: the same, eagerly
                warnings.warn(f"CUDA graph capture failed ({e}); generating without it",
                              stacklevel=2)
                runner = _Runner(rules, stepper, lp, keep_logits, False, schedule)
                capture = False
            while True:
                runner.run()
                tokens = runner.tokens.clone()
                if keep_logits:
                    logit_chunks.append(runner.logits.clone())
                chunks.append(tokens)  # last: a chunk counts once it is whole
                drawn = len(chunks) * CHUNK
                if config.events:
                    finished, done, total = drawn >= limit, min(drawn, limit), limit
                else:  # whole seconds of music of the slowest row
                    reached = int(runner.lp.track.now.min()) - now0
                    finished = reached >= target or drawn >= limit
                    total = math.ceil(config.seconds)
                    done = total if finished else int(reached // sps)
                if progress is not None:
                    progress(done, total)
                if finished:
                    break
    except KeyboardInterrupt:
        partial = None
        if chunks:
            partial = Generation(_rows(chunks, seed, config, events, target, limit), len(seed),
                                 rng_seed, stepper.name + "+cuda-graph" * capture, None,
                                 max_note_seconds(events, config, clock, guards))
        raise GenerationInterrupted(partial) from None
    kept = torch.cat(logit_chunks, 1).cpu() if keep_logits else None
    return Generation(_rows(chunks, seed, config, events, target, limit), len(seed), rng_seed,
                      stepper.name + "+cuda-graph" * capture, kept,
                      max_note_seconds(events, config, clock, guards))


def _prime(model: ComposerLSTM, stepper: Stepper, rules: Any, seed: torch.Tensor,
           num: int, controls: ControlPlan | None = None) -> _Loop:
    """Loop state after the seed (T,): one forward for the LSTM state and the logits of the
    first draw (under the plan's first segment), the track replayed token by token, all
    repeated for ``num`` rows."""
    if controls is None:
        logits, (h, c) = model(seed[None])  # (1, T, V); h, c (L, 1, H)
    else:
        first = torch.as_tensor(controls.values[0], dtype=torch.float32, device=seed.device)
        logits, (h, c) = model(seed[None], None, first.expand(1, len(seed), -1))
    track = rules.start()
    for tok in seed.split(1):
        track = rules.update(track, tok)

    def rows(t: torch.Tensor, dim: int = 0) -> torch.Tensor:  # size 1 -> num along dim
        return t.expand(*t.shape[:dim], num, *t.shape[dim + 1 :]).contiguous()

    return _Loop(rows(logits[:, -1]), stepper.from_lstm(rows(h, 1), rows(c, 1)),
                 Track(*map(rows, track)), torch.zeros(1, dtype=torch.long, device=seed.device))
