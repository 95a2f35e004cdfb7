"""Private sampling guards of :mod:`composer.generation.loop`, one class per event vocabulary.

Both track music time per row (``Track``) and give, before every draw, the events that
may not be drawn (``banned``, (B, V) bool). They enforce:

- **no re-strike**: a note start (NOTE_ON p / PITCH p) is masked while pitch p sounds;
- **polyphony**: every note start is masked while ``max_polyphony`` notes sound;
- **longest note**: performance events: a TIME_SHIFT that would carry a sounding note past
  ``max_note`` steps is masked, and a note that has reached it must be closed next (only
  NOTE_OFFs of such notes may be drawn); beat vocabulary: DURATIONs longer than
  ``max_note`` are masked;
- **silence**: a shift that would stretch a silence past ``max_silence`` steps is masked;
- **grammar** (beat vocabulary): after a PITCH only a DURATION, elsewhere no DURATION.
- **instruments** (instrument-aware vocabularies): PROGRAM tokens of programs outside the
  sample config's ``instruments`` are masked, and DRUM tokens without ``drums``. Sounding
  pitches are tracked per pitch across instruments, so a unison of two instruments is
  masked like a re-strike, and the polyphony cap counts every instrument (drum hits, having
  no length, are not counted).
  Performance events: a NOTE_OFF of a pitch that is not sounding is masked (decoding
  would ignore it), and so is one in the very step its note began (decoding would stretch
  that note to one step, unseen by the polyphony count).

Masking (rather than closing a sounding note first and then re-striking it) is used
because it never writes a token the model did not choose, keeps the token stream a
faithful record of what was drawn, and works the same way for both vocabularies.
There is always an allowed event: VELOCITY, a shift, or the NOTE_OFF of an overdue note.

A performance-event model without measured guards (trained before they existed) samples
under the old rules, token for token, unless a limit is given (:func:`is_legacy`).
"""
# Drawing one event: the sampling filters and counter-based Gumbel-max noise of
# :mod:`composer.generation.loop` (which re-exports :func:`filter_logits`, :func:`gumbel_noise` and
# :func:`draw`).
#
# The noise is a pure function of (row key, step, token id), so row ``i`` of ``rng_seed=S``
# draws exactly what a single run with ``rng_seed=S+i`` draws, on any device and inside a
# CUDA graph.

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from composer.corpus.facts import DEFAULT_MAX_NOTE_SECONDS, Guards
from composer.tokens import beats as beat
from composer.tokens import performance as perf
from composer.tokens.beats import Clock
from composer.tokens.vocab import Events

NO_LIMIT = 1 << 30  # a polyphony limit that never binds


class Track(NamedTuple):
    """Music time per row: ``now`` (B,) steps; per pitch ``until`` (B, P): the step at
    which it falls silent (an upper bound while it sounds); ``aux``: performance events,
    (B, P) bool, the pitch sounds; beat vocabulary, (B,) the pitch index waiting for its
    DURATION (-1: none)."""

    now: torch.Tensor
    until: torch.Tensor
    aux: torch.Tensor


class _Base:
    """What both vocabularies share: config, row keys, limits, the per-token table."""

    def __init__(self, config: Any, events: Events, keys: torch.Tensor, max_note: int,
                 max_silence: int, max_polyphony: int) -> None:
        self.config, self.keys, self.events = config, keys, events
        self.max_note, self.max_silence = max_note, max_silence
        self.max_polyphony = max_polyphony
        self.vocab = events.vocab
        self.n_pitches = len(events.note_start_ids())
        self.device = keys.device
        self.fixed = torch.as_tensor(instrument_ban(events, config), device=self.device)  # (V,)

    def _shift_ban(self, tr: Track, shifts: torch.Tensor) -> torch.Tensor:
        """(B, S) bool: shifts that would stretch the silence past the limit."""
        silence = (tr.now - tr.until.amax(1))[:, None] + shifts  # (B, S) after each
        return silence > self.max_silence

    def _start_ban(self, sounding: torch.Tensor) -> torch.Tensor:
        """(B, P) bool: note starts masked (pitch sounds, or polyphony reached)."""
        full = sounding.sum(1, keepdim=True) >= self.max_polyphony  # (B, 1)
        return sounding | full


