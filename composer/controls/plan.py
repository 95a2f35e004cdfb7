"""Steering: a user's control requests (generate's flags, a JSON plan) as control vectors.

A request names controls by what they mean (:mod:`composer.controls.features`): ``density`` (notes
per second), ``key`` (``"D minor"``, ``"Bb major"``, ``"F#m"``) or ``pitch-classes`` (12
weights, C first), ``style`` (a label the model was trained with) and ``tempo`` (quarter
notes per minute, beat vocabulary). A key becomes the pitch-class profile Performance RNN's
users give by hand: weight 2 on the tonic, 1 on the other notes of its scale, 0 elsewhere,
normalised to sum 1. The major scale has 7 notes; the minor scale is the natural minor plus
the raised seventh (the leading tone of harmonic minor, ubiquitous in real minor-key music),
8 notes. :func:`key_scale` gives the same sets for the in-key share of the obedience check.

**A plan** (``--controls plan.json``) is a JSON list of segments, each ``{"from": SECONDS,
...controls}``, in increasing ``from`` order, e.g. ``[{"from": 0, "density": 2},
{"from": 20, "density": 6, "key": "A minor"}]``. Seconds count generated music from the end
of the seed; a control set in a segment holds until a later segment sets it again (``null``
unsets it). The flags are a segment at 0 s that the plan's segments build on. Tempo is one
per piece (the beat vocabulary writes one tempo): it may be given only at 0 s.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer.controls.features import (
    DENSITY,
    PITCH_CLASSES,
    STYLE,
    TEMPO,
    ControlError,
    ControlSpec,
    density_feature,
    tempo_feature,
)
from composer.core import bounds
from composer.core.files import read_regular

KEY = "key"
REQUESTS = (DENSITY, KEY, PITCH_CLASSES, STYLE, TEMPO)  # what a segment may set
MAX_PLAN_BYTES = 1 << 20
_NOTE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor + the raised seventh
_KEY_RE = re.compile(r"^([a-g])([#b♯♭]?)\s*(major|maj|minor|min|m)?$")


@dataclass(frozen=True)
class ControlPlan:
    """Control vectors over generated time: segment s holds from ``starts[s]`` seconds."""

    starts: np.ndarray  # (S,) float64 seconds, increasing, starts[0] == 0
    values: np.ndarray  # (S, C) float32; NaN = unset (the model's learned default)
    tempo: float | None = None  # quarter notes per minute asked for, if any

    def at(self, seconds: float) -> np.ndarray:
        """(C,) the control vector at ``seconds`` of generated music."""
        return self.values[np.searchsorted(self.starts, seconds, "right") - 1]

    def asks(self, spec: ControlSpec, name: str) -> bool:
        """Whether the plan sets control ``name`` (of a model of ``spec``) anywhere."""
        slot = spec.slices().get(name)
        return slot is not None and not np.isnan(self.values[:, slot]).all()


def parse_key(text: str) -> tuple[int, bool]:
    """``(tonic pitch class, is_minor)`` of a key name like ``D minor``, ``Bb``, ``F#m``."""
    m = _KEY_RE.match(str(text).strip().lower().replace("-", " ")) if isinstance(
        text, str) else None
    if m is None:
        raise ControlError(f"unknown key {text!r}: a key is a note C..B with # or b and "
                           "major or minor, e.g. 'D minor', 'Bb major', 'F#m'")
    tonic = (_NOTE[m[1]] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(m[2], 0)) % 12
    return tonic, (m[3] or "major") in ("minor", "min", "m")


def key_scale(text: str) -> np.ndarray:
    """(12,) bool: the pitch classes of the key's scale (see the module docstring)."""
    tonic, minor = parse_key(text)
    mask = np.zeros(12, bool)
    mask[(np.array(MINOR_SCALE if minor else MAJOR_SCALE) + tonic) % 12] = True
    return mask


def key_profile(text: str) -> np.ndarray:
    """(12,) float: the pitch-class histogram a key request stands for (2 on the tonic, 1
    on the rest of its scale, normalised)."""
    weights = key_scale(text).astype(np.float64)
    weights[parse_key(text)[0]] = 2.0
    return weights / weights.sum()


def _weight(value: Any) -> float:
    return bounds.PITCH_WEIGHT.check(value, ControlError)


def pitch_classes(values: Sequence[Any] | str) -> np.ndarray:
    """(12,) normalised histogram of 12 weights >= 0 (a list, or a comma-separated string)."""
    if isinstance(values, str):
        try:
            values = [float(v) for v in values.split(",")]
        except ValueError:
            raise ControlError(f"pitch classes must be 12 numbers, got {values!r}") from None
    if not isinstance(values, (list, tuple)) or len(values) != 12:
        raise ControlError(f"pitch classes must be 12 numbers (C first), got {values!r}")
    out = np.array([_weight(v) for v in values])
    if not np.isfinite(out.sum()):  # cannot happen within PITCH_WEIGHT; never passed on
        raise ControlError("pitch-class weights must have a finite sum")
    if out.sum() <= 0:
        raise ControlError("pitch classes must not all be 0")
    return out / out.sum()


def takes_words(spec: ControlSpec) -> str:
    """What a model with ``spec`` takes, in one phrase: ``density, key (or pitch-classes),
    style (bach, folk), tempo``, or ``no controls``."""
    words = {DENSITY: DENSITY, PITCH_CLASSES: f"{KEY} (or {PITCH_CLASSES})",
             STYLE: f"{STYLE} ({', '.join(spec.styles)})", TEMPO: TEMPO}
    return ", ".join(words[n] for n in spec.names) or "no controls"


