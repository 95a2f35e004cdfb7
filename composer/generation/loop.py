"""Generation: continue a seed with a trained model, token ids in and token ids out.

:func:`generate` is the loop: feed the seed through the LSTM once (one forward call sets the
recurrent state and the logits of the first draw, or on CPU for a seed of a few tokens the
stepper's own steps; the prefix is never re-run), then per step
for all ``num`` continuations in one batch (:func:`_step`): apply the logits processors in
order (the guards and sampling settings of :mod:`composer.generation.processors`, built once
from the :class:`~composer.generation.config.SampleConfig`; the logits they get are already
mixed with the model's recall of the piece so far, :mod:`composer.model.recall`, when it has
one, as it was scored), draw (Gumbel-max with
counter-based noise, or the argmax when greedy: :mod:`composer.generation.noise`), update
the rows' music time (:mod:`composer.generation.track`), step the model, and stop at the
length asked for (:class:`_Stop`). Steps run ``CHUNK`` at a time (:class:`_Chunks`), on CUDA
captured once as a CUDA graph and replayed (not with recall, which runs eagerly); the model
steppers (plain, fused, int8) are behind one interface in :mod:`composer.model.steppers`.

**Limits.** Before anything is allocated, ``num`` and the length are checked against
``SampleConfig.max_num`` / ``max_seconds`` (raised on purpose) and the memory the batch
needs (:func:`memory_needed`) against the free memory. Ctrl-C raises
:class:`GenerationInterrupted` carrying the rows drawn so far.

**Control plans** (a model trained with controls; :mod:`composer.controls.plan`): a
:class:`~composer.controls.plan.ControlPlan` gives control vectors over generated time. Each
step feeds every row the vector of the segment its own music time has reached (the row's
shift sum since the seed), so a schedule switches at the right second in each row, on every
path and inside the CUDA graph. The seed is read under the plan's first segment.
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

from composer.controls.features import DENSITY, PITCH_CLASSES
from composer.controls.plan import ControlPlan
from composer.core.device import free_memory
from composer.core.messages import GenerateError, check_seed
from composer.corpus.facts import Guards
from composer.generation.config import CHUNK, SampleConfig
from composer.generation.ensemble import ensemble_processors
from composer.generation.keyhold import key_processors, keys_for
from composer.generation.noise import Sampler, row_keys
from composer.generation.processors import (
    Processors,
    is_legacy,
    make_processors,
    max_note_seconds,
    steering,
)
from composer.generation.track import Track, Tracker, make_tracker, replay
from composer.model.config import MEMORY_SHARE
from composer.model.lstm import ComposerLSTM
from composer.model.recall import Recall
from composer.model.steppers import (
    Stepper,
    cuda_graph,
    inference,
    make_stepper,
    prime,
    steps_seed,
)
from composer.tokens.beats import DEFAULT_CLOCK, Clock
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, vocabulary_of

NO_GUARDS = Guards()  # no measured guards: no polyphony limit, notes up to 5 s


def start_tokens(event_config: EventConfig | Events) -> np.ndarray:
    """The context of an unseeded continuation: one VELOCITY token, the bin of
    DEFAULT_VELOCITY (a mid bin; encoded pieces carry one before their first note)."""
    return vocabulary_of(event_config).start_tokens()


class _Schedule:
    """A :class:`ControlPlan` on the device: ``starts`` (S,) in absolute music steps of the
    rows, ``values`` (S, C); with style guidance also ``free`` (S, C): the same without the
    style, for the guided rows' twins."""

    def __init__(self, plan: ControlPlan, now0: int, sps: float, device: torch.device,
                 free: np.ndarray | None = None) -> None:
        steps = np.rint(plan.starts * sps).astype(np.int64) + now0
        self.starts = torch.as_tensor(steps, device=device)  # (S,)
        self.values = torch.as_tensor(plan.values, dtype=torch.float32, device=device)
        self.free = None if free is None else torch.as_tensor(free, dtype=torch.float32,
                                                              device=device)

    def at(self, now: torch.Tensor) -> torch.Tensor:
        """(B, C): each row's control vector at its time ``now`` (B,); (2B, C) with
        ``free``: the rows', then their twins'."""
        i = torch.searchsorted(self.starts, now, right=True) - 1  # (B,)
        return self.values[i] if self.free is None else torch.cat([self.values[i],
                                                                   self.free[i]])


def without_style(plan: ControlPlan | None, spec: Any, config: SampleConfig
                  ) -> np.ndarray | None:
    """The plan's values (S, C) with the style unset, when ``config.style_guidance`` > 0
    and the plan asks for a style (None: no guidance)."""
    slot = spec.slices().get("style")
    if (plan is None or slot is None or config.style_guidance <= 0
            or np.isnan(plan.values[:, slot]).all()):
        return None
    free = plan.values.copy()
    free[:, slot] = np.nan
    return free


