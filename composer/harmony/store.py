"""Harmonizer checkpoints: a folder with ``model.safetensors`` (the weights) and
``harmonizer.json`` (configs, metrics, data, the size and SHA-256 of the weights), written
atomically with :mod:`composer.model.storage`'s protocol and read without pickle.

The shipped chorale harmonizer lives in ``composer/harmony/shipped/chorales`` (package data),
apart from the performance models of ``composer/model/shipped``, so that ``composer
generate`` / ``info`` / ``serve`` never list a model of another task.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from composer import __version__
from composer.core.files import fsync_dir, read_regular, write_error
from composer.core.messages import ComposerError
from composer.harmony.config import HarmonyError, HarmonyModelConfig
from composer.harmony.model import HarmonyNet
from composer.model.storage import (
    MAX_META_BYTES,
    WEIGHTS_FILE,
    resolve_folder,
    swap_into_place,
    verify_file,
    write_file,
)

META = "harmonizer.json"
FORMAT = "composer-harmonizer"
SHIPPED = Path(__file__).resolve().parent / "shipped"
DEFAULT_NAME = "chorales"
MAX_WEIGHT_BYTES = 256 << 20


def save_harmonizer(path: str | os.PathLike, model: HarmonyNet, *, train: dict[str, Any],
                    metrics: dict[str, Any], data: dict[str, Any]) -> Path:
    """Write the checkpoint folder ``path`` atomically (an older harmonizer there is
    replaced; any other folder is refused)."""
    path = Path(path)
    if path.exists():
        names = {p.name for p in path.iterdir()} if path.is_dir() else None
        if names is None or not names <= {WEIGHTS_FILE, META}:
            raise HarmonyError(f"{path}: exists and is not a harmonizer folder; refusing to "
                               "replace it")
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "composer_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.config.to_dict(), "train": train, "metrics": metrics, "data": data}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta["files"] = {WEIGHTS_FILE: write_file(tmp / WEIGHTS_FILE, safetensors_bytes(
            weights, metadata={"format": FORMAT}))}
        write_file(tmp / META, (json.dumps(meta, indent=1) + "\n").encode())
        fsync_dir(tmp)
        swap_into_place(tmp, path)
    except OSError as e:
        raise write_error(e, path, "write harmonizer") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_meta(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(folder, harmonizer.json) of a harmonizer checkpoint, checked for its format."""
    try:
        folder = resolve_folder(path)
        raw = read_regular(folder / META, MAX_META_BYTES)
        meta = json.loads(raw.decode("utf-8"))
    except ComposerError as e:
        raise HarmonyError(f"{path}: not a harmonizer ({e})") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise HarmonyError(f"{folder / META}: not valid JSON ({e})"[:200]) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise HarmonyError(f"{folder}: not a harmonizer checkpoint (see composer "
                           "train-harmonizer)")
    return folder, meta


def load_harmonizer(path: str | os.PathLike | None = None) -> tuple[HarmonyNet, dict[str, Any]]:
    """The model (eval mode, CPU) and metadata of a harmonizer folder; the shipped chorale
    harmonizer when ``path`` is None."""
    folder, meta = read_meta(SHIPPED / DEFAULT_NAME if path is None else path)
    config = HarmonyModelConfig.from_dict(meta.get("model", {}))
    try:
        verify_file(folder / WEIGHTS_FILE, meta)
    except ComposerError as e:
        raise HarmonyError(str(e)) from None
    data = read_regular(folder / WEIGHTS_FILE, MAX_WEIGHT_BYTES)
    model = HarmonyNet(config)
    try:
        model.load_state_dict(safetensors_load(data))
    except (RuntimeError, ValueError) as e:
        raise HarmonyError(f"{folder / WEIGHTS_FILE}: weights do not fit the config "
                           f"({str(e).splitlines()[0][:150]})") from None
    model.eval()
    return model, meta


def shipped_harmonizers() -> list[str]:
    """Names of the harmonizers shipped inside the package."""
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if (p / META).is_file())


def count_parameters(model: torch.nn.Module) -> int:
    """The number of weights of ``model``."""
    return sum(p.numel() for p in model.parameters())
