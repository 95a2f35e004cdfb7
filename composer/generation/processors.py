"""Logits processors: each guard and each sampling setting is one small object, built once
from a :class:`~composer.generation.config.SampleConfig` by :func:`make_processors` and applied
in order before every draw (as ``transformers``' ``LogitsProcessorList`` does). A processor
takes the scores (B, V) and the :class:`~composer.generation.track.Track` of music time and
returns the scores with the events it forbids at -inf.

The guards:

- **instruments** (:class:`InstrumentFilter`, instrument-aware vocabularies): PROGRAM tokens
  of programs outside the config's ``instruments`` are masked, and DRUM tokens without
  ``drums``;
- **silence** (:class:`SilenceGuard`): a shift that would stretch a silence past
  ``max_silence`` steps is masked, and an unseeded piece opens within
  ``max_opening_seconds`` (until its first note, no shift goes past it);
- **polyphony** (:class:`PolyphonyGuard`): a note start is masked while its pitch sounds (no
  re-strike; a unison of two instruments counts as one) and every note start while
  ``max_polyphony`` notes sound (drum hits, having no length, are not counted);
- **note length**: performance events (:class:`PerformanceNoteLength`): a TIME_SHIFT that
  would carry a sounding note past ``max_note`` steps is masked, and a note that has reached
  it must be closed next (only NOTE_OFFs of such notes may be drawn); beat vocabulary
  (:class:`BeatNoteLength`): DURATIONs longer than ``max_note`` are masked;
- **grammar**: performance events (:class:`PerformanceGrammar`): a NOTE_OFF of a pitch that
  is not sounding is masked (decoding would ignore it), and so is one in the very step its
  note began (decoding would stretch that note to one step, unseen by the polyphony count);
  beat vocabulary (:class:`BeatGrammar`): after a PITCH only a DURATION, elsewhere none.

A model with controls also gets :class:`Steering` (built once the seed is fed): feedback
that holds the drawn music to the plan's density and key.

Then the sampling settings: :class:`Temperature` (first: it makes the copy the guards mask in
place), :class:`TopK`, :class:`TopP`. Greedy (temperature 0) is decided in one place,
:attr:`Processors.greedy`: the draw takes the argmax and no noise is made.

Masking (rather than closing a sounding note first and then re-striking it) never writes a
token the model did not choose and keeps the token stream a faithful record of what was
drawn. There is always an allowed event: VELOCITY, a shift, or the NOTE_OFF of an overdue
note. A performance-event model without measured guards (trained before they existed)
samples under the old rules (instruments and silence only), token for token, unless a
limit is given (:func:`is_legacy`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from composer.corpus.facts import DEFAULT_MAX_NOTE_SECONDS, Guards
from composer.generation.track import BeatTracker, PerformanceTracker, Track, Tracker
from composer.tokens.beats import Clock
from composer.tokens.vocab import Events

NO_LIMIT = 1 << 30  # a limit that never binds
INF = -math.inf


class Temperature:
    """Scores / temperature (a new tensor, so the guards after it may mask in place)."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, scores: torch.Tensor, tr: Track | None) -> torch.Tensor:
        return scores / self.temperature


class InstrumentFilter:
    """Masks the fixed (V,) ``ban``: programs not chosen, drums when not wanted."""

    def __init__(self, ban: torch.Tensor) -> None:
        self.ban = ban  # (V,) bool

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        return scores.masked_fill_(self.ban, INF)


class SilenceGuard:
    """Masks the shifts that would stretch the silence past ``max_silence`` steps, and, with
    ``max_opening`` (an unseeded piece), past ``max_opening`` steps before its first note."""

    def __init__(self, tracker: Tracker, max_silence: int, max_opening: int | None = None
                 ) -> None:
        self.tracker, self.max_silence = tracker, max_silence
        self.max_opening = None if max_opening is None else min(max_opening, max_silence)
        self.shifts, self.steps = tracker.shifts, tracker.shift_steps  # (S,)
        # (2,) a row's limit before its first note and after, picked by min(notes, 1)
        self.limits = torch.as_tensor([self.max_opening or 0, max_silence], device=tracker.device)

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        limit: int | torch.Tensor = self.max_silence
        if self.max_opening is not None:  # (B,): no note drawn yet, the opening's limit
            limit = self.limits.index_select(0, tr.notes.clamp(max=1))
        room = limit - self.tracker.silence(tr)  # (B,) steps a shift may still take
        over = self.steps > room[:, None]  # (B, S)
        scores[:, self.shifts.start : self.shifts.stop].masked_fill_(over, INF)
        return scores


