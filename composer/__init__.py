"""composer: learn music from MIDI files and compose new music.

Pipeline (data flows one way): ``midi`` -> ``events`` -> ``corpus`` -> ``data`` ->
``model`` -> ``train`` -> ``generate`` -> ``sample`` -> back out through ``midi``;
evaluation, the copy check and the CLI sit on top (``benchmarks/import_graph.py`` checks it).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

__version__ = "0.1.0"


class ComposerError(Exception):
    """Base class of every error composer reports to users (shown as ``Error: ...``)."""


class MidiError(ComposerError):
    """A MIDI file cannot be read; the message is a one-line reason."""


class GenerateError(ComposerError):
    """A generation request that cannot be met (bad seed, config, checkpoint or output)."""


class MetricsError(ComposerError):
    """Inputs that a metric cannot be computed on (too few pieces, mismatched vocabularies)."""


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


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean loss in nats, capped at exp(50) instead of overflowing."""
    return math.exp(min(loss, 50.0))


OMIT_DEFAULT = "omit_default"  # dataclass field metadata key: see Config.to_dict


class Config:
    """Mixin of composer's config dataclasses: ``to_dict`` / ``from_dict``, nested configs too.

    A subclass sets ``_error`` (the ComposerError subclass raised for a bad dict) and
    ``_name`` (how messages name it) as plain class attributes.
    """

    _error: typing.ClassVar[type[ComposerError]] = ComposerError
    _name: typing.ClassVar[str] = "settings"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-ready); inverse of :meth:`from_dict`. A field
        marked ``metadata={OMIT_DEFAULT: True}`` is left out while it holds its default (so
        dicts written before it existed, and the keys made from them, stay the same)."""
        kept = [(f.name, getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if not (f.metadata.get(OMIT_DEFAULT) and getattr(self, f.name) == f.default)]
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in kept}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Config from :meth:`to_dict` output; missing keys take defaults, unknown keys raise."""
        if not isinstance(d, Mapping):
            raise cls._error(f"{cls._name}: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise cls._error(f"{cls._name}: unknown keys {', '.join(map(str, unknown))}")
        hints = typing.get_type_hints(cls)
        kwargs = {k: hints[k].from_dict(v) if isinstance(hints[k], type)
                  and issubclass(hints[k], Config) else v for k, v in d.items()}
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise cls._error(f"{cls._name}: {e}") from None


__all__ = ["OMIT_DEFAULT", "ComposerError", "Config", "GenerateError", "MetricsError",
           "MidiError", "__version__", "check_int", "is_int", "is_number", "perplexity",
           "require"]
