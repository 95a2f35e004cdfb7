"""Music statistics: how a piece sounds in numbers, and how two sets of pieces compare.

After Yang & Lerch (2018, "On the evaluation of generative models in music", mgeval):
per-piece features (:func:`piece_features`, plus polyphony, density, silence, re-struck
notes, same-pitch runs and onsets on the beat grid), intra-set and inter-set distance
distributions, their overlap area and KL divergence, and what goes beyond the reference's
longest note and run (:func:`compare_sets`). It needs notes (and their beats) only:
generation uses :func:`silence_fraction`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer.core.config import Config
from composer.core.messages import MetricsError
from composer.midi.io import NoteInput, Piece, as_note_array
from composer.tokens.beats import beats_of, grid_fraction

RUN_GAP = 0.01  # seconds: same-pitch notes at most this far apart make one unbroken run
GRID_STEPS = 12  # steps per quarter note of the beat grid of grid_share (1/16 and triplets)


def silence_fraction(notes: NoteInput, duration: float | None = None) -> float:
    """Fraction of ``[0, duration]`` (default: up to the last note's end) in which no note
    sounds. 1.0 for an empty piece."""
    arr = as_note_array(notes)
    total = float(arr["end"].max()) if duration is None and len(arr) else (duration or 0.0)
    if total <= 0 or len(arr) == 0:
        return 1.0
    order = np.argsort(arr["start"], kind="stable")
    start, end = arr["start"][order], np.minimum(arr["end"][order], total)
    reach = np.maximum.accumulate(end)  # (n,) latest end among notes started so far
    gaps = np.maximum(start[1:] - reach[:-1], 0.0).sum() + start[0] + max(total - reach[-1], 0)
    return float(min(max(gaps / total, 0.0), 1.0))


def pitched(notes: NoteInput, beats: np.ndarray | None = None) -> Piece:
    """The piece without drums, its notes in (start, pitch) order, with their beats: those
    given (BEAT_DTYPE, one row per note), else the Piece's own, else from the seconds at
    120 bpm (:func:`composer.tokens.beats.beats_of`)."""
    if not isinstance(notes, Piece):
        arr = as_note_array(notes)
        notes = Piece(arr, float(arr["end"].max()) if len(arr) else 0.0)
    if beats is None:
        beats = beats_of(notes)
    elif len(beats) != len(notes.notes):
        raise MetricsError(f"{len(beats)} beat rows for {len(notes.notes)} notes")
    keep = ~notes.notes["is_drum"]
    arr, beats = notes.notes[keep], np.asarray(beats)[keep]
    order = np.lexsort((arr["pitch"], arr["start"]))
    return dataclasses.replace(notes, notes=arr[order], beats=beats[order])


def _same_pitch(arr: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(starts, ends) of the notes of each pitch, by start (ties: the shorter first)."""
    for p in np.unique(arr["pitch"]):
        one = arr[arr["pitch"] == p]
        order = np.lexsort((one["end"], one["start"]))
        yield one["start"][order], one["end"][order]


def restrike_share(notes: NoteInput) -> float:
    """Share of notes that re-strike a sounding pitch: a note whose start lies before the
    end of an earlier-started note of the same pitch (of two starting together, the second
    in (start, end) order). A note starting where the last one ends is not one. 0.0 with no
    notes."""
    arr = as_note_array(notes)
    hits = sum(int((s[1:] < np.maximum.accumulate(e)[:-1]).sum()) for s, e in _same_pitch(arr))
    return hits / len(arr) if len(arr) else 0.0


def longest_run(notes: NoteInput, gap: float = RUN_GAP) -> float:
    """The longest unbroken same-pitch run, in seconds: the longest interval of the union of
    one pitch's notes, with notes at most ``gap`` seconds apart joined (a held or re-struck
    drone). The longest note when nothing joins; 0.0 with no notes."""
    best = 0.0
    for s, e in _same_pitch(as_note_array(notes)):
        reach = np.maximum.accumulate(e)  # (n,) latest end so far
        run = np.cumsum(np.r_[True, s[1:] > reach[:-1] + gap]) - 1  # (n,) run of each note
        first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])  # (r,) first note per run
        ends = np.maximum.reduceat(e, first)  # (r,) end of each run
        best = max(best, float((ends - s[first]).max()))
    return best