class PolyphonyGuard:
    """Masks the start of a sounding pitch, and every start while ``max_polyphony`` sound."""

    def __init__(self, tracker: Tracker, max_polyphony: int) -> None:
        self.tracker, self.max_polyphony, self.starts = tracker, max_polyphony, tracker.starts

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        ban = sounding = self.tracker.sounding(tr)  # (B, P)
        if self.max_polyphony < NO_LIMIT:
            ban = sounding | (sounding.sum(1, keepdim=True) >= self.max_polyphony)
        scores[:, self.starts.start : self.starts.stop].masked_fill_(ban, INF)
        return scores


class PerformanceNoteLength:
    """No note past ``tracker.max_note`` steps: shifts beyond the nearest note end are
    masked, and while a note is overdue only the NOTE_OFFs of overdue notes are allowed."""

    def __init__(self, tracker: PerformanceTracker) -> None:
        self.tracker, self.V = tracker, tracker.vocab.size
        self.shifts, self.offs, self.steps = tracker.shifts, tracker.offs, tracker.shift_steps

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        end = tr.until - tr.now[:, None]  # (B, P) steps each note may still sound
        left = torch.where(tr.aux, end, NO_LIMIT).amin(1, keepdim=True)  # (B, 1)
        overdue = tr.aux & (end <= 0)  # (B, P) must close now
        must = overdue.any(1, keepdim=True)  # (B, 1)
        ban = must.expand(-1, self.V).clone()  # (B, V)
        ban[:, self.offs.start : self.offs.stop] = must & ~overdue
        ban[:, self.shifts.start : self.shifts.stop] |= self.steps > left
        return scores.masked_fill_(ban, INF)


class PerformanceGrammar:
    """Masks the NOTE_OFF of a pitch not sounding, or sounding since this very step."""

    def __init__(self, tracker: PerformanceTracker) -> None:
        self.offs, self.max_note = tracker.offs, tracker.max_note

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        fresh = tr.until - self.max_note == tr.now[:, None]  # (B, P) began now
        scores[:, self.offs.start : self.offs.stop].masked_fill_(~tr.aux | fresh, INF)
        return scores


class BeatNoteLength:
    """Masks the DURATIONs longer than ``tracker.max_note`` steps."""

    def __init__(self, tracker: BeatTracker) -> None:
        steps = tracker.vocab.steps
        long = torch.as_tensor(steps > max(tracker.max_note, int(steps[0])))  # (D,)
        self.durations, self.long = tracker.durations, long.to(tracker.device)

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        scores[:, self.durations.start : self.durations.stop].masked_fill_(self.long, INF)
        return scores


class BeatGrammar:
    """A DURATION right after each PITCH and nowhere else."""

    def __init__(self, tracker: BeatTracker) -> None:
        self.tracker = tracker
        durations = torch.zeros(tracker.vocab.size, dtype=torch.bool, device=tracker.device)
        durations[tracker.durations.start : tracker.durations.stop] = True
        self.bans = ~durations, durations  # (V,) each: while a PITCH waits, and while none

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        ban = torch.where(self.tracker.pending(tr), *self.bans)  # (B, V)
        return scores.masked_fill_(ban, INF)


class TopK:
    """All but the ``k`` highest scores at -inf (ties with the k-th are kept)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, scores: torch.Tensor, tr: Track | None) -> torch.Tensor:
        if self.k >= scores.shape[1]:
            return scores
        kth = scores.topk(self.k, dim=1).values[:, -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, INF)


class TopP:
    """The most likely events whose mass before each is < ``p`` kept (the first stays)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, scores: torch.Tensor, tr: Track | None) -> torch.Tensor:
        ranked, order = scores.sort(dim=1, descending=True)  # (B, V)
        probs = ranked.softmax(dim=1)
        drop = probs.cumsum(dim=1) - probs >= self.p  # mass before >= p
        return scores.scatter(1, order, ranked.masked_fill(drop, INF))


