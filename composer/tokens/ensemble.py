"""The instrument option of both vocabularies: notes keep their instrument, drums are kept.

A vocabulary whose config has ``instruments=True``
(:class:`~composer.tokens.performance.EventConfig` or
:class:`~composer.tokens.beats.NoteEventConfig`) composes :data:`ENSEMBLE` instead of
:data:`SOLO` (see :meth:`composer.tokens.vocab.Events.option`) and gains two kinds after
VELOCITY::

    PROGRAM_g   the pitched notes that follow are played by General MIDI program g
    DRUM_k      a drum hit (General MIDI channel 10) of drum key k, now

Encoding (one piece): events in time order as without instruments, and at one time the
note starts grouped by program (ascending), drum hits last. A PROGRAM token comes before a
note start whose program differs from the last PROGRAM written (always before the first
pitched note); VELOCITY works as without instruments, for drum hits too. So a token group
is ``[shifts] [PROGRAM] [VELOCITY] NOTE_ON_p`` (performance events; a NOTE_OFF needs no
PROGRAM) or ``[shifts] [PROGRAM] [VELOCITY] PITCH_p DURATION_d`` (the beat vocabulary), and
``[shifts] [VELOCITY] DRUM_k`` for a drum hit.

Rules (what ``quantise`` applies, so ``decode(encode(x)) == quantise(x)``):

- A note's instrument is its program and drum flag as loaded (:func:`composer.midi.io.load`:
  the last program change on its track and channel at or before its start, so a program
  change mid-track switches the instrument of the notes after it; a channel without a
  program change is program 0, piano; channel 10 is drums whatever its program).
- Drum hits keep their key (any 0..127: DRUM ids are not pitches and are never transposed
  by :mod:`composer.training.data`), start and velocity; their length is not kept (GM drums are
  one-shots): decoded hits last DRUM_SECONDS (performance) or a sixteenth (beats); their
  program is 0.
- Performance events: NOTE_OFF_p ends the oldest sounding note of pitch p of any instrument
  (first in, first out across instruments). Two instruments holding one pitch at once
  (a unison) are re-paired like that, so the earlier-started one ends first; notes of one
  pitch starting at one step are taken in program order.
- Decoding: pitched notes before any PROGRAM get the ``program`` argument.

Without the option (:data:`SOLO`) every note in the pitch range is a pitched note of program
0 (drum flags are dropped) and no PROGRAM or DRUM token exists.
"""

from __future__ import annotations

import numpy as np

PROGRAM, DRUM = "PROGRAM", "DRUM"  # the option's kinds: after VELOCITY, in this order
DRUM_SECONDS = 0.1  # performance events: a decoded drum hit lasts this long
DRUM_PROGRAM_KEY = 128  # drums sort after every program at one time


def changes(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(n,) bool: where a value differs from the previous one of its group (or starts it)."""
    out = np.ones(len(values), dtype=bool)
    out[1:] = (values[1:] != values[:-1]) | (group[1:] != group[:-1])
    return out


def changes_among(mask: np.ndarray, values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(E,) bool over all events: at the events of ``mask``, whether ``values`` changes
    there (among the masked events of its piece)."""
    out = np.zeros(len(mask), dtype=bool)
    out[mask] = changes(values[mask], group[mask])
    return out


def last_value(is_kind: dict[str, np.ndarray], value: np.ndarray, kind: str, default: int
               ) -> np.ndarray:
    """(T,) the value of the last ``kind`` token at or before each position, else default."""
    last = np.maximum.accumulate(np.where(is_kind[kind], np.arange(len(value)), -1))
    return np.where(last >= 0, value[np.maximum(last, 0)], default)


class Solo:
    """No instruments: every note in the pitch range is pitched, program 0; no drums."""

    kinds: tuple[str, ...] = ()  # the kinds this option adds to the range table (128 ids each)

    def parts(self, notes: np.ndarray, min_pitch: int, max_pitch: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks (n,) of the pitched notes and of the drum hits, and each note's program."""
        inside = (notes["pitch"] >= min_pitch) & (notes["pitch"] <= max_pitch)
        return inside, np.zeros(len(notes), dtype=bool), np.zeros(len(notes), np.int64)

    def program_flags(self, starts: np.ndarray, program: np.ndarray, group: np.ndarray
                      ) -> np.ndarray:
        """(E,) bool: the events that get a PROGRAM token before them (``starts``: the
        events that start a pitched note)."""
        return np.zeros(len(starts), dtype=bool)

    def programs(self, is_kind: dict[str, np.ndarray], value: np.ndarray, program: int
                 ) -> np.ndarray:
        """(T,) the program in force at each token (``program`` before any PROGRAM)."""
        return np.full(len(value), program, np.int64)

    def drums(self, is_kind: dict[str, np.ndarray]) -> np.ndarray:
        """Positions of the DRUM tokens."""
        return np.zeros(0, np.int64)


class Ensemble(Solo):
    """Instruments: pitched notes keep their program, drum hits (any key) are kept."""

    kinds = (PROGRAM, DRUM)

    def parts(self, notes: np.ndarray, min_pitch: int, max_pitch: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        inside, _, _ = super().parts(notes, min_pitch, max_pitch)
        drum = notes["is_drum"].astype(bool)
        return ~drum & inside, drum, notes["program"].astype(np.int64)

    def program_flags(self, starts: np.ndarray, program: np.ndarray, group: np.ndarray
                      ) -> np.ndarray:
        return changes_among(starts, program, group)

    def programs(self, is_kind: dict[str, np.ndarray], value: np.ndarray, program: int
                 ) -> np.ndarray:
        return last_value(is_kind, value, PROGRAM, program)

    def drums(self, is_kind: dict[str, np.ndarray]) -> np.ndarray:
        return np.flatnonzero(is_kind[DRUM])


SOLO, ENSEMBLE = Solo(), Ensemble()
