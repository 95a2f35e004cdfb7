"""Measures of music and of models: how a piece sounds in numbers, and how well a model fits.

- **Model fit** (:func:`evaluate_model`): the LSTM's negative log-likelihood (nats/event),
  perplexity and next-event accuracy on a split, next to two baselines fitted on the train
  split in the same run and scored on exactly the same targets (every event of a file but
  its first): an add-alpha :class:`Unigram` and an interpolated Kneser-Ney :class:`NGram`
  (order 5; Chen & Goodman 1998), whose probabilities are all > 0.
- **Music statistics** (:func:`piece_features`, :func:`compare_sets`), after Yang & Lerch
  (2018, "On the evaluation of generative models in music", mgeval): per-piece features,
  intra-set and inter-set distance distributions, their overlap area and KL divergence.
- **Copy check** (:class:`CopyIndex`): the longest run of events of a piece that occurs in
  the training corpus, transposition-invariant, from an n-gram index built once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from composer import Config
from composer._ngram import MetricsError, NGram, Unigram, score
from composer.events import DEFAULT_CONFIG, NOTE_OFF, TIME_SHIFT, VELOCITY, EventConfig, Vocabulary
from composer.midi import NoteInput, as_note_array

Progress = Callable[[str, int, int], None]  # (stage, done, total)


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


@dataclass(frozen=True)
class EvalConfig(Config):
    """Settings of :func:`evaluate_model`."""

    _error = MetricsError
    _name = "evaluation settings"

    order: int = 5  # n-gram baseline order
    unigram_alpha: float = 1.0  # add-alpha smoothing of the unigram baseline
    seq_len: int = 0  # LSTM evaluation window (0: the checkpoint's training seq_len)
    batch_size: int = 0  # LSTM evaluation batch (0: the checkpoint's)


def evaluate_model(checkpoint: str | os.PathLike, corpus: Any = None, split: str = "test", *,
                   train_corpus: Any = None, config: EvalConfig = EvalConfig(),
                   device: str = "auto", progress: Progress | None = None) -> dict[str, Any]:
    """LSTM vs unigram vs n-gram on the same events: ``{"models": {name: {loss, perplexity,
    accuracy, events}}, "ahead": {baseline: {loss, perplexity_ratio, accuracy}}, ...}``.

    ``corpus``: a :class:`~composer.corpus.Corpus` or prepared cache folder (its ``split``,
    or ``"all"``); a MIDI folder (prepared with the checkpoint's event settings into its
    default cache; all its files are evaluated); None: the corpus the checkpoint trained on
    (``data.corpus`` in checkpoint.json). The baselines are fitted on the train split of
    ``train_corpus``, by default that training corpus, so they see what the LSTM saw.
    ``progress(stage, done, total)`` reports "ingest" (files) and "evaluate" (batches).
    """
    from composer.checkpoint import load_checkpoint
    from composer.corpus import SPLITS, Corpus, prepare
    from composer.train import TrainConfig, evaluate, resolve_device

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, map_location=dev)
    events = EventConfig.from_dict(ckpt.event_config)
    trained_on, settings = _training_corpus(ckpt.data, events)

    def open_source(source: Any, what: str) -> Corpus:
        if source is None and trained_on is None:
            raise MetricsError(f"the corpus {checkpoint} was trained on is not here "
                               f"({ckpt.data.get('corpus') or 'not recorded'}); give the {what}")
        source = trained_on if source is None else source
        if not isinstance(source, Corpus) and not (Path(source) / "corpus.json").is_file():
            tick = progress and (lambda done, total: progress("ingest", done, total))
            source = prepare(source, config=settings, progress=tick).cache_dir
        found = source if isinstance(source, Corpus) else Corpus.open(source)
        if found.config.events != events:
            raise MetricsError(f"{found.cache_dir} has other event settings than {checkpoint}")
        return found

    if corpus is not None and not isinstance(corpus, Corpus):
        split = split if (Path(corpus) / "corpus.json").is_file() else "all"  # MIDI: all files
    data = open_source(corpus, "corpus to evaluate on")
    fit_on = open_source(train_corpus, "training corpus for the baselines")
    splits = list(SPLITS) if split == "all" else [split]
    sequences = [s for name in splits for s in data.sequences(name)]
    if not sum(len(s) > 1 for s in sequences):
        raise MetricsError(f"no events to evaluate in split {split!r} of {data.cache_dir}")
    cfg = replace(TrainConfig.from_dict(ckpt.train_config), eval_max_batches=0)
    cfg = replace(cfg, seq_len=config.seq_len or cfg.seq_len,
                  batch_size=config.batch_size or cfg.batch_size)
    windows = [sum(-(-max(len(s) - 1, 0) // cfg.seq_len) for s in data.sequences(name))
               for name in splits]
    total, done, sums = sum(-(-w // cfg.batch_size) for w in windows), [0], np.zeros(3)

    def tick(*_: Any) -> None:  # a forward hook: one call per evaluation batch
        done[0] += 1
        if progress:
            progress("evaluate", done[0], total)

    hook = ckpt.model.register_forward_hook(tick)
    for name in splits:  # sums: loss sum, events, correct predictions
        m = evaluate(ckpt.model, data, name, cfg, dev)
        sums += [m["loss"] * m["events"], m["events"], m["accuracy"] * m["events"]] \
            if m["events"] else 0
    hook.remove()
    train_seqs, vocab = fit_on.sequences("train"), Vocabulary(events).size
    loss = sums[0] / sums[1]
    results = {"LSTM": {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                        "accuracy": sums[2] / sums[1], "events": int(sums[1])},
               f"{config.order}-gram KN": score(NGram(train_seqs, vocab, config.order), sequences),
               "unigram": score(Unigram(train_seqs, vocab, config.unigram_alpha), sequences)}
    lstm = results["LSTM"]
    ahead = {name: {"loss": r["loss"] - lstm["loss"], "accuracy": lstm["accuracy"] - r["accuracy"],
                    "perplexity_ratio": r["perplexity"] / lstm["perplexity"]}
             for name, r in results.items() if name != "LSTM"}
    return {"checkpoint": str(ckpt.path), "corpus": str(data.cache_dir), "split": split,
            "files": len(sequences), "train_corpus": str(fit_on.cache_dir),
            "train_events": int(sum(len(s) for s in train_seqs)), "models": results,
            "ahead": ahead}


def _training_corpus(data: dict[str, Any], events: EventConfig) -> tuple[str | None, Any]:
    """Where a checkpoint's training corpus is: its cache if still there, else the MIDI folder
    it came from (relative paths are taken from the repository root, then the current
    folder), which gives the same splits when prepared with the recorded fractions."""
    from composer.corpus import CorpusConfig

    settings = CorpusConfig(events=events, **data.get("splits", {}))
    cache = data.get("corpus")
    if cache and (Path(cache) / "corpus.json").is_file():
        return cache, settings
    source = data.get("source")
    roots = (Path(__file__).resolve().parents[1], Path.cwd())
    for folder in [Path(source)] if source and Path(source).is_absolute() else \
            [r / source for r in roots] if source else []:
        if folder.is_dir():
            return str(folder), settings
    return None, settings


# ------------------------------------------------------------------------ music statistics

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
    "notes_per_second": ((), "notes per second"),
    "silence_fraction": ((), "share of time with no note sounding"),
}
# Note-length bins (seconds): 10 octave bins from 1/32 s to 32 s, plus below and above.
LENGTH_EDGES = 2.0 ** np.arange(-5, 6)


def piece_features(notes: NoteInput) -> dict[str, np.ndarray]:
    """Every feature of :data:`FEATURES` for one piece (float arrays of the listed shapes)."""
    arr = as_note_array(notes)
    arr = arr[~arr["is_drum"]]
    arr = arr[np.lexsort((arr["pitch"], arr["start"]))]
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
         "silence_fraction": silence_fraction(arr)}
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


def compare_sets(generated: Sequence[NoteInput], reference: Sequence[NoteInput],
                 config: MusicConfig = MusicConfig()) -> dict[str, Any]:
    """Yang & Lerch's comparison of a generated set with a reference set, feature by feature.

    Distances are Euclidean between per-piece features: intra-set (all pairs within a set)
    and inter-set (every generated piece against every reference piece, leaving out pairs of
    the very same object, so a set compared with itself gives inter == intra). Each feature
    gets both sets' mean and std (scalar features), the mean distances, and the overlap area
    and KL divergence of the reference's intra-set density with the inter-set density
    (``overlap``, ``kl``; 1 and 0 when the generated set is spread like the reference) and
    of the generated set's (``overlap_generated``, ``kl_generated``; NaN with one piece),
    plus the densities (``kde``) for :func:`composer.render.plot_distributions`.
    """
    if len(reference) < 2 or len(generated) < 1:
        raise MetricsError("need at least 2 reference pieces and 1 generated piece "
                           f"(got {len(reference)} and {len(generated)})")
    rng = np.random.default_rng(config.seed)
    fg = [piece_features(x) for x in generated]
    fr = [piece_features(x) for x in reference]
    pairs = {"intra_reference": _pairs(len(fr), None, config.max_pairs, rng),
             "intra_generated": _pairs(len(fg), None, config.max_pairs, rng)}
    i, j = _pairs(len(fg), len(fr), config.max_pairs, rng)
    keep = np.array([generated[a] is not reference[b] for a, b in zip(i, j, strict=True)], bool)
    pairs["inter"] = i[keep], j[keep]
    out: dict[str, Any] = {"generated_files": len(generated), "reference_files": len(reference),
                           "features": {}}
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


# ------------------------------------------------------------------------------ copy check


@dataclass(frozen=True)
class CopyConfig(Config):
    """Settings of :class:`CopyIndex` and :func:`copy_warning`."""

    _error = MetricsError
    _name = "copy check settings"

    ngram: int = 12  # indexed window length (events); shorter runs are not found
    warn_seconds: float = 10.0  # copy_warning fires at runs this long


@dataclass
class CopyMatch:
    """The longest run of a piece's events found in the corpus (0 events: none found)."""

    events: int  # events in the run (VELOCITY events are not counted)
    seconds: float  # time the run spans in the piece
    piece_events: int  # events of the piece, counted the same way
    start_seconds: float = 0.0  # where the run starts in the piece
    source: str | None = None  # corpus file that holds it
    source_seconds: float = 0.0  # where it starts there
    transpose: int = 0  # semitones from the source to the piece

    @property
    def fraction(self) -> float:
        """Share of the piece's events in the run."""
        return self.events / self.piece_events if self.piece_events else 0.0