class Steering:
    """Holds a control plan to what it asks while drawing (a model with controls): the model
    reads the asked values as inputs, and this processor adds feedback from what was drawn.

    - **density**: the notes the plan asks for up to now (the integral of its notes per
      second) against the notes drawn (``Track.notes``): each note behind adds
      ``density_gain`` to a bias (at most ``MAX_BIAS`` either way; a note ahead takes it
      off). Behind, it lowers the scores of the tokens that spend time: each time shift by
      ``bias * (1 + its seconds / TIME_UNIT) / 2`` and, on the beat vocabulary, each note
      length by ``bias * its seconds / TIME_UNIT / 2`` (a long note holds a voice that a
      corpus of few voices needs free for the next note); ahead, it raises every shift's
      score alike. So the music's running count follows the plan's;
    - **key**: in a segment that asks for pitch classes, note starts whose pitch class has
      no weight get ``scale_penalty`` subtracted from their scores.

    ``starts`` (S,) are the segments' first music steps; ``target`` (S,) their notes per
    step (NaN: density not asked); ``before`` (S,) the notes asked before each segment;
    ``outside`` (S, P) the note starts out of each segment's scale."""

    MAX_BIAS = 8.0  # the largest density bias (nats)
    TIME_UNIT = 0.25  # seconds: a shift this long costs the whole bias

    def __init__(self, tracker: Tracker, starts: torch.Tensor, target: torch.Tensor,
                 before: torch.Tensor, outside: torch.Tensor | None, density_gain: float,
                 scale_penalty: float, sps: float) -> None:
        self.note_starts = tracker.starts
        self.starts, self.target, self.before = starts, target, before
        self.outside, self.gain, self.penalty = outside, density_gain, scale_penalty
        unit = self.TIME_UNIT * sps  # music steps
        # (token range, (K,) weight of the bias on each token of it)
        self.spend = [(tracker.shifts, (1 + tracker.shift_steps.float() / unit) / 2)]
        durations = getattr(tracker, "durations", None)
        if durations is not None:
            steps = tracker.shift_steps.new_tensor(tracker.vocab.steps).float()  # (D,)
            self.spend.append((durations, steps / unit / 2))

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        seg = torch.searchsorted(self.starts, tr.now, right=True) - 1  # (B,)
        if self.gain > 0:
            target = self.target[seg]  # (B,) notes per step
            asked = self.before[seg] + target * (tr.now - self.starts[seg])  # (B,)
            behind = torch.nan_to_num(asked - tr.notes, nan=0.0)  # (B,)
            bias = (self.gain * behind).clamp(-self.MAX_BIAS, self.MAX_BIAS)[:, None]  # (B, 1)
            ahead = bias.clamp(max=0)  # ahead: every shift alike, lengths left alone
            for i, (span, weight) in enumerate(self.spend):
                flat = 1.0 if i == 0 else 0.0
                scores[:, span.start : span.stop] -= bias.clamp(min=0) * weight + ahead * flat
        if self.outside is not None and self.penalty > 0:
            span = slice(self.note_starts.start, self.note_starts.stop)
            scores[:, span] -= self.penalty * self.outside[seg]  # (B, P)
        return scores


def steering(plan: Any, spec: Any, tracker: Tracker, config: Any, sps: float, now0: int
             ) -> Steering | None:
    """The :class:`Steering` of ``plan`` for a model of ``spec`` (None: nothing to steer:
    no density or pitch classes asked, or both gains 0). ``now0``: the music step the
    drawing starts at, ``sps``: music steps per second."""
    slots = spec.slices()
    steps = np.rint(plan.starts * sps).astype(np.int64) + now0  # (S,)
    target = np.full(len(steps), np.nan)
    if "density" in slots:
        target = np.expm1(plan.values[:, slots["density"].start].astype(np.float64)) / sps
    lengths = np.diff(steps, append=steps[-1])  # (S,) the last segment's never counts
    before = np.concatenate([[0.0], np.cumsum(np.nan_to_num(target) * lengths)[:-1]])
    outside = None
    if "pitch-classes" in slots:
        weights = plan.values[:, slots["pitch-classes"]]  # (S, 12), NaN rows: not asked
        pitches = tracker.start_pitches() % 12  # (P,)
        outside = (weights[:, pitches] <= 0) & ~np.isnan(weights[:, pitches])  # (S, P)
    asked_density = config.density_gain > 0 and not np.isnan(target).all()
    asked_key = config.scale_penalty > 0 and outside is not None and outside.any()
    if not (asked_density or asked_key):
        return None
    dev = tracker.device
    return Steering(tracker, torch.as_tensor(steps, device=dev),
                    torch.as_tensor(target, dtype=torch.float32, device=dev),
                    torch.as_tensor(before, dtype=torch.float32, device=dev),
                    torch.as_tensor(outside, dtype=torch.float32, device=dev)
                    if asked_key else None,
                    config.density_gain if asked_density else 0.0, config.scale_penalty, sps)


