"""The keys of a corpus, learnt on its train split, so that a piece drawn with no key asked
keeps one, in a key the corpus uses, and opens on pitches the corpus opens on.

Each piece's key is the major or minor key whose Krumhansl-Kessler profile best correlates
with the piece's pitch-class histogram (its onsets, drums left out). :class:`Keys` keeps
the share of the train pieces in each of the 24 keys, each mode's pitch-class profile as
the corpus spreads it (its pieces' histograms averaged with the tonic moved to C), and the
lowest and highest pitch sounding at a piece's first onset. It is saved with the checkpoint's guards
(:class:`~composer.corpus.facts.Guards`) and read by the generation's key hold.

Why (issue 23): a model trained on short windows with transposition augmentation starts an
unseeded piece in a key drawn from the augmented spread, not the corpus's, and wanders; a
piece whose key is held from its first note stays as close to the corpus's keys as the
corpus's own pieces are (``benchmarks/bench_keys.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer.tokens.vocab import Events

# Krumhansl & Kessler (1982): probe-tone ratings of the 12 pitch classes, tonic first.
MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MIN_NOTES = 8  # a train piece with fewer notes tells no key
FLOOR = 1e-4  # pitch-class shares below this count as this (a class the corpus never plays)
# Of a seeded piece's prior over keys, this share is spread evenly over the 24: a seed in a
# key the corpus never plays can keep its key.
PRIOR_SPREAD = 0.05


def style_labels(paths: Sequence[str]) -> tuple[str, ...]:
    """The sorted names of the immediate subfolders the files ``paths`` (relative to the
    training folder) lie in, its styles; () when none lies in a subfolder."""
    return tuple(sorted({p.replace(os.sep, "/").split("/", 1)[0] for p in paths
                         if "/" in p.replace(os.sep, "/")}))


def key_name(key: int) -> str:
    """'D major' for key 2, 'B minor' for key 23 (keys 0-11 major, 12-23 minor, C first)."""
    return f"{TONICS[key % 12]} {'minor' if key >= 12 else 'major'}"


def _rotations(profiles: np.ndarray) -> np.ndarray:
    """(24, 12): each mode's profile (2, 12, tonic at 0) moved to each of the 12 tonics."""
    return np.stack([np.roll(profiles[k // 12], k % 12) for k in range(24)])


KK = _rotations(np.array([MAJOR, MINOR]))  # (24, 12)


def best_keys(hist: np.ndarray) -> np.ndarray:
    """(F,) the key (0-23) whose Krumhansl-Kessler profile correlates best with each
    pitch-class histogram of ``hist`` (F, 12)."""
    h = hist - hist.mean(1, keepdims=True)  # (F, 12)
    k = KK - KK.mean(1, keepdims=True)  # (24, 12)
    norm = np.linalg.norm(h, axis=1, keepdims=True) * np.linalg.norm(k, axis=1)[None]
    return np.argmax(h @ k.T / np.maximum(norm, 1e-12), axis=1)


@dataclass(frozen=True)
class Keys:
    """The keys of a corpus's train pieces."""

    shares: tuple[float, ...]  # (24,) share of the pieces in each key (major C..B, minor C..B)
    profiles: tuple[tuple[float, ...], ...]  # (2, 12) major / minor pitch-class shares, tonic 0
    opening: tuple[int, int]  # the lowest and highest pitch of a piece's first onset

    def profile(self, key: int) -> np.ndarray:
        """(12,) the pitch-class shares of ``key`` as the corpus spreads its mode."""
        return np.roll(np.asarray(self.profiles[key // 12], np.float64), key % 12)

    def posterior(self, pitches: np.ndarray) -> np.ndarray:
        """(24,) how likely each key is given these pitches (a seed's notes): the corpus's
        shares as the prior (once there are notes, PRIOR_SPREAD of it spread evenly), each
        note as likely as its key's profile makes its pitch class. No notes: the shares; a
        few notes lean toward the corpus's keys they fit; a few dozen settle their key."""
        prior = np.asarray(self.shares, np.float64)
        prior = prior / prior.sum()  # (24,)
        if not len(pitches):
            return prior
        prior = (1 - PRIOR_SPREAD) * prior + PRIOR_SPREAD / 24
        counts = np.bincount(np.asarray(pitches, np.int64) % 12, minlength=12)  # (12,)
        profiles = _rotations(np.asarray(self.profiles, np.float64))  # (24, 12)
        log_p = np.log(prior) + np.log(np.maximum(profiles, FLOOR)) @ counts  # (24,)
        p = np.exp(log_p - log_p.max())
        return p / p.sum()

    def to_dict(self) -> dict[str, Any]:
        """JSON form: shares by key name, the two profiles, the opening pitches (numbers to
        6 decimals, as :func:`corpus_keys` makes them)."""
        return {"shares": {key_name(k): round(s, 6) for k, s in enumerate(self.shares) if s},
                "profiles": {"major": [round(v, 6) for v in self.profiles[0]],
                             "minor": [round(v, 6) for v in self.profiles[1]]},
                "opening": list(self.opening)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Keys | None:
        """From :meth:`to_dict` form; None or {}: not known."""
        if not d:
            return None
        names = {key_name(k): k for k in range(24)}
        shares = [0.0] * 24
        for name, share in d["shares"].items():
            shares[names[name]] = float(share)
        profiles = tuple(tuple(float(v) for v in d["profiles"][m]) for m in ("major", "minor"))
        return cls(tuple(shares), profiles, (int(d["opening"][0]), int(d["opening"][1])))


def style_keys(tokens: np.ndarray, index: np.ndarray, events: Events, files: Sequence[int],
               paths: Sequence[str]) -> dict[str, Keys]:
    """The :class:`Keys` of each style's ``files`` (a style: a subfolder of the training
    folder, read from ``paths``; {} when the corpus has none)."""
    label = {f: style_labels([paths[f]]) for f in files}  # (style,) or ()
    out = {}
    for style in sorted({s for styles in label.values() for s in styles}):
        keys = corpus_keys(tokens, index, events, [f for f in files if label[f] == (style,)])
        if keys is not None:
            out[style] = keys
    return out


def corpus_keys(tokens: np.ndarray, index: np.ndarray, events: Events,
                files: Sequence[int]) -> Keys | None:
    """The :class:`Keys` of ``files`` (indices into ``index``) of a corpus's ``tokens``
    (None: none of them holds MIN_NOTES pitched notes)."""
    files = np.asarray(files, np.int64)
    hists, firsts = [], []
    starts, steps = events.note_start_ids(), events.token_steps()
    low = events.config.min_pitch
    for f in files:
        o, n = int(index["offset"][f]), int(index["length"][f])
        ids = np.asarray(tokens[o : o + n], np.int64)
        onset = (ids >= starts.start) & (ids < starts.stop)  # (n,)
        pitch = ids[onset] - starts.start + low  # (M,)
        if len(pitch) >= MIN_NOTES:
            hists.append(np.bincount(pitch % 12, minlength=12))
            at = np.cumsum(steps[ids])[onset]  # (M,) each note's start in steps
            firsts += [int(pitch[at == at[0]].min()), int(pitch[at == at[0]].max())]
    if not hists:
        return None
    hist = np.array(hists, np.float64)  # (F, 12)
    hist /= hist.sum(1, keepdims=True)
    key = best_keys(hist)  # (F,)
    shares = np.bincount(key, minlength=24) / len(key)
    profiles = []
    for mode, kk in enumerate((MAJOR, MINOR)):
        mine = [np.roll(h, -(k % 12)) for h, k in zip(hist, key, strict=True) if k // 12 == mode]
        mean = np.mean(mine, 0) if mine else np.array(kk) / sum(kk)  # (12,)
        profiles.append(tuple(round(float(v), 6) for v in mean))
    return Keys(tuple(round(float(s), 6) for s in shares), tuple(profiles),
                (min(firsts), max(firsts)))