def long_note_share(notes: NoteInput, longest: float) -> float:
    """Share of notes lasting longer than ``longest`` seconds (e.g. the reference corpus's
    longest note); 0.0 with no notes."""
    arr = as_note_array(notes)
    return float(((arr["end"] - arr["start"]) > longest).mean()) if len(arr) else 0.0


def max_polyphony(notes: NoteInput) -> int:
    """The most notes sounding at once (a note ending when another starts does not overlap
    it)."""
    arr = as_note_array(notes)
    times = np.r_[arr["start"], arr["end"]]
    delta = np.r_[np.ones(len(arr), np.int64), -np.ones(len(arr), np.int64)]
    order = np.lexsort((delta, times))  # at equal times, ends (-1) before starts (+1)
    return int(np.cumsum(delta[order]).max()) if len(arr) else 0


# Per-piece features (Yang & Lerch 2018, plus polyphony, density and silence). Notes are
# taken in (start, pitch) order for the transitions and intervals; drums are left out.
FEATURES = {  # name -> (shape, what it is)
    "pitch_count": ((), "distinct pitches"),
    "pitch_class_histogram": ((12,), "share of notes per pitch class"),
    "pitch_class_transition_matrix": ((12, 12), "share of successive pitch-class pairs"),
    "pitch_range": ((), "highest minus lowest pitch (semitones)"),
    "avg_pitch_interval": ((), "mean |interval| between successive notes (semitones)"),
    "note_count": ((), "notes"),
    "avg_ioi": ((), "mean time between successive distinct onsets (s)"),
    "note_length_histogram": ((12,), "share of notes per length bin"),
    "polyphony": ((), "mean notes sounding while any sounds"),
    "max_polyphony": ((), "most notes sounding at once"),
    "notes_per_second": ((), "notes per second"),
    "silence_fraction": ((), "share of time with no note sounding"),
    "restrike_share": ((), "share of notes re-striking a sounding pitch"),
    "longest_run": ((), f"longest unbroken same-pitch run (s; gaps <= {RUN_GAP:g} s join)"),
    "grid_share": ((), f"share of onsets on the 1/{GRID_STEPS}-beat grid (1 tick tolerance)"),
}
# Note-length bins (seconds): 10 octave bins from 1/32 s to 32 s, plus below and above.
LENGTH_EDGES = 2.0 ** np.arange(-5, 6)


