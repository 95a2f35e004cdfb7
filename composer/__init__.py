"""composer: learn music from MIDI files and compose new music.

Pipeline (data flows one way): ``midi`` -> ``events`` -> ``corpus`` -> ``data`` ->
``model`` -> ``train`` -> ``sample`` -> back out through ``midi``.
"""

__version__ = "0.1.0"


class ComposerError(Exception):
    """Base class of every error composer reports to users (shown as ``Error: ...``)."""


class MidiError(ComposerError):
    """A MIDI file cannot be read; the message is a one-line reason."""


__all__ = ["ComposerError", "MidiError", "__version__"]
