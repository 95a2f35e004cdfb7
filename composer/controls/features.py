"""Controls: what a model is conditioned on beside the tokens, computed from the music itself.

A control is a short vector fed to the model at every position next to the token's embedding
(:class:`~composer.model.lstm.ComposerLSTM`). Four exist; a model uses a subset, named in its
:class:`ControlSpec` (saved inside its ``ModelConfig``):

- ``density`` (width 1): note onsets per second in the window, fed as ``log1p(density)``;
- ``pitch-classes`` (width 12): the pitch-class histogram of the onsets in the window
  (C, C#, ..., B; sums to 1; all zeros when the window holds no note);
- ``style`` (one per style): one-hot of the training folder's immediate subfolder the piece
  came from (``bach/``, ``folk/``); a folder without subfolders has no style control;
- ``tempo`` (width 1, beat vocabulary only): the piece's tempo, ``log2(qpm / 120)``.

**The window** (as Performance RNN does, with one length for both): the control at position
i describes the notes that *start* in the ``window_seconds`` (4 s) of music from the time of
token i (the sum of the shifts up to and including it) onwards. It looks ahead because a
control is a request about what is played next: trained so, the model's next events are the
ones a request describes; a window behind would only describe what was already played.
Near a piece's end the density divides by the music left (at least 1 s), not by the full
window. The beat vocabulary's steps are turned into seconds at each piece's own tempo.

**Unset controls**: a NaN in a control's slots means "not given"; the model replaces it by a
learned vector (:meth:`~composer.model.lstm.ComposerLSTM.fill_controls`). Training sets each
control of a window to NaN with probability ``dropout``, so any subset can be given at
generation and none at all still works.

Controls are computed from the tokens when training starts (:func:`corpus_controls`, one
float16 row of ``width`` values per token, vectorised over chunks of about a million tokens
so the peak memory stays bounded) and kept beside the corpus cache as
``controls-KEY.npy`` (KEY: the corpus's content key and the control layout), memory-mapped
like the tokens (:func:`open_controls`); a cache prepared before controls existed serves as
it is. Measured on the chorales and O'Neill's tunes (865 files, 405k tokens, 16 values per
token): 0.8 s and 12 MiB the first time; drawing a batch of 64 x 256 with its controls takes
16 ms instead of 5 (2 cores).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composer.core.config import Config
from composer.core.files import atomic_write
from composer.core.messages import ComposerError, is_number
from composer.corpus.keys import style_labels
from composer.tokens.beats import clock_from
from composer.tokens.vocab import Events

DENSITY, PITCH_CLASSES, STYLE, TEMPO = "density", "pitch-classes", "style", "tempo"
NAMES = (DENSITY, PITCH_CLASSES, STYLE, TEMPO)  # the order of the slots in a control vector
AUTO, NONE = "auto", "none"
REFERENCE_QPM = 120.0  # tempo feature 0
MIN_SPAN_SECONDS = 1.0  # near a piece's end the density divides by at least this much music
CHUNK_TOKENS = 1 << 20  # controls are computed this many tokens (whole files) at a time
VERSION = 1  # bump when the computation changes, to invalidate stored control arrays


class ControlError(ComposerError):
    """A control request or layout that cannot be met (one line)."""


@dataclass(frozen=True)
class ControlSpec(Config):
    """Which controls a model takes and their layout (saved in its ModelConfig)."""

    _error = ControlError
    _name = "controls"

    names: tuple[str, ...] = ()  # a subset of NAMES, in NAMES order; () = no controls
    styles: tuple[str, ...] = ()  # the style labels (subfolder names), when "style" is used
    window_seconds: float = 4.0  # the look-ahead window of density and pitch classes
    dropout: float = 0.25  # training: chance that a window has a control unset (NaN)

    def __post_init__(self) -> None:
        names, styles = tuple(self.names), tuple(self.styles)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "styles", styles)
        unknown = [n for n in names if n not in NAMES]
        if unknown or len(set(names)) != len(names):
            raise ControlError(f"controls: unknown or repeated control in {', '.join(names)}; "
                               f"expected some of {', '.join(NAMES)}")
        object.__setattr__(self, "names", tuple(n for n in NAMES if n in names))
        if (STYLE in names) != bool(styles) or len(set(styles)) != len(styles):
            raise ControlError("controls: the style control needs distinct style labels, and "
                               "style labels need the style control")
        w, p = self.window_seconds, self.dropout
        if not (is_number(w) and math.isfinite(w) and w > 0):
            raise ControlError(f"controls: window_seconds must be a number > 0, got {w!r}")
        if not (is_number(p) and 0 <= p < 1):
            raise ControlError(f"controls: dropout must be a number in [0, 1), got {p!r}")

    def widths(self) -> dict[str, int]:
        """Each control's width, in slot order."""
        sizes = {DENSITY: 1, PITCH_CLASSES: 12, STYLE: len(self.styles), TEMPO: 1}
        return {n: sizes[n] for n in self.names}

    @property
    def width(self) -> int:
        """Length of the control vector (0: a model without controls)."""
        return sum(self.widths().values())

    def slices(self) -> dict[str, slice]:
        """Where each control sits in the control vector."""
        out, at = {}, 0
        for name, w in self.widths().items():
            out[name], at = slice(at, at + w), at + w
        return out