def piece_features(notes: NoteInput, beats: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """Every feature of :data:`FEATURES` for one piece (float arrays of the listed shapes).
    ``beats``: the notes' starts and ends in beats (see :func:`pitched`), for grid_share."""
    piece = pitched(notes, beats)
    arr = piece.notes
    p, n = arr["pitch"].astype(np.int64), len(arr)
    last = float(arr["end"].max()) if n else 0.0
    onsets = np.unique(arr["start"])
    pc = p % 12
    f = {"pitch_count": len(np.unique(p)),
         "pitch_class_histogram": np.bincount(pc, minlength=12) / max(n, 1),
         "pitch_class_transition_matrix":
             np.bincount(pc[:-1] * 12 + pc[1:], minlength=144).reshape(12, 12) / max(n - 1, 1),
         "pitch_range": np.ptp(p) if n else 0,
         "avg_pitch_interval": np.abs(np.diff(p)).mean() if n > 1 else 0.0,
         "note_count": n,
         "avg_ioi": np.diff(onsets).mean() if len(onsets) > 1 else 0.0,
         "note_length_histogram": np.bincount(np.searchsorted(
             LENGTH_EDGES, arr["end"] - arr["start"], side="right"), minlength=12) / max(n, 1),
         "silence_fraction": silence_fraction(arr), "max_polyphony": max_polyphony(arr),
         "restrike_share": restrike_share(arr), "longest_run": longest_run(arr),
         "grid_share": grid_fraction(piece, GRID_STEPS)}
    sounding = last * (1 - f["silence_fraction"])
    f["polyphony"] = (arr["end"] - arr["start"]).sum() / sounding if sounding > 0 else 0.0
    f["notes_per_second"] = n / last if last > 0 else 0.0
    return {k: np.asarray(f[k], np.float64) for k in FEATURES}


@dataclass(frozen=True)
class MusicConfig(Config):
    """Settings of :func:`compare_sets`."""

    _error = MetricsError
    _name = "music statistics settings"

    max_pairs: int = 20_000  # distances kept per distribution (a seeded random subset)
    grid: int = 256  # points at which the densities are evaluated
    seed: int = 0


def _kde(x: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """Gaussian kernel density (bandwidth h) of samples ``x`` on ``grid``; NaN if no samples."""
    if len(x) == 0:
        return np.full(len(grid), np.nan)
    dens = np.zeros(len(grid))
    for c in range(0, len(x), 2048):  # (grid, chunk) at a time
        dens += np.exp(-0.5 * ((grid[:, None] - x[None, c : c + 2048]) / h) ** 2).sum(1)
    dens /= len(x) * h * math.sqrt(2 * math.pi)
    return dens


def _overlap_kl(p: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """Overlap area and KL(p || q) of two densities on an even grid (each normalised there)."""
    if np.isnan(p).any() or np.isnan(q).any():
        return float("nan"), float("nan")
    p, q = p / p.sum(), q / q.sum()
    kl = np.sum(p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300))))
    return float(np.minimum(p, q).sum()), float(max(kl, 0.0))


def _pairs(n: int, m: int | None, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Index pairs (i, j): all i < j of n items (m None) or all of n x m; ``cap`` random
    pairs (i != j for one set) where there are more."""
    total = n * (n - 1) // 2 if m is None else n * m
    if total <= cap:
        return np.triu_indices(n, 1) if m is None else np.divmod(np.arange(total), m)
    i, j = rng.integers(0, n, cap), rng.integers(0, n - 1 if m is None else m, cap)
    return i, (j + (j >= i) if m is None else j)


def _same_pieces(a: Sequence[NoteInput], b: Sequence[NoteInput]) -> bool:
    """Whether two sets hold equal pieces in the same order (file i of one is file i of b)."""
    return a is b or len(a) == len(b) and all(
        x is y or np.array_equal(as_note_array(x), as_note_array(y))
        for x, y in zip(a, b, strict=True))


def beyond_reference(generated: Sequence[NoteInput], reference: Sequence[NoteInput],
                     gap: float = RUN_GAP) -> dict[str, Any]:
    """What the generated set does that the reference never does: each set's longest note
    and longest same-pitch run (s, drums left out), the share of generated notes longer than
    the reference's longest note (all pieces' notes pooled), and the share of generated
    pieces with a run longer than the reference's longest run."""
    sets = {"generated": [pitched(x).notes for x in generated],
            "reference": [pitched(x).notes for x in reference]}
    note = {k: max((float((a["end"] - a["start"]).max()) for a in v if len(a)), default=0.0)
            for k, v in sets.items()}
    runs = {k: [longest_run(a, gap) for a in v] for k, v in sets.items()}
    pooled = np.concatenate(sets["generated"]) if generated else as_note_array([])
    return {"longest_note": note, "longest_run": {k: max(v, default=0.0) for k, v in runs.items()},
            "longer_notes_share": long_note_share(pooled, note["reference"]),
            "longer_runs_share": float(np.mean([r > max(runs["reference"], default=0.0)
                                               for r in runs["generated"]]))
            if runs["generated"] else 0.0}


