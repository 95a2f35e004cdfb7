"""Which models there are and what each takes: the models shipped in the package
(:func:`composer.model.checkpoint.shipped_names`) and the local ones (training output folders
and checkpoint folders found under given folders), each described from its checkpoint.json
and its weights file's header alone (no tensor is read, nothing is hashed).

:func:`describe` says what a model takes (``composer models``, ``composer info`` with no
argument, the page's model list): its vocabulary, its controls and styles, its instruments
and drums, its size and the corpus it learnt from.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.core.messages import ComposerError
from composer.model.checkpoint import resolve_checkpoint_path, shipped_model, shipped_names
from composer.model.storage import META_FILE, WEIGHTS_FILE, read_meta
from composer.tokens.vocab import vocabulary_of

SEARCH_DEPTH = 3  # local models: folders this deep below each root are looked at


@dataclass(frozen=True)
class ModelEntry:
    """One model found: how to name it, where it is, what it takes."""

    name: str  # a shipped model's name, or the folder as found (what --checkpoint takes)
    path: Path  # its checkpoint folder
    shipped: bool
    takes: dict[str, Any]  # :func:`describe` of its checkpoint.json, or {"problem": ...}


def parameters(folder: Path) -> int | None:
    """The number of weights in a checkpoint's safetensors file, from its header only."""
    try:
        with open(folder / WEIGHTS_FILE, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(size, 1 << 24)))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, tensor in header.items():
        if name != "__metadata__" and isinstance(tensor, dict):
            count = 1
            for n in tensor.get("shape", []):
                count *= int(n)
            total += count
    return total


def corpus_words(data: dict[str, Any]) -> str:
    """Where a model's training corpus came from, in one phrase."""
    sources = data.get("sources")
    if isinstance(sources, dict) and sources:
        return ", ".join(f"{style}: {path}" for style, path in sources.items())
    return str(data.get("source") or data.get("corpus") or data.get("sources_note")
               or "not recorded")


def describe(meta: dict[str, Any], folder: Path | None = None) -> dict[str, Any]:
    """What the model of a checkpoint.json takes: ``vocabulary`` (phrase), ``controls``
    (names; ``key`` stands for pitch classes), ``styles``, ``instruments`` (bool: GM
    programs and drums can be chosen), ``programs`` (those recorded of its corpus, if any),
    ``size`` (phrase), ``parameters``, ``corpus`` (phrase)."""
    model, data = meta.get("model") or {}, meta.get("data") or {}
    events = vocabulary_of(meta.get("events") or {})
    controls = model.get("controls") or {}
    params = parameters(folder) if folder is not None else None
    size = f"{model.get('layers')}x{model.get('hidden')} LSTM"
    return {"vocabulary": events.describe(), "controls": list(controls.get("names") or []),
            "styles": list(controls.get("styles") or []), "instruments": events.instruments,
            "programs": list(data.get("programs") or []),
            "size": size + (f", {params / 1e6:.1f}M parameters" if params else ""),
            "parameters": params, "corpus": corpus_words(data)}


def _entry(name: str, folder: Path, shipped: bool) -> ModelEntry:
    try:
        takes = describe(read_meta(folder), folder)
    except ComposerError as e:
        takes = {"problem": str(e)}
    return ModelEntry(name, folder, shipped, takes)


def shipped_models() -> list[ModelEntry]:
    """The models shipped in the package, by name."""
    return [_entry(name, shipped_model(name), True) for name in shipped_names()]


def local_models(roots: list[str | os.PathLike[str]] | tuple = (".",),
                 depth: int = SEARCH_DEPTH) -> list[ModelEntry]:
    """Checkpoint folders and training output folders (standing for their best checkpoint)
    at or below each of ``roots``, at most ``depth`` folders down (dot folders skipped);
    a root that is itself one is listed."""
    found: dict[Path, ModelEntry] = {}

    def visit(folder: Path, level: int) -> None:
        path, _ = resolve_checkpoint_path(folder)
        if (path / META_FILE).is_file():
            key = path.resolve()
            if key not in found:
                found[key] = _entry(os.fspath(folder), path, False)
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir()
                              if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            visit(child, level + 1)

    for root in roots:
        visit(Path(root), 0)
    return list(found.values())
