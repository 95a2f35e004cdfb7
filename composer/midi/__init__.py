"""MIDI in and out: the only package that touches MIDI files and MIDI libraries.

``io`` loads a file into a note array (seconds and beats) and saves one; ``tracks`` and
``_smf.c``/``_smf_ref`` parse track chunks; ``timing`` maps seconds to beats; ``instruments``
holds the General MIDI program table; ``render`` turns notes into audio and pictures."""

from composer.midi.io import NOTE_DTYPE, LoadConfig, Piece, load, save

__all__ = ["NOTE_DTYPE", "LoadConfig", "Piece", "load", "save"]
