"""What composer says to its user: the :class:`ComposerError` family (shown as ``Error: ...``,
exit 1), the checks that raise them (:func:`check_int`, :func:`require`), and the callbacks
long work reports through (:data:`Notify`: one line; :data:`Progress`: done of total)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ComposerError(Exception):
    """Base class of every error composer reports to users (shown as ``Error: ...``)."""


class MidiError(ComposerError):
    """A MIDI file cannot be read; the message is a one-line reason."""


class GenerateError(ComposerError):
    """A generation request that cannot be met (bad seed, config, checkpoint or output)."""


class MetricsError(ComposerError):
    """Inputs that a metric cannot be computed on (too few pieces, mismatched vocabularies)."""

Notify = Callable[[str], None]  # one line for the user (the CLI prints "Note: ...")
Progress = Callable[[int, int], None]


def quiet(_: str) -> None:
    pass


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy) and not a bool."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (int or float) and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(value: Any, name: str, least: int, error: type[ComposerError]) -> int:
    """``value`` as an int; ``error`` unless it is an integer (not a bool) >= ``least``."""
    if not is_int(value) or value < least:
        raise error(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def require(ok: bool, message: str, error: type[ComposerError]) -> None:
    """Raise ``error(message)`` unless ``ok``."""
    if not ok:
        raise error(message)


MAX_SEED = 2**63 - 1  # seeds are stored and offset as signed 64-bit integers


def check_seed(value: Any, error: type[ComposerError] = ComposerError, what: str = "seed"
               ) -> int:
    """``value`` as a seed: a whole number in [0, MAX_SEED] (a numeric string is accepted);
    anything else raises ``error`` with a one-line reason naming ``what``."""
    seed = value
    if isinstance(value, str):
        try:
            seed = int(value.strip())
        except ValueError:
            seed = None
    elif isinstance(value, float) and value.is_integer():
        seed = int(value)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise error(f"{what} must be a whole number from 0 to 2**63-1 ({MAX_SEED}), "
                    f"got {value!r}"[:200])
    return seed

