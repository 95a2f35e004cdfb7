"""Melodies to harmonize: a line of note names with beat lengths, or a part of a MIDI file;
and the key of a melody (Krumhansl-Schmuckler profiles over its pitch classes).

A melody line is words ``NOTE:BEATS`` separated by spaces: ``"G4:1 A4:0.5 B4:1/2 R:1"``
(``R`` a rest; a word without ``:BEATS`` lasts one beat). A MIDI melody is its highest part
by mean pitch taken as its top line (the highest note at each onset), or the part
``--part`` names, which must then be one line. Every bad input is a one-line
:class:`HarmonyError`.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from composer.core.messages import ComposerError
from composer.harmony.config import HarmonyError
from composer.harmony.grid import melody_line
from composer.midi.io import MIDI_SUFFIXES, parse_pitch
from composer.midi.parts import PART_DTYPE, Part, PartScore, load_parts

MAX_WORDS = 4096
_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl-Kessler key profiles, tonic first
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_KEY = re.compile(r"([A-Ga-g])([#b]?)(m|min|minor)?$")


def parse_melody_text(text: str) -> np.ndarray:
    """The notes (PART_DTYPE, beats) of a melody line (module docstring)."""
    words = text.replace(",", " ").split()
    if not words:
        raise HarmonyError("the melody has no notes")
    if len(words) > MAX_WORDS:
        raise HarmonyError(f"the melody has {len(words)} words (at most {MAX_WORDS})")
    rows, now = [], Fraction(0)
    for word in words:
        name, _, length = word.partition(":")
        if "+" in name or "/" in name:
            raise HarmonyError(f"{word!r} is a chord; the melody must be one line of notes")
        try:
            beats = Fraction(length) if length else Fraction(1)
        except (ValueError, ZeroDivisionError):
            raise HarmonyError(f"{word!r}: {length!r} is not a length in beats (1, 0.5, 3/2)"
                               ) from None
        if beats <= 0 or beats > 64:
            raise HarmonyError(f"{word!r}: a length must be more than 0 and at most 64 beats")
        if name.upper() not in ("R", "REST"):
            try:
                pitch = parse_pitch(name)
            except ComposerError as e:
                raise HarmonyError(str(e)) from None
            rows.append((pitch, 90, float(now), float(now + beats)))
        now += beats
    if not rows:
        raise HarmonyError("the melody has no notes (only rests)")
    return np.array(rows, PART_DTYPE)


def chord_at(notes: np.ndarray) -> float | None:
    """The beat of the first place two notes of ``notes`` sound at once, None if none."""
    order = np.argsort(notes["start"], kind="stable")
    starts, ends = notes["start"][order], notes["end"][order]
    reach = np.maximum.accumulate(ends)
    clash = np.flatnonzero(starts[1:] < reach[:-1] - 1e-6)
    return float(starts[clash[0] + 1]) if len(clash) else None


def choose_part(score: PartScore, name: str | None) -> Part:
    """The part named ``name`` (case-insensitive, exact or a unique prefix), else the highest
    part by mean pitch."""
    parts = [p for p in score.parts if len(p.notes)]
    if not parts:
        raise HarmonyError("the melody has no notes")
    if name is None:
        return max(parts, key=lambda p: float(np.mean(p.notes["pitch"])))
    exact = [p for p in parts if p.name.lower() == name.lower()]
    found = exact or [p for p in parts if p.name.lower().startswith(name.lower())]
    if len(found) != 1:
        names = ", ".join(repr(p.name) for p in parts)
        what = "no part" if not found else f"{len(found)} parts"
        raise HarmonyError(f"{what} named {name!r} (the parts: {names})"[:300])
    return found[0]


def read_melody(source: str, part: str | None = None) -> tuple[np.ndarray, PartScore]:
    """(melody notes, the score it came from) of a MIDI file path or a melody line."""
    path = Path(source)
    looks_like_file = path.suffix.lower() in MIDI_SUFFIXES or os.sep in source
    if looks_like_file or (path.exists() and " " not in source):
        score = load_parts(path)
        chosen = choose_part(score, part)
        notes = chosen.notes if part else melody_line(chosen)
        at = chord_at(notes)
        if at is not None:
            raise HarmonyError(f"the melody ({chosen.name!r}) has a chord at beat {at:g}; "
                               "choose a part that is one line (or leave out --part to take "
                               "the top line)")
        return notes, score
    if part is not None:
        raise HarmonyError("--part applies to a MIDI melody, not to a melody line")
    return parse_melody_text(source), PartScore([])


def parse_key(text: str) -> tuple[int, bool]:
    """(tonic pitch class, minor) of a key like ``G``, ``Em``, ``F#m``, ``Bb``."""
    found = _KEY.match(text.strip())
    if not found:
        raise HarmonyError(f"{text!r} is not a key (e.g. G, Em, F#m, Bb)")
    letter, accidental, minor = found.groups()
    tonic = (parse_pitch(letter.upper() + accidental + "4") - 60) % 12
    return tonic, minor is not None


def infer_key(notes: np.ndarray) -> tuple[int, bool]:
    """(tonic pitch class, minor) best correlated with the melody's pitch-class durations
    (the last note weighs double: tunes end on their tonic)."""
    weight = np.bincount(notes["pitch"] % 12, notes["end"] - notes["start"], minlength=12)
    weight[int(notes["pitch"][np.argmax(notes["start"])]) % 12] *= 2
    best, found = -2.0, (0, False)
    for tonic in range(12):
        for minor, profile in ((False, _MAJOR), (True, _MINOR)):
            r = float(np.corrcoef(weight, np.roll(profile, tonic))[0, 1])
            if r > best:
                best, found = r, (tonic, minor)
    return found


def key_signature(tonic: int, minor: bool) -> int:
    """Sharps (> 0) or flats (< 0) of a key: G major 1, D minor -1."""
    major = (tonic + 3) % 12 if minor else tonic
    sharps = (major * 7) % 12  # fifths above C
    return sharps - 12 if sharps > 6 else sharps


def key_text(tonic: int, minor: bool) -> str:
    """``"E minor"`` for (4, True)."""
    return f"{_NAMES[tonic]} {'minor' if minor else 'major'}"


def key_pitch_classes(tonic: int, minor: bool) -> set[int]:
    """The scale of a key (natural minor plus the raised 7th for minor)."""
    steps = (0, 2, 3, 5, 7, 8, 10, 11) if minor else (0, 2, 4, 5, 7, 9, 11)
    return {(tonic + s) % 12 for s in steps}
