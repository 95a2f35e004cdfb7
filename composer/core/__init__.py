"""What every other package stands on, and nothing composer-specific: the error family and
the checks that raise it (``messages``), the config base (``config``), the one set of bounds
(``bounds``), atomic file writes and folder locks (``files``), the device (``device``),
seeds (``rng``) and work in a separate memory-capped process (``isolate``).

Public surface: :class:`~composer.core.messages.ComposerError` and its family; import the
rest from its module (``from composer.core.files import atomic_write_bytes``)."""

from composer.core.messages import ComposerError, GenerateError, MetricsError, MidiError

__all__ = ["ComposerError", "GenerateError", "MetricsError", "MidiError"]