def density_feature(notes_per_second: np.ndarray | float) -> np.ndarray:
    """What the model is fed for a density: ``log1p(notes per second)``."""
    return np.log1p(np.asarray(notes_per_second, dtype=np.float64))


def tempo_feature(qpm: np.ndarray | float) -> np.ndarray:
    """What the model is fed for a tempo: ``log2(qpm / 120)``."""
    return np.log2(np.asarray(qpm, dtype=np.float64) / REFERENCE_QPM)


def choose_spec(request: str, events: Events, paths: Sequence[str]) -> ControlSpec:
    """The :class:`ControlSpec` of a ``--controls`` request: ``none``, ``auto`` (density and
    pitch classes, + style when the folder has subfolders, + tempo on the beat vocabulary),
    or a comma list of names."""
    styles = style_labels(paths)
    if request == NONE:
        return ControlSpec()
    if request == AUTO:
        names = [DENSITY, PITCH_CLASSES] + [STYLE] * bool(styles) + [TEMPO] * events.is_notes
    else:
        names = [n.strip() for n in request.split(",") if n.strip()]
        bad = [n for n in names if n not in NAMES]
        if bad or not names:
            raise ControlError(f"unknown control {bad[0] if bad else request!r}; expected "
                               f"{AUTO}, {NONE} or some of {', '.join(NAMES)}")
    if STYLE in names and not styles:
        raise ControlError("the style control needs a training folder with subfolders (one "
                           "per style); this corpus has none")
    if TEMPO in names and not events.is_notes:
        raise ControlError("the tempo control needs the beat vocabulary (--events notes); "
                           "performance events carry no tempo")
    return ControlSpec(tuple(names), styles if STYLE in names else ())


def open_controls(corpus: Any, spec: ControlSpec) -> np.ndarray:
    """(N, width) float16 controls of a :class:`~composer.corpus.cache.Corpus`, memory-mapped from
    its cache folder (computed and stored there the first time; in memory when the folder
    cannot be written)."""
    if corpus.key is None:  # no content key to name the stored array by
        return corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    blob = json.dumps([VERSION, corpus.key, spec.to_dict()], sort_keys=True)
    key = hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()
    path = Path(corpus.cache_dir) / f"controls-{key}.npy"
    shape = (len(corpus.tokens), spec.width)
    try:
        table = np.load(path, mmap_mode="r")
        if table.shape == shape and table.dtype == np.float16:
            return table
    except (OSError, ValueError):
        pass

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec, out)
        out.flush()
        del out

    try:
        atomic_write(path, write)
    except ComposerError:  # a read-only or full cache: the same values, in memory
        return corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    return np.load(path, mmap_mode="r")


def corpus_controls(tokens: np.ndarray, index: np.ndarray, paths: Sequence[str],
                    events: Events, spec: ControlSpec, out: np.ndarray | None = None
                    ) -> np.ndarray:
    """(N, width) float16: the control vector at every token of a corpus (``tokens`` (N,),
    ``index`` and ``paths`` as in :class:`~composer.corpus.cache.Corpus`, files stored in index
    order), written into ``out`` when given. Whole files of about CHUNK_TOKENS at a time."""
    out = np.full((len(tokens), spec.width), np.nan, np.float16) if out is None else out
    first = 0
    while first < len(index):
        ends = np.cumsum(index["length"][first:])
        last = first + max(1, int(np.searchsorted(ends, CHUNK_TOKENS, "right")))
        part = index[first:last].copy()
        o, n = int(part["offset"][0]), int(part["length"].sum())
        part["offset"] -= o
        out[o : o + n] = _controls(tokens[o : o + n], part, paths[first:last], events, spec)
        first = last
    return out