class PerformanceRules(_Base):
    """Guards for performance events (NOTE_ON / NOTE_OFF / TIME_SHIFT / VELOCITY)."""

    def __init__(self, *args: Any, legacy: bool = False) -> None:
        super().__init__(*args)
        self.legacy = legacy
        r, dev = self.vocab.ranges, self.device
        table = np.zeros((self.vocab.size, 3), np.int64)  # per token: pitch, +-1 notes, steps
        for kind, sign in ((perf.NOTE_ON, 1), (perf.NOTE_OFF, -1)):
            table[r[kind], 0], table[r[kind], 1] = np.arange(len(r[kind])), sign
        table[:, 2] = self.events.token_steps()
        self.shifts = torch.as_tensor(table[r[perf.TIME_SHIFT], 2], device=dev)  # (S,)
        self.table = torch.as_tensor(table, device=dev)  # (V, 3)
        self.on, self.off, self.sh = r[perf.NOTE_ON], r[perf.NOTE_OFF], r[perf.TIME_SHIFT]

    def start(self) -> Track:
        """The track of one row before any token."""
        z = torch.zeros(1, self.n_pitches, dtype=torch.long, device=self.device)
        return Track(torch.zeros(1, dtype=torch.long, device=self.device), z, z.bool())

    def update(self, tr: Track, tok: torch.Tensor) -> Track:
        """The track after token ids (B,)."""
        p, d, k = self.table.index_select(0, tok).unbind(1)  # (B,) each
        p = p[:, None]
        u = tr.until.gather(1, p)[:, 0]  # (B,)
        u = torch.where(d > 0, tr.now + self.max_note,  # NOTE_ON: sounds max_note at most
                        torch.where(d < 0, torch.minimum(u, tr.now), u))  # NOTE_OFF: silent
        on = tr.aux.gather(1, p)[:, 0]
        on = torch.where(d > 0, True, torch.where(d < 0, False, on))
        return Track(tr.now + k, tr.until.scatter(1, p, u[:, None]),
                     tr.aux.scatter(1, p, on[:, None]))

    def banned(self, tr: Track) -> torch.Tensor:
        """(B, V) bool: the events the guards forbid now."""
        if self.legacy:  # the rules before guards were learned: the silence guard only
            out = torch.zeros(tr.now.shape[0], self.vocab.size, dtype=torch.bool,
                              device=self.device)  # (B, V)
            out[:, self.sh.start : self.sh.stop] = self._shift_ban(tr, self.shifts)
            return out | self.fixed
        sounding = tr.aux  # (B, P)
        left = torch.where(sounding, tr.until - tr.now[:, None], NO_LIMIT).amin(1)  # (B,)
        overdue = sounding & (tr.until <= tr.now[:, None])  # (B, P) must close now
        must = overdue.any(1, keepdim=True)  # (B, 1)
        shift = self._shift_ban(tr, self.shifts) | (self.shifts > left[:, None])  # (B, S)
        out = torch.ones(tr.now.shape[0], self.vocab.size, dtype=torch.bool,
                         device=self.device)  # (B, V)
        out[:, self.on.start : self.on.stop] = self._start_ban(sounding) | must
        fresh = sounding & (tr.until - self.max_note == tr.now[:, None])  # (B, P) began now
        out[:, self.off.start : self.off.stop] = ~sounding | fresh | (must & ~overdue)
        out[:, self.sh.start : self.sh.stop] = shift | must
        out[:, self.sh.stop :] = must  # VELOCITY (PROGRAM, DRUM)
        return out | self.fixed


