"""Checkpoint folder I/O: the files of a checkpoint, written atomically, read with checks.

The layout, the atomic save protocol and the checks that need no model; what the files
mean (model, configs) is :mod:`composer.model.checkpoint`'s. A checkpoint is a folder NAME holding:

- ``model.safetensors``: the weights (safetensors: a JSON header and raw tensor bytes);
- ``checkpoint.json``: format marker and version, model config, event vocabulary config,
  training config, step, metrics, data description, creation time, composer version, and
  the size and SHA-256 of the other files;
- ``train_state.pt`` (optional): optimizer / scheduler / RNG / data-position state for
  resuming, written with ``torch.save`` and read with ``torch.load(weights_only=True)``, so it
  may hold only tensors and plain containers (:func:`to_safe`, :func:`check_safe`).

Saving is atomic. Everything is written into ``.NAME.tmp-PID`` next to NAME, each file and
the folder are fsynced, then:

1. if NAME exists, it is renamed to ``.NAME.bak`` (a stale ``.NAME.bak`` is removed first);
2. ``.NAME.tmp-PID`` is renamed to NAME;
3. ``.NAME.bak`` is removed.

A crash before step 1 leaves the old NAME and a hidden tmp folder (ignored by loading,
removed by the next save). A crash between steps 1 and 2 leaves only ``.NAME.bak``, the
complete old checkpoint, which loading falls back to (:func:`resolve_folder`). A crash
during step 3 leaves the new NAME and a partly removed backup, never read while NAME
exists. So at every instant a complete old or new checkpoint exists, and NAME never holds a
half-written one. Concurrent saves to one NAME are not supported.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from composer.core.files import DiskFullError, fsync_dir, read_regular
from composer.core.messages import ComposerError

FORMAT = "composer-checkpoint"  # marker that tells our checkpoint.json from other JSON
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
TRAIN_STATE_FILE = "train_state.pt"
CHECKPOINT_FILES = (WEIGHTS_FILE, META_FILE, TRAIN_STATE_FILE)
MAX_META_BYTES = 16 << 20  # checkpoint.json larger than this is refused unread
FILE_MODE = 0o644  # every file of a checkpoint

# checkpoint.json keys other than format/format_version, with their JSON types
META_TYPES: dict[str, type] = {
    "composer_version": str, "created": str, "step": int, "model": dict, "events": dict,
    "train": dict, "metrics": dict, "data": dict, "files": dict,
}
_PLAIN = (str, int, float, bool, type(None))  # exact types weights_only loading accepts
_TENSORS = (torch.Tensor, torch.nn.Parameter)


class CheckpointError(ComposerError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


class CheckpointDiskFullError(CheckpointError, DiskFullError):
    """Saving a checkpoint ran out of disk space; the old checkpoint is left as it was."""


def check_replaceable(path: Path) -> None:
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


def swap_into_place(tmp: Path, path: Path) -> None:
    """Steps 1-3 of the module docstring: NAME -> .NAME.bak, tmp -> NAME, drop .NAME.bak."""
    backup = backup_path(path)
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


def write_file(file: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` to the new file ``file`` (mode FILE_MODE), fsync it; its size and
    SHA-256."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with open(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), FILE_MODE)  # whatever the umask
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _sha256(f: BinaryIO) -> str:
    """SHA-256 (hex) of an open file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def backup_path(path: Path) -> Path:
    """Where a save keeps the old checkpoint NAME while swapping: ``.NAME.bak``."""
    return path.with_name(f".{path.name}.bak")


def resolve_folder(path: str | os.PathLike[str]) -> Path:
    """The folder to read: ``path``, or its backup if a save stopped between two renames."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: not a checkpoint folder (it is a file)")
    if backup_path(path).is_dir():
        return backup_path(path)
    raise CheckpointError(f"{path}: no such checkpoint folder")


def read_meta(folder: Path) -> dict[str, Any]:
    """Parse checkpoint.json (size-bounded) and check its format, version and key types;
    the configs in it are checked by :mod:`composer.model.checkpoint`."""
    file = folder / META_FILE
    require_file(file)
    try:
        data = read_regular(file, MAX_META_BYTES)
    except ComposerError as e:
        raise CheckpointError(f"{file}: {e}") from None
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({one_line(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'{file}: not a composer checkpoint (no "format": "{FORMAT}")')
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format_version {version!r} is not supported (this composer reads"
            f" {FORMAT_VERSION})"
        )
    for key, kind in META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{file}: {key!r} is missing or not a JSON {kind.__name__}")
    if meta["step"] < 0:
        raise CheckpointError(f"{file}: step is negative ({meta['step']})")
    return meta


def require_file(file: Path) -> None:
    """CheckpointError unless ``file`` is a regular file (missing, or not regular)."""
    if not file.is_file():
        what = "not a regular file" if file.exists() else "missing"
        raise CheckpointError(f"{file}: {what}")


def verify_file(file: Path, meta: dict[str, Any]) -> None:
    """Check ``file`` against the size and SHA-256 recorded in checkpoint.json."""
    entry = meta["files"].get(file.name)
    if not isinstance(entry, dict) or not {"bytes", "sha256"} <= set(entry):
        raise CheckpointError(f"{file.parent / META_FILE}: no size and checksum for {file.name}")
    require_file(file)
    size = file.stat().st_size
    if size != entry["bytes"]:
        raise CheckpointError(
            f"{file}: {size} bytes, expected {entry['bytes']} (truncated or replaced)"
        )
    with open(file, "rb") as f:
        digest = _sha256(f)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{file}: contents do not match their SHA-256 (corrupted)")


def load_train_state(
    file: Path, meta: dict[str, Any], map_location: str | torch.device
) -> dict[str, Any]:
    """The train state (a dict) of ``file`` after its size and SHA-256 check, read with
    ``torch.load(weights_only=True)``; CheckpointError naming what was refused."""
    verify_file(file, meta)
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
        raise CheckpointError(f"{file}: cannot be read ({one_line(e)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: holds a {type(state).__name__}, expected a dict")
    return state


def one_line(e: BaseException) -> str:
    """First sentence of an exception's message (or its type), on one line, capped."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text.split(". ")[0][:200]


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


def check_safe(obj: Any, where: str) -> None:
    """Raise CheckpointError naming the first part of ``obj`` weights_only loading refuses."""
    kind = type(obj)
    if kind in _PLAIN or kind in _TENSORS:
        return
    if kind in (dict, OrderedDict):
        for k, v in obj.items():
            check_safe(k, f"{where} key {k!r}")
            check_safe(v, f"{where}[{k!r}]")
        return
    if kind in (list, tuple):
        for i, v in enumerate(obj):
            check_safe(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}, which torch.load(weights_only=True)"
        " refuses; convert it with composer.model.storage.to_safe()"
    )
