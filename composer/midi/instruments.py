"""General MIDI instruments: program names and families, and ``--instruments`` lists.

A MIDI program is 0..127 (as ``composer generate --program`` takes it; GM's printed tables
number them 1..128). Its General MIDI name (:func:`program_name`) names the tracks
:func:`composer.midi.io.save` writes; the 16 families of 8 programs each (:data:`FAMILIES`) are
what a family name in an instrument list stands for. Drums are not a program: in General
MIDI they are channel 10, whatever its program.

:func:`parse_instruments` reads a list such as ``"violin, viola, cello"``,
``"flute,strings,drums"`` or ``"40,41,42"``: GM names (any case, spaces and punctuation
ignored: ``"French Horn"`` = ``"frenchhorn"``), a few short names (:data:`ALIASES`), family
names (all 8 programs of the family), ``drums`` (also ``drum``, ``percussion``), or program
numbers. An unknown word is an :class:`InstrumentError` naming it and some valid ones.
"""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

from composer.core.messages import ComposerError

PROGRAM_NAMES = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto",
    "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)
FAMILIES = ("Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble",
            "Brass", "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic",
            "Percussive", "Sound Effects")  # family f: programs 8f .. 8f+7
DRUMS_NAME = "Drums"  # the track name of the drum part
DRUM_WORDS = ("drums", "drum", "percussion", "drumkit", "kit")
# Short names (checked before family names: "piano" is program 0, not the piano family).
ALIASES = {"piano": 0, "grandpiano": 0, "harp": 46, "doublebass": 43, "horn": 60, "sax": 65,
           "saxophone": 65, "choir": 52, "voice": 52, "recorder": 74}


class InstrumentError(ComposerError):
    """An instrument list that names no known instrument."""


class Ensemble(NamedTuple):
    """What an instrument list allows: pitched ``programs`` (sorted) and ``drums``."""

    programs: tuple[int, ...]
    drums: bool

    def describe(self) -> str:
        """``"Violin, Viola, Cello"`` (and ``Drums``)."""
        return ", ".join([program_name(p) for p in self.programs] + [DRUMS_NAME] * self.drums)


def program_name(program: int) -> str:
    """The General MIDI name of a program 0..127 (``40`` -> ``"Violin"``)."""
    return PROGRAM_NAMES[program]


def family_of(program: int) -> str:
    """The General MIDI family of a program (``40`` -> ``"Strings"``)."""
    return FAMILIES[program // 8]


def _key(word: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", word.lower())


_BY_NAME = {_key(n): p for p, n in enumerate(PROGRAM_NAMES)}
_FAMILY = {_key(f): range(8 * i, 8 * i + 8) for i, f in enumerate(FAMILIES)}


def parse_instruments(text: str) -> Ensemble:
    """The instruments of a list (commas separate; see the module docstring): InstrumentError
    for an empty list or a word that is no instrument (naming close matches)."""
    programs: set[int] = set()
    drums = False
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise InstrumentError("the instrument list is empty (e.g. \"violin,viola,cello\")")
    for word in words:
        key = _key(word)
        if re.fullmatch(r"\d+", word):
            if int(word) > 127:
                raise InstrumentError(f"program {word} is outside General MIDI's 0..127")
            programs.add(int(word))
        elif key in DRUM_WORDS:
            drums = True
        elif key in _BY_NAME or key in ALIASES:
            programs.add(_BY_NAME.get(key, ALIASES.get(key, 0)))
        elif key in _FAMILY:
            programs.update(_FAMILY[key])
        else:
            known = [*_BY_NAME, *ALIASES, *_FAMILY, "drums"]
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InstrumentError(
                f"unknown instrument {word!r}; {hint}use General MIDI names or numbers 0..127 "
                "(e.g. violin, viola, cello, flute, oboe, trumpet, piano), family names "
                "(strings, brass, reed, ...) or drums")
    return Ensemble(tuple(sorted(programs)), drums)