class NoteRules(_Base):
    """Guards and grammar for the beat vocabulary (PITCH / DURATION / SHIFT / VELOCITY)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        r, dev = self.vocab.ranges, self.device
        table = np.zeros((self.vocab.size, 3), np.int64)  # per token: pitch, kind, steps
        table[r[beat.PITCH], 0] = np.arange(len(r[beat.PITCH]))
        table[r[beat.PITCH], 1], table[r[beat.DURATION], 1], table[r[beat.SHIFT], 1] = 1, 2, 3
        table[r[beat.DURATION], 2] = table[r[beat.SHIFT], 2] = self.vocab.steps
        self.table = torch.as_tensor(table, device=dev)  # (V, 3)
        self.shifts = torch.as_tensor(self.vocab.steps, device=dev)  # (S,) steps of each
        too_long = self.vocab.steps > max(self.max_note, int(self.vocab.steps[0]))
        self.long = torch.as_tensor(too_long, device=dev)  # (D,) DURATIONs over the limit
        self.r = r

    def start(self) -> Track:
        """The track of one row before any token."""
        z = torch.zeros(1, dtype=torch.long, device=self.device)
        return Track(z, torch.zeros(1, self.n_pitches, dtype=torch.long, device=self.device),
                     z - 1)

    def update(self, tr: Track, tok: torch.Tensor) -> Track:
        """The track after token ids (B,)."""
        p, kind, steps = self.table.index_select(0, tok).unbind(1)  # (B,) each
        note = (kind == 2) & (tr.aux >= 0)  # a DURATION completing a note
        at = tr.aux.clamp(min=0)[:, None]  # (B, 1)
        u = torch.where(note, tr.now + steps, tr.until.gather(1, at)[:, 0])
        return Track(tr.now + torch.where(kind == 3, steps, 0),
                     tr.until.scatter(1, at, u[:, None]), torch.where(kind == 1, p, -1))

    def banned(self, tr: Track) -> torch.Tensor:
        """(B, V) bool: the events the guards and the grammar forbid now."""
        pend = (tr.aux >= 0)[:, None]  # (B, 1): a PITCH waits for its DURATION
        sounding = tr.until > tr.now[:, None]  # (B, P)
        out = torch.empty(tr.now.shape[0], self.vocab.size, dtype=torch.bool,
                          device=self.device)  # (B, V)
        r = self.r
        bans = ((beat.PITCH, self._start_ban(sounding) | pend),
                (beat.DURATION, self.long[None, :] | ~pend),
                (beat.SHIFT, self._shift_ban(tr, self.shifts) | pend))
        for kind, ban in bans:
            out[:, r[kind].start : r[kind].stop] = ban
        out[:, r[beat.VELOCITY].start :] = pend  # VELOCITY (PROGRAM, DRUM)
        return out | self.fixed


def instrument_ban(events: Events, config: Any) -> np.ndarray:
    """(V,) bool: the PROGRAM tokens of programs not in ``config.instruments`` (None: none
    banned) and, unless ``config.drums``, the DRUM tokens; all False without instruments."""
    ban = np.zeros(events.size, dtype=bool)
    programs, drums = events.instrument_ids()
    chosen = getattr(config, "instruments", None)
    if chosen is not None and len(programs):
        ban[programs.start : programs.stop] = True
        ban[[programs[p] for p in chosen]] = False
    if not getattr(config, "drums", True):
        ban[drums.start : drums.stop] = True
    return ban


def max_note_seconds(events: Events, config: Any, clock: Clock, guards: Guards) -> float:
    """The longest note in seconds: ``config.max_note_seconds``, else the guard measured on
    the training corpus (in beats for the beat vocabulary, at ``clock``'s tempo), else
    DEFAULT_MAX_NOTE_SECONDS."""
    if config.max_note_seconds is not None:
        return float(config.max_note_seconds)
    if events.is_notes and guards.max_note_beats:
        return guards.max_note_beats * clock.us_per_quarter / 1e6
    if not events.is_notes and guards.max_note_seconds:
        return float(guards.max_note_seconds)
    return DEFAULT_MAX_NOTE_SECONDS


def make_rules(events: Events, config: Any, keys: torch.Tensor, clock: Clock, guards: Guards
               ) -> PerformanceRules | NoteRules:
    """The guards of ``events``' vocabulary for sample config ``config``
    (``max_polyphony``, ``max_note_seconds``, ``max_silence_seconds``; None: from
    ``guards``, else no polyphony limit and DEFAULT_MAX_NOTE_SECONDS)."""
    sps = events.steps_per_second(clock)
    poly = config.max_polyphony if config.max_polyphony is not None else guards.max_polyphony
    longest = max_note_seconds(events, config, clock, guards)
    args = (config, events, keys, max(1, round(longest * sps)),
            max(0, round(config.max_silence_seconds * sps)), NO_LIMIT if poly is None else poly)
    if events.is_notes:
        return NoteRules(*args)
    return PerformanceRules(*args, legacy=is_legacy(config, guards))


def is_legacy(config: Any, guards: Guards) -> bool:
    """Whether performance events sample under the old rules (the silence guard only, notes
    clipped at 5 s on decoding): a model without measured guards (trained before they
    existed) and no limit given. Measured on the shipped model (10 x 30 s, temperature 1):
    masking re-strikes without a polyphony limit raised the mean number of notes sounding
    at each onset from 7.2 to 11.0, so old models keep their old behaviour unless asked."""
    return (guards.max_polyphony is None and guards.max_note_seconds is None
            and config.max_polyphony is None and config.max_note_seconds is None)

MASK32 = 0xFFFFFFFF


class Sampling(Protocol):
    """The settings a draw reads (:class:`composer.generation.config.SampleConfig` has them)."""

    temperature: float
    top_k: int
    top_p: float


def filter_logits(logits: torch.Tensor, config: Sampling,
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
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
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
    row = _mix32((_mix32(keys)[:, None] + steps) & MASK32)  # (B, S)
    bits = (((row[:, :, None] ^ ids) * 0x6C8E9CF5) & MASK32) >> 8  # (B, S, V), 24 bits
    u = bits.float().add_(0.5).mul_(2.0**-24)  # uniform in (0, 1)
    return u.log_().neg_().log_().neg_()  # -log(-log(u))


def draw(filtered: torch.Tensor, noise: torch.Tensor | None, config: Sampling
         ) -> torch.Tensor:
    """Token ids (B,) from :func:`filter_logits` output by Gumbel-max with ``noise`` (B, V);
    argmax when the temperature is 0."""
    if config.temperature == 0 or noise is None:
        return filtered.argmax(dim=1)
    return (filtered + noise).argmax(dim=1)