def _guided(both: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance: ``both`` (2B, V), the rows' logits then their twins'
    without the style: cond + weight * (cond - free), (B, V)."""
    cond, free = both.chunk(2)
    return cond + weight * (cond - free)


class _Parts(NamedTuple):
    """What a step uses, built once."""

    stepper: Stepper
    tracker: Tracker
    processors: Processors
    sampler: Sampler
    schedule: _Schedule | None  # the control plan's vectors (None: no plan)
    guidance: float = 0.0  # style guidance's weight (0: off; else the state has 2B rows)
    recall: Recall | None = None  # the piece so far, recalled (None: the model alone)


class _State(NamedTuple):
    logits: torch.Tensor  # (B, V) for the next draw
    state: tuple[torch.Tensor, ...]  # the stepper's
    track: Track  # the rows' music time
    step: torch.Tensor  # (1,) int64: events drawn so far


def _step(p: _Parts, s: _State, noise: torch.Tensor | None) -> tuple[_State, torch.Tensor]:
    """One event per row: process, draw with ``noise`` (B, V), update, step the model (with
    each row's control vector after the event): (state, tokens (B,))."""
    tok = p.sampler(p.processors(s.logits, s.track), noise)  # (B,)
    if p.processors.observers:
        p.processors.observe(tok, s.track.now)
    track = p.tracker.update(s.track, tok)
    controls = None if p.schedule is None else p.schedule.at(track.now)  # (B or 2B, C)
    if p.guidance:  # each row and its twin without the style step together
        both, state = p.stepper.step(torch.cat([tok, tok]), s.state, controls)  # (2B, V)
        logits = _guided(both, p.guidance)
    else:
        logits, state = p.stepper.step(tok, s.state, controls)  # (B, V)
    if p.recall is not None:  # this moment and the event drawn kept; the next one recalls
        p.recall.add(tok)
        logits = p.recall.mix(logits, p.stepper.top(state)[: len(tok)])
    return _State(logits, state, track, s.step), tok


def _flat(s: _State) -> list[torch.Tensor]:
    return [s.logits, *s.state, *s.track, s.step]


def _unflat(like: _State, ts: list[torch.Tensor]) -> _State:
    n, k = len(like.state), len(Track._fields)
    return _State(ts[0], tuple(ts[1 : 1 + n]), Track(*ts[1 + n : 1 + n + k]), ts[1 + n + k])


class _Chunks:
    """Draws CHUNK events per :meth:`run` into ``tokens`` (B, CHUNK) (and the logits they
    were drawn from into ``logits`` (B, CHUNK, V) when kept). With ``capture`` the chunk is
    recorded once as a CUDA graph over static buffers and replayed; otherwise the same
    code runs eagerly."""

    def __init__(self, parts: _Parts, s: _State, keep_logits: bool, capture: bool) -> None:
        self.parts, self.replay = parts, None
        self.s = _unflat(s, [t.clone() for t in _flat(s)])  # buffers of our own
        B, V = s.logits.shape
        self.tokens = torch.zeros(B, CHUNK, dtype=torch.long, device=s.logits.device)
        self.logits = torch.zeros(B, CHUNK, V, device=s.logits.device) if keep_logits else None
        if capture:
            self.replay = cuda_graph(self._chunk_in_place, _flat(self.s))

    def _chunk(self, s: _State) -> _State:
        noise = self.parts.sampler.noise(s.step, CHUNK, s.logits.shape[1])  # (B, CHUNK, V)
        tokens, logits = [], []
        for step_noise in [None] * CHUNK if noise is None else noise.unbind(1):  # (B, V)
            logits.append(s.logits)
            s, tok = _step(self.parts, s, step_noise)
            tokens.append(tok)
        self.tokens.copy_(torch.stack(tokens, 1))
        if self.logits is not None:
            self.logits.copy_(torch.stack(logits, 1))
        return s._replace(step=s.step + CHUNK)

    def _chunk_in_place(self) -> None:
        for dst, src in zip(_flat(self.s), _flat(self._chunk(self.s)), strict=True):
            dst.copy_(src)

    def run(self) -> torch.Tensor:
        """Draw the next CHUNK events of every row: (B,) each row's music time after them."""
        if self.replay is None:
            self.s = self._chunk(self.s)
        else:
            self.replay()
        return self.s.track.now


def _chunks(parts: _Parts, s: _State, keep_logits: bool, capture: bool
            ) -> tuple[_Chunks, bool]:
    """The chunk runner, captured as a CUDA graph when asked and possible; and whether."""
    try:
        return _Chunks(parts, s, keep_logits, capture), capture
    except (RuntimeError, AssertionError) as e:  # no graph here: the same, eagerly
        warnings.warn(f"CUDA graph capture failed ({e}); generating without it", stacklevel=3)
        return _Chunks(parts, s, keep_logits, False), False


class _Stop:
    """When to stop: after ``config.events`` events, or once the slowest row's music
    reaches ``config.seconds`` (or at the event cap); reports ``progress`` on the way."""

    def __init__(self, config: SampleConfig, sps: float, now0: int,
                 progress: Callable[[int, int], None] | None) -> None:
        self.config, self.sps, self.now0, self.progress = config, sps, now0, progress
        self.target = max(1, round(config.seconds * sps))  # music steps per continuation
        self.limit = config.events_per_row()

    def __call__(self, drawn: int, now: torch.Tensor) -> bool:
        """Whether to stop after ``drawn`` events per row, the rows at music time ``now``."""
        if self.config.events:
            finished, done, total = drawn >= self.limit, min(drawn, self.limit), self.limit
        else:  # whole seconds of music of the slowest row
            reached = int(now.min()) - self.now0
            finished = reached >= self.target or drawn >= self.limit
            total = math.ceil(self.config.seconds)
            done = total if finished else int(reached // self.sps)
        if self.progress is not None:
            self.progress(done, total)
        return finished


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
    per-chunk noise and logits, the recurrent state, recall's moments, and the kept logits if
    asked for."""
    V, cfg = model.config.vocab_size, model.config
    per_row = (3 * 8 * config.events_per_row()  # int64 tokens
               + 4 * 8 * CHUNK * V  # noise hash (int64) and logits (float) of one chunk
               + 8 * 4 * cfg.layers * cfg.hidden  # h, c and the fused steps' gates
               + (4 * cfg.hidden + 8) * cfg.recall.span * cfg.recall.on)  # outputs, events
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
             plan: ControlPlan | None = None) -> Generation:
    """Draw ``num`` continuations of ``seed`` (token ids; None: :func:`start_tokens`) in one
    batch; row i uses ``rng_seed + i`` (None: a random seed; else 0..2**63-1).
    ``cuda_graph``: capture the loop as a CUDA graph (None: when the model is on CUDA;
    without CUDA it warns and runs eagerly). ``threads``: torch's CPU threads meanwhile
    (None: unchanged). ``progress(done, total)`` counts events (``config.events``) or whole
    seconds of music. ``clock``: the tempo of the beat vocabulary's music; ``guards``: the
    limits measured on the training corpus, used where ``config`` leaves them None;
    ``plan``: the control plan of a model with controls. Limits and Ctrl-C: see the module
    docstring. (Fourteen parameters: the library's entry point, called by tests and
    benchmarks with each of them; the commands go through
    :func:`composer.generation.output.compose`.)"""
    events = vocabulary_of(event_config)
    seed, num, rng_seed = _checked(model, events, seed, num, config, rng_seed, plan)
    device = model.head.weight.device
    _check_memory(memory_needed(model, num, config, keep_logits), device)
    chunks, kept, capture, name = [], [], False, ""
    longest = max_note_seconds(events, config, clock, guards)

    def result() -> Generation:
        return Generation(_rows(chunks, seed, config, events, stop.target, stop.limit),
                          len(seed), rng_seed, name, torch.cat(kept, 1).cpu() if kept else None,
                          longest)

    try:
        with inference(model, threads):
            sps = events.steps_per_second(clock)
            stepper = make_stepper(model, engine)
            tracker = make_tracker(events, max(1, round(longest * sps)), device,
                                   sounding=not is_legacy(config, guards))  # else unread
            processors = make_processors(tracker, config, clock, guards,
                                         unseeded=not np.isin(seed, tracker.starts).any())
            recall, spec = model.config.recall, model.config.controls
            steered = plan is not None and plan.asks(spec, DENSITY)  # recall would hold it back
            parts = _Parts(stepper, tracker, processors,
                           Sampler(row_keys(rng_seed, num, device), processors.greedy), None,
                           recall=Recall(recall, num, model.config.hidden, device)
                           if config.recall and recall.on and not steered else None)
            free = without_style(plan, spec, config)
            state = _feed(model, parts, torch.as_tensor(seed, device=device), num, plan,
                          free, config.style_guidance)
            now0 = int(state.track.now[0])
            late = key_processors(keys_for(guards, plan, spec), tracker, config, seed, num,
                                  rng_seed, plan is not None and plan.asks(spec, PITCH_CLASSES))
            late += ensemble_processors(events, config, seed, num, sps, now0, device)
            if plan is not None:
                late += [s for s in [steering(plan, spec, tracker, config, sps, now0)] if s]
                parts = parts._replace(schedule=_Schedule(plan, now0, sps, device, free),
                                       guidance=config.style_guidance * (free is not None))
            parts = parts._replace(processors=processors.with_late(late))
            stop = _Stop(config, sps, now0, progress)
            capture = device.type == "cuda" if cuda_graph is None else cuda_graph
            runner, capture = _chunks(parts, state, keep_logits,  # recall runs eagerly
                                      capture and parts.recall is None)
            name = stepper.name + "+cuda-graph" * capture
            while True:
                now = runner.run()  # CHUNK steps: process, draw, update, step the model
                if keep_logits:
                    kept.append(runner.logits.clone())
                chunks.append(runner.tokens.clone())  # last: a chunk counts once it is whole
                if stop(len(chunks) * CHUNK, now):
                    return result()
    except KeyboardInterrupt:
        kept.clear()
        raise GenerationInterrupted(result() if chunks else None) from None


def _checked(model: ComposerLSTM, events: Events, seed: Sequence[int] | np.ndarray | None,
             num: int, config: SampleConfig, rng_seed: int | None, plan: ControlPlan | None
             ) -> tuple[np.ndarray, int, int]:
    """The seed (T,) int64, ``num`` and the rng seed (drawn when None), checked against
    the model (GenerateError)."""
    V = events.size
    if V != model.config.vocab_size:
        raise GenerateError(f"vocabulary mismatch: the event config has {V} tokens, the "
                            f"model {model.config.vocab_size}")
    if plan is not None and plan.values.shape[1] != model.config.controls.width:
        raise GenerateError(f"the control plan has {plan.values.shape[1]} values per "
                            f"step, the model takes {model.config.controls.width}")
    seed = start_tokens(events) if seed is None else np.asarray(seed, dtype=np.int64)
    if seed.ndim != 1 or seed.size == 0:
        raise GenerateError("the seed is empty")
    bad = seed[(seed < 0) | (seed >= V)]
    if bad.size:
        raise GenerateError(f"vocabulary mismatch: seed token id {bad[0]} is outside the "
                            f"model's vocabulary (0..{V - 1})")
    rng_seed = (secrets.randbelow(2**31) if rng_seed is None
                else check_seed(rng_seed, GenerateError, "rng seed"))
    return seed, config.check_num(num), rng_seed


def _feed(model: ComposerLSTM, parts: _Parts, seed: torch.Tensor, num: int,
          plan: ControlPlan | None = None, free: np.ndarray | None = None,
          guidance: float = 0.0) -> _State:
    """Loop state after the seed (T,): the LSTM state and the logits of the first draw
    (under the plan's first segment), the track replayed token by token, for ``num`` rows;
    with ``free`` (style guidance), the same under its first segment gives the rows' twins
    (the state's rows num..2 num-1). A long seed is read by one forward and its result
    repeated for the rows; a short one by the stepper, every row at once (``steps_seed``)."""
    first = None
    if plan is not None:
        values = plan.values[:1] if free is None else np.stack([plan.values[0], free[0]])
        first = torch.as_tensor(values, dtype=torch.float32, device=seed.device)  # (1|2, C)
    k = 1 if first is None else len(first)

    def rows(t: torch.Tensor, dim: int = 0) -> torch.Tensor:  # each of size k -> k * num
        return t.repeat_interleave(num, dim)

    every = seed[None].expand(k * num, -1)  # (k num, T)
    if steps_seed(parts.stepper, every):
        controls = None if first is None else rows(first)  # (k num, C)
        state = parts.stepper.from_lstm(*model.init_state(k * num))
        tops = []  # for recall: the first row's top output after each seed token
        for tok in every.unbind(1):  # (k num,) each
            last, state = parts.stepper.step(tok, state, controls)  # (k num, V)
            if parts.recall is not None:
                tops.append(parts.stepper.top(state)[0])
        hidden = torch.stack(tops) if tops else None  # (T, H)
    else:
        ctl = None if first is None else first[:, None].expand(-1, len(seed), -1)  # (k, T, C)
        logits, (h, c), out = prime(model, seed[None].expand(k, -1), ctl)  # (k, T, V); (L, k, H)
        last, state = rows(logits[:, -1]), parts.stepper.from_lstm(rows(h, 1), rows(c, 1))
        hidden = out[0]  # (T, H)
    if free is not None:
        last = _guided(last, guidance)  # (num, V)
    if parts.recall is not None:  # the seed's moments, then the first draw's
        parts.recall.prime(hidden[:-1], seed[1:])
        last = parts.recall.mix(last, hidden[-1].expand(num, -1))
    track = replay(parts.tracker, seed)
    return _State(last, state, Track(*map(rows, track)),
                  torch.zeros(1, dtype=torch.long, device=seed.device))