def _relative(tokens: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, ...]:
    """Transposition-invariant form of a token sequence, VELOCITY tokens dropped: symbols
    (L,) (NOTE_ON/OFF: the pitch step from the previous note event, or "first note";
    TIME_SHIFT as is), the step before each symbol and at the end (L+1,), and each symbol's
    MIDI pitch (L,; -1 for time shifts)."""
    ids = np.asarray(tokens, np.int64)
    ids = ids[(ids < vocab.ranges[VELOCITY].start) | (ids >= vocab.ranges[VELOCITY].stop)]
    kind, value = vocab._split(ids)
    shift, off = kind[TIME_SHIFT], kind[NOTE_OFF]
    pitch = np.where(shift, -1, value)
    notes = pitch[~shift]
    sym = np.where(shift, 1024 + value, 0)
    sym[~shift] = np.r_[256, np.diff(notes) + 127][: len(notes)] + np.where(off[~shift], 512, 0)
    return sym, np.r_[0, np.cumsum(np.where(shift, value, 0))], pitch


def _hashes(sym: np.ndarray, n: int) -> np.ndarray:
    """64-bit polynomial hashes (L-n+1,) of the length-n windows of ``sym``."""
    h = np.zeros(max(len(sym) - n + 1, 0), np.uint64)
    for j in range(n):
        h = h * np.uint64(0x100000001B3) + sym[j : j + len(h)].astype(np.uint64) + np.uint64(1)
    return h