def _taken(spec: ControlSpec, name: str, asked: str) -> None:
    if name not in spec.names:
        raise ControlError(f"this model does not take {asked} (it takes "
                           f"{takes_words(spec)})")


def _apply(spec: ControlSpec, vector: np.ndarray, request: Mapping[str, Any]) -> None:
    """Write ``request``'s controls into ``vector`` (C,) in place (None: unset)."""
    slots = spec.slices()
    if request.get(KEY) is not None and request.get(PITCH_CLASSES) is not None:
        raise ControlError("give a key or pitch classes, not both")
    for name, value in request.items():
        target = PITCH_CLASSES if name == KEY else name
        _taken(spec, target, name)
        s = slots[target]
        if value is None:
            vector[s] = np.nan
        elif name == DENSITY:
            vector[s] = density_feature(bounds.DENSITY.check(value, ControlError))
        elif name == KEY:
            vector[s] = key_profile(value)
        elif name == PITCH_CLASSES:
            vector[s] = pitch_classes(value)
        elif name == STYLE:
            if value not in spec.styles:
                raise ControlError(f"unknown style {value!r}; this model knows: "
                                   f"{', '.join(spec.styles)}")
            vector[s] = np.eye(len(spec.styles))[spec.styles.index(value)]
        elif name == TEMPO:
            vector[s] = tempo_feature(bounds.TEMPO.check(value, ControlError))


def make_plan(spec: ControlSpec, flags: Mapping[str, Any] | None = None,
              segments: Sequence[Mapping[str, Any]] = ()) -> ControlPlan | None:
    """The :class:`ControlPlan` of generate's flags (``density``, ``key``, ``pitch_classes``
    or ``pitch-classes``, ``style``, ``tempo``; None values are not given) and a plan's
    ``segments``; None when nothing is asked for (the model runs exactly as without
    controls)."""
    base = {k.replace("_", "-"): v for k, v in (flags or {}).items() if v is not None}
    if not base and not segments:
        return None
    rows = [({"from": 0.0, **base}, "the flags")]
    rows += [(seg, f"plan entry {i + 1}") for i, seg in enumerate(segments)]
    starts, values, tempo = [], [], base.get(TEMPO)
    vector = np.full(spec.width, np.nan, np.float32)
    for seg, where in rows:
        at = seg.get("from")
        request = {k: v for k, v in seg.items() if k != "from"}
        try:
            at = bounds.PLAN_FROM.check(at, ControlError)
            if starts and at < starts[-1]:
                raise ControlError(f"'from' {at:g} comes before {starts[-1]:g}; entries "
                                   "go in increasing time")
            if TEMPO in request and at > 0:
                raise ControlError("tempo is one per piece: give it only from 0 s")
            _apply(spec, vector, request)
        except ControlError as e:
            raise ControlError(f"{where}: {e}" if where != "the flags" else str(e)) from None
        tempo = request.get(TEMPO, tempo)
        if starts and at == starts[-1]:
            values[-1] = vector.copy()
        else:
            starts.append(at)
            values.append(vector.copy())
    return ControlPlan(np.array(starts), np.stack(values), tempo)


def read_plan(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The segments of a JSON plan file; a one-line ControlError says where it is wrong."""
    name = os.fspath(path)
    try:
        raw = read_regular(path, MAX_PLAN_BYTES, error=ControlError)
    except ControlError as e:
        raise ControlError(f"{name}: {e}") from None
    try:
        plan = bounds.loads_json(raw.decode("utf-8"), ControlError)
    except ControlError as e:
        raise ControlError(f"{name}: {e}") from None
    except UnicodeDecodeError:
        raise ControlError(f"{name}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ControlError(f"{name}: not valid JSON (line {e.lineno}, column {e.colno}: "
                           f"{e.msg})") from None
    if not isinstance(plan, list) or not plan:
        raise ControlError(f"{name}: a plan is a non-empty JSON list of segments like "
                           '{"from": 0, "density": 2}')
    for i, seg in enumerate(plan):
        if not isinstance(seg, dict) or "from" not in seg:
            raise ControlError(f"{name}: entry {i + 1} must be an object with \"from\" "
                               "(seconds)")
        unknown = sorted(set(seg) - {"from", *REQUESTS})
        if unknown:
            raise ControlError(f"{name}: entry {i + 1}: unknown control {unknown[0]!r}; "
                               f"expected from, {', '.join(REQUESTS)}")
    return plan


KEY_NAMES = tuple(f"{n} {mode}" for mode in ("major", "minor")
                  for n in ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))


def control_inputs(spec: ControlSpec) -> list[dict[str, Any]]:
    """The requests a model with ``spec`` takes, as form inputs (for ``composer serve``):
    ``{"name", "label"}`` plus ``min``/``max``/``step`` for a number or ``choices``."""
    inputs: list[dict[str, Any]] = []
    if DENSITY in spec.names:
        inputs.append({"name": DENSITY, "label": "Density (notes per second)",
                       "min": bounds.DENSITY.lo, "max": bounds.DENSITY.hi, "step": 0.1})
    if PITCH_CLASSES in spec.names:
        inputs.append({"name": KEY, "label": "Key", "choices": list(KEY_NAMES)})
    if STYLE in spec.names:
        inputs.append({"name": STYLE, "label": "Style", "choices": list(spec.styles)})
    if TEMPO in spec.names:
        inputs.append({"name": TEMPO, "label": "Tempo (quarter notes per minute)",
                       "min": bounds.TEMPO.lo, "max": bounds.TEMPO.hi, "step": 1})
    return inputs
