"""Keys and openings learnt from the corpus, for a piece drawn with no key asked: two logits
processors built once the seed is known (beside :class:`~composer.generation.processors.
Steering`, which holds an *asked* key).

- :class:`KeyHold`: each row has a key, drawn from the row's own rng seed by how likely
  each key is given the seed's notes (:meth:`~composer.corpus.keys.Keys.posterior`: an
  unseeded piece by the training corpus's shares of its keys; a seed of a few notes leans
  toward the corpus's keys they fit; a long seed settles its own key); a note start whose
  pitch class the corpus rarely plays in that key loses ``key_hold * log(share / in-key
  share)`` nats, where a pitch class's share is the corpus's in that mode and the in-key
  share is the seventh largest (the seven most played pitch classes lose nothing). Trained
  on short windows with transposition augmentation, a model starts an unseeded piece in any
  of the augmented keys and wanders out of it (issue 23: 20 unseeded pieces of a 4-minute
  model, pitch-class overlap with the corpus 0.60, after the best transposition 0.83);
  held, a piece keeps a key of the corpus's.
- :class:`OpeningRange`: at an unseeded row's first onset (the first note and the chord it
  begins), starts outside the pitches the corpus's pieces sound at their first onsets are
  masked (no piece opens with a stray note far below the corpus's range).

Both need a model whose checkpoint measured its corpus's keys
(:class:`~composer.corpus.keys.Keys`, in its guards; older checkpoints: neither applies).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from composer.corpus.facts import Guards
from composer.corpus.keys import FLOOR, Keys
from composer.generation.processors import INF
from composer.generation.track import Track, Tracker

IN_KEY = 7  # the most played pitch classes of a key that lose nothing


class KeyHold:
    """Adds ``bias`` (B, P) to the note starts' scores: each row's key's pitch-class
    penalties."""

    def __init__(self, tracker: Tracker, bias: torch.Tensor) -> None:
        self.starts, self.bias = tracker.starts, bias  # (B, P)

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        scores[:, self.starts.start : self.starts.stop] += self.bias
        return scores


class OpeningRange:
    """Masks the note starts of ``outside`` (P,) bool at a row's first onset: while it has
    drawn no note, and at the step of its first note (the rest of an opening chord)."""

    def __init__(self, tracker: Tracker, outside: torch.Tensor, num: int) -> None:
        self.starts, self.outside = tracker.starts, outside  # (P,)
        self.first = torch.full((num,), -1, dtype=torch.long, device=outside.device)  # (B,)

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        # a row's first onset: the step it stood at when its first note was drawn
        self.first.copy_(torch.where((tr.notes > 0) & (self.first < 0), tr.now, self.first))
        opening = (tr.notes == 0) | (tr.now == self.first)  # (B,)
        ban = opening[:, None] & self.outside  # (B, P)
        scores[:, self.starts.start : self.starts.stop].masked_fill_(ban, INF)
        return scores


def key_penalties(keys: Keys, key: int) -> np.ndarray:
    """(12,) nats a note of each pitch class loses in ``key`` (0 for the IN_KEY most played
    classes of its mode in the corpus, log of the share's ratio below them otherwise)."""
    share = np.maximum(keys.profile(key), FLOOR)  # (12,)
    in_key = np.sort(share)[-IN_KEY]
    return np.minimum(0.0, np.log(share / in_key))


def keys_of_rows(keys: Keys, seed_pitches: np.ndarray, num: int, rng_seed: int) -> list[int]:
    """Each row's key, drawn from :meth:`Keys.posterior` given the seed's pitches with the
    row's rng seed (``rng_seed + i``). (Held only from a seed of 24 notes or more, as it was,
    a seed of a few seconds of slow polyphony, 2-8 notes, was continued with no key: 4 s
    seeds of the Palestrina test pieces, 5 continuations each, overlapped their own piece's
    pitch classes 0.64; drawn from the posterior 0.77, and Essen's 0.73 -> 0.75.)"""
    p = keys.posterior(seed_pitches)  # (24,)
    return [int(np.random.default_rng(rng_seed + i).choice(24, p=p)) for i in range(num)]


def keys_for(guards: Guards, plan: Any, spec: Any) -> Keys | None:
    """The keys to hold to: those of the style the plan's first segment asks for (when the
    checkpoint measured them per style), else the whole corpus's."""
    slot = spec.slices().get("style")
    if plan is not None and slot is not None and guards.style_keys:
        weights = plan.values[0, slot]  # (styles,)
        if not np.isnan(weights).any() and weights.max() > 0:
            return guards.style_keys.get(spec.styles[int(np.argmax(weights))], guards.keys)
    return guards.keys


def key_processors(keys: Keys | None, tracker: Tracker, config: Any, seed: np.ndarray,
                   num: int, rng_seed: int, asked_key: bool) -> list[Any]:
    """The :class:`KeyHold` (with ``config.key_hold`` > 0 and no key asked) and, for an
    unseeded piece, the :class:`OpeningRange` of a model whose corpus's ``keys`` are known;
    ``seed`` (T,): the token ids fed before the draw."""
    if keys is None:
        return []
    starts = tracker.starts
    pitches = tracker.start_pitches()  # (P,)
    in_seed = (seed >= starts.start) & (seed < starts.stop)
    seed_pitches = pitches[seed[in_seed] - starts.start]  # (M,)
    out: list[Any] = []
    if config.key_hold > 0 and not asked_key:
        chosen = keys_of_rows(keys, seed_pitches, num, rng_seed)
        bias = np.stack([key_penalties(keys, k)[pitches % 12] for k in chosen])  # (B, P)
        out.append(KeyHold(tracker, torch.as_tensor(config.key_hold * bias,
                                                    dtype=torch.float32, device=tracker.device)))
    if not len(seed_pitches):
        low, high = keys.opening
        outside = (pitches < low) | (pitches > high)  # (P,)
        if outside.any() and not outside.all():
            outside_t = torch.as_tensor(outside, device=tracker.device)
            out.append(OpeningRange(tracker, outside_t, num))
    return out