def compare_sets(generated: Sequence[NoteInput], reference: Sequence[NoteInput],
                 config: MusicConfig = MusicConfig()) -> dict[str, Any]:
    """Yang & Lerch's comparison of a generated set with a reference set, feature by feature.

    Distances are Euclidean between per-piece features: intra-set (all pairs within a set)
    and inter-set (every generated piece against every reference piece; when both sets hold
    the same pieces in the same order (equal notes, whether or not the same list), the pairs
    of a piece with itself are left out, so a set compared with itself gives inter == intra).
    Each feature gets both sets' mean and std (scalar features), the mean distances, and the
    overlap area and KL divergence of the reference's intra-set density with the inter-set density
    (``overlap``, ``kl``; 1 and 0 when the generated set is spread like the reference) and
    of the generated set's (``overlap_generated``, ``kl_generated``; NaN with one piece),
    plus the densities (``kde``) for :func:`composer.midi.render.plot_distributions`.
    ``beyond_reference``: see :func:`beyond_reference`.
    """
    if len(reference) < 2 or len(generated) < 1:
        raise MetricsError("need at least 2 reference pieces and 1 generated piece "
                           f"(got {len(reference)} and {len(generated)})")
    rng = np.random.default_rng(config.seed)
    fg = [piece_features(x) for x in generated]
    fr = [piece_features(x) for x in reference]
    out: dict[str, Any] = {"generated_files": len(generated), "reference_files": len(reference),
                           "beyond_reference": beyond_reference(generated, reference),
                           "features": {}}
    pairs = {"intra_reference": _pairs(len(fr), None, config.max_pairs, rng),
             "intra_generated": _pairs(len(fg), None, config.max_pairs, rng)}
    i, j = _pairs(len(fg), len(fr), config.max_pairs, rng)
    keep = i != j if _same_pieces(generated, reference) else np.ones(len(i), bool)
    pairs["inter"] = i[keep], j[keep]
    for name, (shape, what) in FEATURES.items():
        g = np.stack([f[name].ravel() for f in fg])  # (G, d)
        r = np.stack([f[name].ravel() for f in fr])  # (R, d)
        sets = {"intra_reference": (r, r), "intra_generated": (g, g), "inter": (g, r)}
        dist = {k: np.linalg.norm(a[pairs[k][0]] - b[pairs[k][1]], axis=-1)
                for k, (a, b) in sets.items()}
        every = np.concatenate(list(dist.values()))
        spread = float(np.ptp(every)) if len(every) else 0.0
        # One bandwidth for all three, Scott's rule on the reference's intra-set distances,
        # so that equal samples give equal densities whatever their sizes.
        ref = dist["intra_reference"]
        h = max(1e-3 * (spread or 1.0), ref.std(ddof=1) * len(ref) ** -0.2 if len(ref) > 1
                else 0.0)
        grid = np.linspace(every.min() - 3 * h, every.max() + 3 * h, config.grid)
        dens = {k: _kde(v, grid, h) for k, v in dist.items()}
        oa, kl = _overlap_kl(dens["intra_reference"], dens["inter"])
        oa_g, kl_g = _overlap_kl(dens["intra_generated"], dens["inter"])
        entry = {"description": what, "shape": list(shape), "overlap": oa, "kl": kl,
                 "overlap_generated": oa_g, "kl_generated": kl_g,
                 **{f"mean_{k}": float(v.mean()) if len(v) else float("nan")
                    for k, v in dist.items()},
                 "kde": {"x": grid.tolist(), **{k: v.tolist() for k, v in dens.items()}}}
        for key, m in (("generated", g), ("reference", r)):  # scalars: mean, std; else mean
            entry[key] = ({"mean": m.mean(0).reshape(shape).tolist()} if shape
                          else {"mean": float(m.mean()), "std": float(m.std())})
        out["features"][name] = entry
    return out
