"""Music time per row while a continuation is drawn: the state the guards read.

A :class:`Track` holds, per row, the music step it has reached, per pitch the step at which
that pitch falls silent, and one vocabulary-specific field. A :class:`Tracker` starts a
track and updates it after each drawn token; its vocabulary differences are a few hooks
(:meth:`Tracker.update`, :meth:`Tracker.sounding`, :meth:`Tracker.pending`), one subclass
per event vocabulary (:class:`PerformanceTracker`, :class:`BeatTracker`), chosen once in
:func:`make_tracker`. The token ranges the guards mask (note starts, shifts) are read here
too, so that :mod:`composer.generation.processors` needs no vocabulary of its own.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from composer.tokens import beats as beat
from composer.tokens import performance as perf
from composer.tokens.vocab import Events

FAR = 1 << 40  # music steps no note reaches


class Track(NamedTuple):
    """Music time per row: ``now`` (B,) steps; per pitch ``until`` (B, P): the step at
    which it falls silent (an upper bound while it sounds); ``aux``: performance events,
    (B, P) bool, the pitch sounds (all False where no processor reads it:
    :class:`PerformanceTracker`); beat vocabulary, (B,) the pitch index waiting for its
    DURATION (-1: none); ``notes`` (B,): note starts drawn (the seed's are not counted)."""

    now: torch.Tensor
    until: torch.Tensor
    aux: torch.Tensor
    notes: torch.Tensor


class Tracker:
    """Keeps the :class:`Track` of one vocabulary. ``starts``, ``shifts``: the token ranges
    of note starts and of time shifts; ``shift_steps`` (S,): the music steps of each shift;
    ``max_note``: the longest note in steps (a NOTE_ON's upper bound)."""

    starts: range
    shifts: range
    shift_steps: torch.Tensor

    def __init__(self, events: Events, max_note: int, device: torch.device) -> None:
        self.events, self.vocab, self.device = events, events.vocab, device
        self.max_note = max_note
        self.n_pitches = len(events.note_start_ids())
        self.starts = events.note_start_ids()

    def start_pitches(self) -> np.ndarray:
        """(P,) the MIDI pitch of each note-start token, in id order."""
        return np.array([self.vocab.decode_event(i).value for i in self.starts], np.int64)

    def start(self) -> Track:
        """The track of one row before any token."""
        raise NotImplementedError

    def update(self, tr: Track, tok: torch.Tensor) -> Track:
        """The track after token ids ``tok`` (B,)."""
        raise NotImplementedError

    def sounding(self, tr: Track) -> torch.Tensor:
        """(B, P) bool: the pitches sounding now."""
        raise NotImplementedError

    def silence(self, tr: Track) -> torch.Tensor:
        """(B,) music steps since the last note fell silent (<= 0 while one sounds)."""
        return tr.now - tr.until.amax(1)


class PerformanceTracker(Tracker):
    """Performance events (NOTE_ON / NOTE_OFF / TIME_SHIFT / VELOCITY): ``aux`` is the
    (B, P) bool of sounding pitches; with ``sounding=False`` (no processor reads it: the
    legacy rules of :func:`composer.generation.processors.is_legacy`) it is not kept and
    stays all False."""

    def __init__(self, events: Events, max_note: int, device: torch.device,
                 sounding: bool = True) -> None:
        super().__init__(events, max_note, device)
        r, self.sounding_kept = self.vocab.ranges, sounding
        # per token: pitch, steps, 1 if it starts a note, and the bounds its pitch's end is
        # clamped to, in steps after now (NOTE_ON: exactly max_note, the most it sounds on;
        # NOTE_OFF: 0 at the latest, silent now; others: -FAR..FAR, unchanged)
        table = np.zeros((self.vocab.size, 5), np.int64)
        table[:, 3], table[:, 4] = -FAR, FAR
        flags = np.zeros((self.vocab.size, 2), bool)  # per token: sets its pitch's aux; to what
        for kind, low, high in ((perf.NOTE_ON, max_note, max_note), (perf.NOTE_OFF, -FAR, 0)):
            table[r[kind], 0] = np.arange(len(r[kind]))
            table[r[kind], 3], table[r[kind], 4] = low, high
            flags[r[kind], 0] = True
        table[r[perf.NOTE_ON], 2], flags[r[perf.NOTE_ON], 1] = 1, True
        table[:, 1] = events.token_steps()
        self.table = torch.as_tensor(table, device=device)  # (V, 5)
        self.flags = torch.as_tensor(flags, device=device)  # (V, 2)
        self.shifts, self.offs = r[perf.TIME_SHIFT], r[perf.NOTE_OFF]
        self.shift_steps = torch.as_tensor(table[self.shifts, 1], device=device)  # (S,)

    def start(self) -> Track:
        z = torch.zeros(1, self.n_pitches, dtype=torch.long, device=self.device)
        zero = torch.zeros(1, dtype=torch.long, device=self.device)
        return Track(zero, z, z.bool(), zero)

    def update(self, tr: Track, tok: torch.Tensor) -> Track:
        row = self.table.index_select(0, tok)  # (B, 5)
        p, k, starts, bounds = row.split_with_sizes((1, 1, 1, 2), 1)  # (B, 1) x 3, (B, 2)
        low, high = (tr.now[:, None] + bounds).split_with_sizes((1, 1), 1)  # (B, 1) each
        until = tr.until.scatter(1, p, tr.until.gather(1, p).clamp_(low, high))
        aux = tr.aux
        if self.sounding_kept:  # NOTE_ON: sounds, NOTE_OFF: silent, others: unchanged
            sets, on = self.flags.index_select(0, tok).split_with_sizes((1, 1), 1)  # (B, 1)
            aux = aux.scatter(1, p, torch.where(sets, on, aux.gather(1, p)))
        return Track(tr.now + k.view(-1), until, aux, tr.notes + starts.view(-1))

    def sounding(self, tr: Track) -> torch.Tensor:
        return tr.aux


class BeatTracker(Tracker):
    """The beat vocabulary (PITCH / DURATION / SHIFT / VELOCITY): ``aux`` (B,) is the pitch
    waiting for its DURATION (-1: none)."""

    def __init__(self, events: Events, max_note: int, device: torch.device) -> None:
        super().__init__(events, max_note, device)
        r = self.vocab.ranges
        # per token: the pitch waiting after it (PITCH: its own, others: -1), the least waiting
        # pitch it completes a note of (DURATION: 0, any; others: FAR, none), that note's
        # steps, the steps it moves time by (SHIFT), 1 if it starts a note (PITCH)
        table = np.zeros((self.vocab.size, 5), np.int64)
        table[:, 0], table[:, 1] = -1, FAR
        table[r[beat.PITCH], 0], table[r[beat.PITCH], 4] = np.arange(len(r[beat.PITCH])), 1
        table[r[beat.DURATION], 1], table[r[beat.DURATION], 2] = 0, self.vocab.steps
        table[r[beat.SHIFT], 3] = self.vocab.steps
        self.table = torch.as_tensor(table, device=device)  # (V, 5)
        self.shifts, self.durations = r[beat.SHIFT], r[beat.DURATION]
        self.shift_steps = torch.as_tensor(self.vocab.steps, device=device)  # (S,)

    def start(self) -> Track:
        z = torch.zeros(1, dtype=torch.long, device=self.device)
        return Track(z, torch.zeros(1, self.n_pitches, dtype=torch.long, device=self.device),
                     z - 1, z)

    def update(self, tr: Track, tok: torch.Tensor) -> Track:
        waiting, least, length, shift, starts = self.table.index_select(0, tok).unbind(1)
        at = tr.aux.clamp(min=0)[:, None]  # (B, 1)
        note = tr.aux >= least  # (B,) a DURATION completing a note
        u = torch.where(note, tr.now + length, tr.until.gather(1, at)[:, 0])  # (B,)
        return Track(tr.now + shift, tr.until.scatter(1, at, u[:, None]), waiting,
                     tr.notes + starts)

    def sounding(self, tr: Track) -> torch.Tensor:
        return tr.until > tr.now[:, None]

    def pending(self, tr: Track) -> torch.Tensor:
        """(B, 1) bool: a PITCH waits for its DURATION."""
        return (tr.aux >= 0)[:, None]


def make_tracker(events: Events, max_note: int, device: torch.device, sounding: bool = True
                 ) -> Tracker:
    """The tracker of ``events``' vocabulary (``max_note``: the longest note in steps;
    ``sounding``: whether the performance tracker keeps the sounding pitches)."""
    if events.is_notes:
        return BeatTracker(events, max_note, device)
    return PerformanceTracker(events, max_note, device, sounding)


def replay(tracker: Tracker, tokens: torch.Tensor) -> Track:
    """The track of one row after ``tokens`` (T,) (a seed), token by token; its notes are
    not counted (``notes`` counts what is drawn after)."""
    track = tracker.start()
    for tok in tokens.split(1):
        track = tracker.update(track, tok)
    return track._replace(notes=torch.zeros_like(track.notes))