class Processors(list):
    """The processors in order; calling it applies them all to logits (B, V), which stay
    unmodified. ``greedy``: draw the argmax (temperature 0), no noise. ``observers``: those
    told each drawn token (:meth:`observe`)."""

    def __init__(self, processors: list[Any], greedy: bool) -> None:
        super().__init__(processors)
        self.greedy = greedy
        self.copy = not (processors and isinstance(processors[0], Temperature))
        # the processors that follow the draws (their ``observe(tok, now)`` after each one)
        self.observers = [p for p in processors if hasattr(p, "observe")]

    def with_late(self, late: list[Any]) -> Processors:
        """These processors with ``late`` ones (built once the seed is fed: steering) after
        the guards, before top-k/top-p."""
        if not late:
            return self
        at = next((i for i, p in enumerate(self) if isinstance(p, (TopK, TopP))), len(self))
        return Processors([*self[:at], *late, *self[at:]], self.greedy)

    def observe(self, tok: torch.Tensor, now: torch.Tensor) -> None:
        """Tells the observers the drawn tokens ``tok`` (B,), drawn at music steps ``now``
        (B,)."""
        for processor in self.observers:
            processor.observe(tok, now)

    def __call__(self, logits: torch.Tensor, tr: Track | None = None) -> torch.Tensor:
        scores = logits.clone() if self.copy else logits  # (B, V)
        for processor in self:
            scores = processor(scores, tr)
        return scores


def sampling(config: Any) -> list[Any]:
    """The sampling settings of ``config`` (temperature, top_k, top_p) that do something."""
    t = config.temperature
    return ([Temperature(t)] * (t not in (0, 1)) + [TopK(config.top_k)] * (config.top_k > 0)
            + [TopP(config.top_p)] * (config.top_p < 1))


def make_processors(tracker: Tracker, config: Any, clock: Clock, guards: Guards,
                    unseeded: bool = False) -> Processors:
    """The processors of ``config`` for ``tracker``'s vocabulary: the guards
    (``max_silence_seconds``; ``max_polyphony`` and ``max_note_seconds``, None: from
    ``guards``, else no polyphony limit and DEFAULT_MAX_NOTE_SECONDS, already in
    ``tracker.max_note``; instruments) between the temperature and top-k/top-p."""
    events = tracker.events
    sps = events.steps_per_second(clock)
    poly = config.max_polyphony if config.max_polyphony is not None else guards.max_polyphony
    silence = SilenceGuard(tracker, max(0, round(config.max_silence_seconds * sps)),
                           round(config.max_opening_seconds * sps) if unseeded else None)
    fixed = instrument_ban(events, config)
    rules: list[Any] = [InstrumentFilter(torch.as_tensor(fixed, device=tracker.device))
                        ] * bool(fixed.any()) + [silence]
    if isinstance(tracker, BeatTracker):
        rules += [PolyphonyGuard(tracker, NO_LIMIT if poly is None else poly),
                  BeatNoteLength(tracker), BeatGrammar(tracker)]
    elif not is_legacy(config, guards) and isinstance(tracker, PerformanceTracker):
        rules += [PolyphonyGuard(tracker, NO_LIMIT if poly is None else poly),
                  PerformanceNoteLength(tracker), PerformanceGrammar(tracker)]
    steps = sampling(config)
    first = steps[:1] if steps and isinstance(steps[0], Temperature) else []
    return Processors(first + rules + steps[len(first):], greedy=config.temperature == 0)


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


def is_legacy(config: Any, guards: Guards) -> bool:
    """Whether performance events sample under the old rules (the silence guard only, notes
    clipped at 5 s on decoding): a model without measured guards (trained before they
    existed) and no limit given. Measured on the shipped model (10 x 30 s, temperature 1):
    masking re-strikes without a polyphony limit raised the mean number of notes sounding
    at each onset from 7.2 to 11.0, so old models keep their old behaviour unless asked."""
    return (guards.max_polyphony is None and guards.max_note_seconds is None
            and config.max_polyphony is None and config.max_note_seconds is None)
