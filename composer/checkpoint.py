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
Before any tensor is read or a model built, checkpoint.json is read with a size bound, the
weights file's size and SHA-256 are checked, its header's tensor shapes are compared with
the config, and the memory the model needs is compared with what is free; weights that are
not finite (a diverged run) are refused. A full disk while saving raises
:class:`CheckpointDiskFullError` ("disk full: ...") and leaves the old checkpoint as it was.
:func:`resolve_checkpoint_path` lets a training folder stand for its ``best`` checkpoint.

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
import io
import json
import math
import os
import pickle
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
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from composer import ComposerError, __version__, is_int
from composer.files import DiskFullError, fsync_dir, read_regular, write_error
from composer.model import ComposerLSTM, ModelConfig, check_fits
from composer.vocab import vocabulary_of

FORMAT = "composer-checkpoint"  # marker that tells our checkpoint.json from other JSON
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
TRAIN_STATE_FILE = "train_state.pt"
CHECKPOINT_FILES = (WEIGHTS_FILE, META_FILE, TRAIN_STATE_FILE)
MAX_META_BYTES = 16 << 20  # checkpoint.json larger than this is refused unread
FILE_MODE = 0o644  # every file of a checkpoint

# checkpoint.json keys other than format/format_version, with their JSON types
_META_TYPES: dict[str, type] = {
    "composer_version": str, "created": str, "step": int, "model": dict, "events": dict,
    "train": dict, "metrics": dict, "data": dict, "files": dict,
}
_PLAIN = (str, int, float, bool, type(None))  # exact types weights_only loading accepts
_TENSORS = (torch.Tensor, torch.nn.Parameter)


class CheckpointError(ComposerError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


class CheckpointDiskFullError(CheckpointError, DiskFullError):
    """Saving a checkpoint ran out of disk space; the old checkpoint is left as it was."""


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
        # Serialised in memory, then written by Python: a full disk is then an OSError
        # with its errno, not a library's own error (or a torch zip-writer position error).
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta["files"] = {WEIGHTS_FILE: _write_file(
            tmp / WEIGHTS_FILE, safetensors_bytes(weights, metadata={"format": FORMAT}))}
        if train_state is not None:
            buffer = io.BytesIO()
            torch.save(train_state, buffer)
            meta["files"][TRAIN_STATE_FILE] = _write_file(tmp / TRAIN_STATE_FILE,
                                                          buffer.getvalue())
        _write_file(tmp / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        fsync_dir(tmp)
        _swap_into_place(tmp, path)
    except OSError as e:
        error = write_error(e, path, "write checkpoint")
        if isinstance(error, DiskFullError):
            raise CheckpointDiskFullError(f"{error} (the previous checkpoint is intact)") \
                from None
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


def _write_file(file: Path, data: bytes) -> dict[str, Any]:
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
    _check_header(file, meta, model_config)  # before reading tensors or building the model
    try:
        check_fits(model_config, device=map_location, what=f"the model in {folder}")
    except ComposerError as e:
        raise CheckpointError(str(e)) from None
    try:
        tensors = load_file(file, device="cpu")
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({_one_line(e)})") from None
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{file}: tensor {name} holds non-finite values (NaN or "
                                  "infinity); the training run that wrote it diverged")
    model = ComposerLSTM(model_config)
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
    weights file's header; tensors are not read), ``has_train_state`` (one is recorded) and
    ``resumable`` / ``resume_problem``: whether that train state is present, matches its
    recorded size and SHA-256 and loads (None, or the one-line reason why not)."""
    folder = _resolve(path)
    meta, model_config = _read_meta(folder)
    shapes = _check_header(folder / WEIGHTS_FILE, meta, model_config)
    has_train_state = TRAIN_STATE_FILE in meta["files"]
    problem = None if has_train_state else "no training state saved"
    if has_train_state:
        try:
            _load_train_state(folder / TRAIN_STATE_FILE, meta, "cpu")
        except CheckpointError as e:
            problem = str(e)
    return {**meta, "path": str(folder), "parameters": sum(map(math.prod, shapes.values())),
            "has_train_state": has_train_state, "resumable": problem is None,
            "resume_problem": problem}


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The checkpoint folder ``path`` names, and a note for the user when it is not ``path``
    itself: a training output folder (holding ``best/``, or only ``latest/``) stands for its
    best checkpoint."""
    path = Path(path)
    if (path / META_FILE).exists() or not path.is_dir():
        return path, None
    for name in ("best", "latest"):
        if (path / name / META_FILE).is_file() or _backup_path(path / name).is_dir():
            return path / name, f"{path} is a training folder; using its {name} checkpoint " \
                                f"{path / name}"
    return path, None


def _check_header(file: Path, meta: dict[str, Any], model_config: ModelConfig
                  ) -> dict[str, tuple[int, ...]]:
    """Check the weights file's header (names, dtypes, shapes) against the model config,
    reading only the header and allocating no model; returns the shapes."""
    _require_file(file)
    expected = ComposerLSTM(model_config, device="meta").state_dict()  # shapes only
    try:
        with safe_open(file, "pt") as f:
            names = set(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
            dtypes = {k: f.get_slice(k).get_dtype() for k in names}
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({_one_line(e)})") from None
    if names != set(expected):
        different = ", ".join(sorted(names ^ set(expected))[:4])
        raise CheckpointError(f"{file}: tensor names do not fit the model config ({different})")
    for name, want in expected.items():
        got, dtype = shapes[name], dtypes[name]  # must be float and of the config's shape
        if got != tuple(want.shape) or dtype not in ("F16", "BF16", "F32", "F64"):
            raise CheckpointError(f"{file}: tensor {name} is {dtype} {got}, the model config "
                                  f"({_sizes(model_config)}) needs float {tuple(want.shape)}")
    return shapes


def _sizes(config: ModelConfig) -> str:
    return f"hidden {config.hidden}, layers {config.layers}, embed_dim {config.embed_dim}"


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
        data = read_regular(file, MAX_META_BYTES)
    except ComposerError as e:
        raise CheckpointError(f"{file}: {e}") from None
    try:
        meta = json.loads(data.decode("utf-8"))
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
        vocab_size = vocabulary_of(events).size
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
        what = "not a regular file" if file.exists() else "missing"
        raise CheckpointError(f"{file}: {what}")


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