class CopyIndex:
    """Index of every ``ngram``-event window of a corpus, for :meth:`longest_copy`.

    Windows are hashed in the transposition-invariant form of :func:`_relative`, so a
    transposed copy matches; velocities are ignored. Matching windows that follow each other
    on one diagonal (same offset between piece and corpus) join into one run of
    ``windows + ngram - 1`` events; the first note of a run may be lost to the pitch step
    from a note before it.
    """

    def __init__(self, sequences: Sequence[np.ndarray], names: Sequence[str],
                 events: EventConfig = DEFAULT_CONFIG, config: CopyConfig = CopyConfig()):
        self.vocab, self.config, self.names = Vocabulary(events), config, list(names)
        parts = [_relative(s, self.vocab) for s in sequences]
        lengths = np.array([len(p[0]) for p in parts], np.int64)
        self.starts = np.cumsum(lengths) - lengths  # (F,) first symbol of each file
        sym, self.step, self.pitch = (np.concatenate([p[i][: len(p[0])] for p in parts] or [[]])
                                      .astype(np.int64) for i in range(3))  # (S,) step: in file
        h = _hashes(sym, config.ngram)
        file_of = np.repeat(np.arange(len(parts)), lengths)  # (S,)
        ok = file_of[: len(h)] == file_of[config.ngram - 1 :] if len(h) else np.zeros(0, bool)
        pos = np.flatnonzero(ok)  # windows inside one file
        order = np.argsort(h[pos], kind="stable")
        self.keys, self.pos = h[pos][order], pos[order]

    @classmethod
    def from_corpus(cls, corpus: Any, splits: Sequence[str] = ("train",),
                    config: CopyConfig = CopyConfig()) -> CopyIndex:
        """Index the files of ``splits`` of a prepared :class:`~composer.corpus.Corpus`."""
        files = [i for s in splits for i in corpus.files(s)]
        return cls([corpus.sequence(i) for i in files], [corpus.paths[i] for i in files],
                   corpus.config.events, config)

    def longest_copy(self, tokens: np.ndarray, after_seconds: float = 0.0) -> CopyMatch:
        """The longest run of ``tokens`` (event ids) found in the corpus, counting only the
        events from ``after_seconds`` on (e.g. past a seed taken from the corpus)."""
        sym, step, pitch = _relative(tokens, self.vocab)
        sps, n = self.vocab.config.steps_per_second, self.config.ngram
        none = CopyMatch(0, 0.0, len(sym))
        h = _hashes(sym, n)
        lo, hi = np.searchsorted(self.keys, h, "left"), np.searchsorted(self.keys, h, "right")
        count = hi - lo
        if not count.sum():
            return none
        i = np.repeat(np.arange(len(h)), count)  # (P,) window of the piece
        c = self.pos[np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())]
        d = c - i  # diagonal
        order = np.lexsort((i, d))
        i, d = i[order], d[order]
        new = np.r_[True, (d[1:] != d[:-1]) | (i[1:] != i[:-1] + 1)]  # run starts
        first, last, d = i[new], i[np.r_[new[1:], True]] + n, d[new]  # (R,) symbols [first, last)
        begin = np.maximum(first, np.searchsorted(step, round(after_seconds * sps), "left"))
        best = int(np.argmax(last - begin))
        s, e = int(begin[best]), int(last[best])
        if e <= s:
            return none
        at, f = s + int(d[best]), int(np.searchsorted(self.starts, s + d[best], "right") - 1)
        notes = np.flatnonzero(pitch[s:e] >= 0)
        shift = int(pitch[s + notes[0]] - self.pitch[at + notes[0]]) if len(notes) else 0
        return CopyMatch(e - s, float(step[e] - step[s]) / sps, len(sym), float(step[s]) / sps,
                         self.names[f], float(self.step[at]) / sps, shift)


def copy_warning(match: CopyMatch, config: CopyConfig = CopyConfig()) -> str | None:
    """A one-line warning when ``match`` spans ``config.warn_seconds`` or more, else None."""
    if match.events == 0 or match.seconds < config.warn_seconds:
        return None
    moved = f", transposed {match.transpose:+d}" if match.transpose else ""
    return (f"copies {match.seconds:.1f} s ({match.events} events, {match.fraction:.0%} of the "
            f"piece) of {match.source} from {match.source_seconds:.1f} s{moved}")


def training_copy_index(data: dict[str, Any], events: EventConfig,
                        config: CopyConfig = CopyConfig()) -> CopyIndex | None:
    """Copy index of the train split a checkpoint learned from (``Checkpoint.data``), or None
    when neither its cache nor its source MIDI folder is here. A source folder is prepared
    into its default cache first (once; later calls reuse it)."""
    from composer.corpus import Corpus, prepare

    where, settings = _training_corpus(data, events)
    if where is None:
        return None
    if not (Path(where) / "corpus.json").is_file():
        where = prepare(where, config=settings).cache_dir
    corpus = Corpus.open(where)
    return CopyIndex.from_corpus(corpus, ("train",), config) \
        if corpus.config.events == events else None