def _controls(tokens: np.ndarray, index: np.ndarray, paths: Sequence[str],
              events: Events, spec: ControlSpec) -> np.ndarray:
    """:func:`corpus_controls` of a few files in one vectorised pass: every file's times, in
    seconds, are laid end to end with gaps wider than the window."""
    n = len(tokens)
    out = np.full((n, spec.width), np.nan, np.float16)
    if not n or not spec.width:
        return out
    ids = np.asarray(tokens, dtype=np.int64)
    file_of = np.repeat(np.arange(len(index)), index["length"])  # (N,)
    sps = np.array([events.steps_per_second(clock_from(u)) for u in index["us_per_quarter"]])
    steps = events.token_steps()[ids]  # (N,)
    cs = np.concatenate([[0], np.cumsum(steps)])  # (N+1,) steps before each token
    local = cs[1:] - np.repeat(cs[index["offset"]], index["length"])  # (N,) within its file
    ends = np.zeros(len(index), np.int64)  # (F,) each file's length in steps
    last = index["offset"] + index["length"] - 1
    ends[index["length"] > 0] = local[last[index["length"] > 0]]
    w, slots = spec.window_seconds, spec.slices()
    # In whole steps, so that an onset exactly at the window's end is left out whatever the
    # chunk: onset < t + w * sps  <=>  onset < t + ceil(w * sps) (steps are integers).
    win = np.ceil(w * sps - 1e-9).astype(np.int64)  # (F,) the window in each file's steps
    base = np.concatenate([[0], np.cumsum(ends + 2 * win + 1)[:-1]])  # (F,) files apart
    t = local + base[file_of]  # (N,) one monotone clock (steps) for all these files
    starts = events.note_start_ids()
    onset = (ids >= starts.start) & (ids < starts.stop)
    lo = np.searchsorted(t[onset], t, "left")  # (N,) first onset at or after each token
    hi = np.searchsorted(t[onset], t + win[file_of], "left")  # (N,) first past the window
    if DENSITY in slots:
        left = (ends[file_of] - local) / sps[file_of]  # (N,) seconds of music left
        span = np.clip(left, MIN_SPAN_SECONDS, w)  # (N,)
        out[:, slots[DENSITY]] = density_feature((hi - lo) / span)[:, None]
    if PITCH_CLASSES in slots:
        pitch = ids[onset] - starts.start + events.config.min_pitch  # (M,)
        cum = np.zeros((pitch.size + 1, 12), np.int32)  # onsets of each class before m
        cum[1:] = np.cumsum(np.eye(12, dtype=np.int32)[pitch % 12], axis=0)
        hist = (cum[hi] - cum[lo]).astype(np.float32)  # (N, 12)
        out[:, slots[PITCH_CLASSES]] = hist / np.maximum(hist.sum(1, keepdims=True), 1)
    if STYLE in slots:
        one_hot = np.full((len(index), len(spec.styles)), np.nan, np.float32)  # no style: unset
        for f, p in enumerate(paths):
            label = style_labels([p])
            if label and label[0] in spec.styles:
                one_hot[f] = np.eye(len(spec.styles))[spec.styles.index(label[0])]
        out[:, slots[STYLE]] = one_hot[file_of]
    if TEMPO in slots:
        qpm = 60e6 / np.array([clock_from(u).us_per_quarter for u in index["us_per_quarter"]])
        out[:, slots[TEMPO]] = tempo_feature(qpm)[file_of, None]
    return out


def rotate_pitch_classes(controls: np.ndarray, k: np.ndarray, spec: ControlSpec) -> np.ndarray:
    """``controls`` (B, T, C) with each row b's pitch-class histogram moved up ``k[b]``
    semitones (class p's share goes to class (p + k) mod 12), as transposing the row does."""
    if PITCH_CLASSES not in spec.names:
        return controls
    s = spec.slices()[PITCH_CLASSES]
    src = (np.arange(12)[None, :] - np.asarray(k)[:, None]) % 12  # (B, 12)
    out = controls.copy()
    out[:, :, s] = np.take_along_axis(controls[:, :, s], src[:, None, :], axis=2)
    return out


def stretch_density(controls: np.ndarray, factor: np.ndarray, spec: ControlSpec) -> np.ndarray:
    """``controls`` (B, T, C) with each row's density divided by its time-stretch ``factor``
    (B,) (music played ``factor`` times slower holds 1/factor the notes per second)."""
    if DENSITY not in spec.names:
        return controls
    s = spec.slices()[DENSITY]
    out = controls.copy()
    d = np.expm1(controls[:, :, s].astype(np.float64))  # (B, T, 1) notes per second
    out[:, :, s] = density_feature(d / np.asarray(factor, np.float64)[:, None, None])
    return out


def drop_controls(controls: np.ndarray, rng: np.random.Generator, spec: ControlSpec
                  ) -> np.ndarray:
    """``controls`` (B, T, C) with each control of each row set to NaN (unset) with
    probability ``spec.dropout`` (a whole window at a time, as a request is given or not)."""
    if not spec.dropout or not spec.width:
        return controls
    out = controls.copy()
    drop = rng.random((controls.shape[0], len(spec.names))) < spec.dropout  # (B, K)
    for j, s in enumerate(spec.slices().values()):
        out[drop[:, j], :, s] = np.nan
    return out
