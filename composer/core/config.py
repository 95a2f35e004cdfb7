"""The base of composer's config dataclasses: :class:`Config` (construction from a dict that
names unknown keys, ``to_dict`` that can omit defaults)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from composer.core.messages import ComposerError

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
