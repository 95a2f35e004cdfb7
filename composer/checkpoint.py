"""Checkpoints: a trained model and everything needed to use or resume it, in one folder.

A checkpoint is a folder NAME holding:

- ``model.safetensors``: the weights (safetensors: a JSON header and raw tensor bytes);
- ``checkpoint.json``: format marker and version, model config, event vocabulary config,
  training config, step, metrics, data description, creation time, composer version, and
  the size and SHA-256 of the other files;
- ``train_state.pt`` (optional): optimizer / scheduler / RNG / data-position state for
  resuming, written with ``torch.save`` and read with ``torch.load(weights_only=True)``, so it
  may hold only tensors and plain containers (:func:`to_safe`, :func:`get_rng_state`).

Loading never runs code from the files: safetensors for weights, JSON for metadata,
``weights_only=True`` for the train state. Any defect (missing, truncated, corrupted or
foreign file, unsupported version, weights that do not fit the config) raises one
:class:`CheckpointError` whose one-line message names the file and the problem.

Saving is atomic. Everything is written into ``.NAME.tmp-PID`` next to NAME, each file and
the folder are fsynced, then:

1. if NAME exists, it is renamed to ``.NAME.bak`` (a stale ``.NAME.bak`` is removed first);
2. ``.NAME.tmp-PID`` is renamed to NAME;
3. ``.NAME.bak`` is removed.

A crash before step 1 leaves the old NAME and a hidden tmp folder (ignored by loading,
removed by the next save). A crash between steps 1 and 2 leaves only ``.NAME.bak``, the
complete old checkpoint, which loading falls back to. A crash during step 3 leaves the new
NAME and a partly removed backup, never read while NAME exists. So at every instant a
complete old or new checkpoint exists, and NAME never holds a half-written one. Concurrent
saves to one NAME are not supported.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import pickle
import random
import re
import shutil
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from composer import ComposerError, __version__, is_int
from composer.events import EventConfig, Vocabulary
from composer.files import fsync_dir, fsync_file
from composer.model import ComposerLSTM, ModelConfig

FORMAT = "composer-checkpoint"  # marker that tells our checkpoint.json from other JSON
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
TRAIN_STATE_FILE = "train_state.pt"
CHECKPOINT_FILES = (WEIGHTS_FILE, META_FILE, TRAIN_STATE_FILE)

# checkpoint.json keys other than format/format_version, with their JSON types
_META_TYPES: dict[str, type] = {
    "composer_version": str, "created": str, "step": int, "model": dict, "events": dict,
    "train": dict, "metrics": dict, "data": dict, "files": dict,
}
_PLAIN = (str, int, float, bool, type(None))  # exact types weights_only loading accepts
_TENSORS = (torch.Tensor, torch.nn.Parameter)


class CheckpointError(ComposerError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


@dataclass
class Checkpoint:
    """A loaded checkpoint (see :func:`load_checkpoint`)."""

    model: ComposerLSTM  # weights loaded, in eval mode, on map_location
    model_config: ModelConfig
    event_config: dict[str, Any]  # EventConfig.to_dict() form
    train_config: dict[str, Any]
    step: int
    metrics: dict[str, Any]
    data: dict[str, Any]
    train_state: dict[str, Any] | None  # None unless asked for and present
    path: Path  # folder read: NAME, or .NAME.bak after a save interrupted mid-swap
    created: str  # ISO 8601 UTC time of the save
    composer_version: str  # composer version that wrote it


# ---------------------------------------------------------------------------------- saving


def save_checkpoint(
    path: str | os.PathLike[str],
    model: ComposerLSTM,
    model_config: ModelConfig,
    event_config_dict: Mapping[str, Any],
    *,
    train_config: dict[str, Any],
    step: int,
    metrics: dict[str, Any],
    data: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder at ``path`` atomically, replacing an older one; returns it.

    JSON turns tuples into lists and non-string keys into strings. ``train_state`` must hold
    only tensors and plain containers; convert other objects with :func:`to_safe`.
    """
    path = Path(path)
    if getattr(model, "config", None) != model_config:
        raise CheckpointError(f"{path}: model_config does not match the model's own config")
    _check_configs(model_config.to_dict(), dict(event_config_dict), "event config")
    if not is_int(step) or step < 0:
        raise CheckpointError(f"{path}: step must be a non-negative integer, got {step!r}")
    named = ("train_config", train_config), ("metrics", metrics), ("data", data)
    for name, value in (*named, ("train_state", {} if train_state is None else train_state)):
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: {name} must be a dict, got {type(value).__name__}")
    if train_state is not None:
        _check_safe(train_state, "train_state")
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "composer_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "step": step,
        "model": model_config.to_dict(), "events": dict(event_config_dict),
        "train": train_config, "metrics": metrics, "data": data,
    }
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata is not JSON-serialisable ({e})") from None
    _check_replaceable(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):  # crashed saves
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / WEIGHTS_FILE, metadata={"format": FORMAT})
        meta["files"] = {WEIGHTS_FILE: _sync_and_describe(tmp / WEIGHTS_FILE)}
        if train_state is not None:
            with open(tmp / TRAIN_STATE_FILE, "wb") as f:
                torch.save(train_state, f)
            meta["files"][TRAIN_STATE_FILE] = _sync_and_describe(tmp / TRAIN_STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        fsync_file(tmp / META_FILE)
        fsync_dir(tmp)
        _swap_into_place(tmp, path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write checkpoint ({e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful swap
    return path


def _check_replaceable(path: Path) -> None:
    """Refuse to overwrite anything but an empty folder or a checkpoint folder."""
    if not path.exists():
        return
    if not path.is_dir():
        raise CheckpointError(f"{path}: exists and is not a folder; refusing to replace it")
    names = sorted(p.name for p in path.iterdir())
    foreign = [n for n in names if n not in CHECKPOINT_FILES]
    if foreign or (names and META_FILE not in names):
        shown = ", ".join(foreign[:3]) or "no checkpoint.json"
        raise CheckpointError(f"{path}: not a checkpoint folder ({shown}); refusing to replace it")


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Steps 1-3 of the module docstring: NAME -> .NAME.bak, tmp -> NAME, drop .NAME.bak."""
    backup = _backup_path(path)
    if path.exists():
        shutil.rmtree(backup, ignore_errors=True)  # stale: NAME is complete
        os.rename(path, backup)
        fsync_dir(path.parent)
    try:
        os.rename(tmp, path)
    except BaseException:
        if backup.is_dir() and not path.exists():
            os.rename(backup, path)  # roll back to the old checkpoint
        raise
    fsync_dir(path.parent)
    shutil.rmtree(backup, ignore_errors=True)


def _sync_and_describe(file: Path) -> dict[str, Any]:
    """fsync ``file`` and return its size and SHA-256."""
    fsync_file(file)
    with open(file, "rb") as f:
        digest = _sha256(f)
        return {"bytes": f.tell(), "sha256": digest}


def _sha256(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _backup_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.bak")


# --------------------------------------------------------------------------------- loading


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    with_train_state: bool = False,
) -> Checkpoint:
    """Read and verify a checkpoint folder; the model comes back in eval mode.

    The train state is read only if ``with_train_state`` (None when the checkpoint has none).
    """
    folder = _resolve(path)
    meta, model_config = _read_meta(folder)
    file = folder / WEIGHTS_FILE
    _verify_file(file, meta)
    try:
        tensors = load_file(file, device="cpu")
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({_one_line(e)})") from None
    model = ComposerLSTM(model_config)
    expected = model.state_dict()
    if set(tensors) != set(expected):
        names = ", ".join(sorted(set(tensors) ^ set(expected))[:4])
        raise CheckpointError(f"{file}: tensor names do not fit the model config ({names})")
    for name, want in expected.items():
        got = tensors[name]  # must be float and of the shape the config implies
        if got.shape != want.shape or not got.is_floating_point():
            raise CheckpointError(f"{file}: tensor {name} is {got.dtype} {tuple(got.shape)},"
                                  f" the model config needs float {tuple(want.shape)}")
    model.load_state_dict(tensors)
    train_state = None
    if with_train_state and TRAIN_STATE_FILE in meta["files"]:
        train_state = _load_train_state(folder / TRAIN_STATE_FILE, meta, map_location)
    return Checkpoint(
        model=model.to(map_location).eval(), model_config=model_config,
        event_config=meta["events"], train_config=meta["train"], step=meta["step"],
        metrics=meta["metrics"], data=meta["data"], train_state=train_state, path=folder,
        created=meta["created"], composer_version=meta["composer_version"],
    )


def read_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """checkpoint.json's contents plus ``path`` (folder read), ``parameters`` (from the
    weights file's header; tensors are not read) and ``has_train_state``."""
    folder = _resolve(path)
    meta, _ = _read_meta(folder)
    file = folder / WEIGHTS_FILE
    _require_file(file)
    try:
        with safe_open(file, "pt") as f:
            n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({_one_line(e)})") from None
    has_train_state = TRAIN_STATE_FILE in meta["files"]
    return {**meta, "path": str(folder), "parameters": n, "has_train_state": has_train_state}


def _resolve(path: str | os.PathLike[str]) -> Path:
    """The folder to read: ``path``, or its backup if a save stopped between two renames."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: not a checkpoint folder (it is a file)")
    if _backup_path(path).is_dir():
        return _backup_path(path)
    raise CheckpointError(f"{path}: no such checkpoint folder")


def _read_meta(folder: Path) -> tuple[dict[str, Any], ModelConfig]:
    """Parse and validate checkpoint.json; returns it and its model config."""
    file = folder / META_FILE
    _require_file(file)
    try:
        meta = json.loads(file.read_bytes().decode("utf-8"))
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'{file}: not a composer checkpoint (no "format": "{FORMAT}")')
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format_version {version!r} is not supported (this composer reads"
            f" {FORMAT_VERSION})"
        )
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{file}: {key!r} is missing or not a JSON {kind.__name__}")
    if meta["step"] < 0:
        raise CheckpointError(f"{file}: step is negative ({meta['step']})")
    return meta, _check_configs(meta["model"], meta["events"], str(file))


def _check_configs(model: dict[str, Any], events: dict[str, Any], where: str) -> ModelConfig:
    """Validate a model and an event config dict together; returns the model config."""
    try:
        model_config = ModelConfig.from_dict(model)
        vocab_size = Vocabulary(EventConfig.from_dict(events)).size
    except ComposerError as e:
        raise CheckpointError(f"{where}: {e}") from None
    if model_config.vocab_size != vocab_size:
        raise CheckpointError(
            f"{where}: the model has {model_config.vocab_size} token ids, the event vocabulary"
            f" {vocab_size}"
        )
    return model_config


def _require_file(file: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")


def _verify_file(file: Path, meta: dict[str, Any]) -> None:
    """Check ``file`` against the size and SHA-256 recorded in checkpoint.json."""
    entry = meta["files"].get(file.name)
    if not isinstance(entry, dict) or not {"bytes", "sha256"} <= set(entry):
        raise CheckpointError(f"{file.parent / META_FILE}: no size and checksum for {file.name}")
    _require_file(file)
    size = file.stat().st_size
    if size != entry["bytes"]:
        raise CheckpointError(
            f"{file}: {size} bytes, expected {entry['bytes']} (truncated or replaced)"
        )
    with open(file, "rb") as f:
        digest = _sha256(f)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{file}: contents do not match their SHA-256 (corrupted)")


def _load_train_state(
    file: Path, meta: dict[str, Any], map_location: str | torch.device
) -> dict[str, Any]:
    _verify_file(file, meta)
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        reason = (
            f"refused: it asks for {found[1]}, and only tensors and plain containers are allowed"
            if found else "refused: not plain data that weights_only loading accepts"
        )
        raise CheckpointError(f"{file}: {reason}") from None
    except Exception as e:
        raise CheckpointError(f"{file}: cannot be read ({_one_line(e)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: holds a {type(state).__name__}, expected a dict")
    return state


def _one_line(e: BaseException) -> str:
    """First sentence of an exception's message (or its type), on one line, capped."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text.split(". ")[0][:200]


# ------------------------------------------------------------------ train state helpers


def to_safe(obj: Any) -> Any:
    """Copy of ``obj`` that ``torch.load(weights_only=True)`` accepts: NumPy arrays become
    tensors, NumPy scalars Python numbers; dicts, lists and tuples are converted inside."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))  # copy: never share memory with the caller
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {to_safe(k): to_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):  # named tuples too: their class would need an import
        return tuple(to_safe(x) for x in obj)
    if isinstance(obj, list):
        return [to_safe(x) for x in obj]
    return obj


def _check_safe(obj: Any, where: str) -> None:
    """Raise CheckpointError naming the first part of ``obj`` weights_only loading refuses."""
    kind = type(obj)
    if kind in _PLAIN or kind in _TENSORS:
        return
    if kind in (dict, OrderedDict):
        for k, v in obj.items():
            _check_safe(k, f"{where} key {k!r}")
            _check_safe(v, f"{where}[{k!r}]")
        return
    if kind in (list, tuple):
        for i, v in enumerate(obj):
            _check_safe(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}, which torch.load(weights_only=True)"
        " refuses; convert it with composer.checkpoint.to_safe()"
    )


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy (global) and torch (CPU, and CUDA if present) RNG states as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),  # (version, tuple of 625 ints, gauss_next): plain already
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),  # (624,) uint32 values
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the RNG states :func:`get_rng_state` captured (CUDA only where present)."""
    try:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        np_state = state["numpy"]
        np.random.set_state((
            np_state["kind"], np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
            np_state["has_gauss"], np_state["cached_gaussian"],
        ))
        torch.set_rng_state(state["torch"].cpu())
        if "cuda" in state and torch.cuda.is_available():
            for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state.cpu(), device)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"train state: malformed RNG state ({_one_line(e)})") from None
