"""Checkpoints: a trained model and everything needed to use or resume it, in one folder.

The folder (``model.safetensors``, ``checkpoint.json``, optional ``train_state.pt``), its
atomic save protocol and the file checks are :mod:`composer.model.storage`'s; this module gives
them meaning: :func:`save_checkpoint` writes a model with its configs, :func:`load_checkpoint`
reads one back into a :class:`Checkpoint`, :func:`read_info` describes one without building
the model.

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
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from composer import __version__
from composer.core.files import DiskFullError, atomic_write_text, fsync_dir, write_error
from composer.core.messages import ComposerError, GenerateError, is_int
from composer.model.config import ModelConfig, RecallConfig
from composer.model.lstm import ComposerLSTM, check_fits
from composer.model.storage import (
    FORMAT,
    FORMAT_VERSION,
    META_FILE,
    TRAIN_STATE_FILE,
    WEIGHTS_FILE,
    CheckpointDiskFullError,
    CheckpointError,
    backup_path,
    check_replaceable,
    check_safe,
    load_train_state,
    one_line,
    read_meta,
    require_file,
    resolve_folder,
    swap_into_place,
    verify_file,
    write_file,
)
from composer.tokens.vocab import Events, vocabulary_of


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

    @property
    def events(self) -> Events:
        """The event vocabulary (kind and config), parsed from ``event_config``."""
        return vocabulary_of(self.event_config)


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
        check_safe(train_state, "train_state")
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
    check_replaceable(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):  # crashed saves
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        # Serialised in memory, then written by Python: a full disk is then an OSError
        # with its errno, not a library's own error (or a torch zip-writer position error).
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta["files"] = {WEIGHTS_FILE: write_file(
            tmp / WEIGHTS_FILE, safetensors_bytes(weights, metadata={"format": FORMAT}))}
        if train_state is not None:
            buffer = io.BytesIO()
            torch.save(train_state, buffer)
            meta["files"][TRAIN_STATE_FILE] = write_file(tmp / TRAIN_STATE_FILE,
                                                          buffer.getvalue())
        write_file(tmp / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        fsync_dir(tmp)
        swap_into_place(tmp, path)
    except OSError as e:
        error = write_error(e, path, "write checkpoint")
        if isinstance(error, DiskFullError):
            raise CheckpointDiskFullError(f"{error} (the previous checkpoint is intact)") \
                from None
        raise CheckpointError(f"{path}: cannot write checkpoint ({e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful swap
    return path


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
    folder = resolve_folder(path)
    meta, model_config = _read_meta(folder)
    file = folder / WEIGHTS_FILE
    verify_file(file, meta)
    _check_header(file, meta, model_config)  # before reading tensors or building the model
    try:
        check_fits(model_config, device=map_location, what=f"the model in {folder}")
    except ComposerError as e:
        raise CheckpointError(str(e)) from None
    try:
        tensors = load_file(file, device="cpu")
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({one_line(e)})") from None
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{file}: tensor {name} holds non-finite values (NaN or "
                                  "infinity); the training run that wrote it diverged")
    model = ComposerLSTM(model_config)
    model.load_state_dict(tensors)
    train_state = None
    if with_train_state and TRAIN_STATE_FILE in meta["files"]:
        train_state = load_train_state(folder / TRAIN_STATE_FILE, meta, map_location)
    return Checkpoint(
        model=model.to(map_location).eval(), model_config=model_config,
        event_config=meta["events"], train_config=meta["train"], step=meta["step"],
        metrics=meta["metrics"], data=meta["data"], train_state=train_state, path=folder,
        created=meta["created"], composer_version=meta["composer_version"],
    )


def read_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """checkpoint.json's contents plus ``path`` (folder read), ``parameters`` (from the
    weights file's header, after its size and SHA-256 are checked: CheckpointError when
    they do not match), ``has_train_state`` (one is recorded) and
    ``resumable`` / ``resume_problem``: whether that train state is present, matches its
    recorded size and SHA-256 and loads (None, or the one-line reason why not)."""
    folder = resolve_folder(path)
    meta, model_config = _read_meta(folder)
    verify_file(folder / WEIGHTS_FILE, meta)  # size and SHA-256, as loading checks them
    shapes = _check_header(folder / WEIGHTS_FILE, meta, model_config)
    has_train_state = TRAIN_STATE_FILE in meta["files"]
    problem = None if has_train_state else "no training state saved"
    if has_train_state:
        try:
            load_train_state(folder / TRAIN_STATE_FILE, meta, "cpu")
        except CheckpointError as e:
            problem = str(e)
    return {**meta, "path": str(folder), "parameters": sum(map(math.prod, shapes.values())),
            "has_train_state": has_train_state, "resumable": problem is None,
            "resume_problem": problem}


def set_recall(path: str | os.PathLike[str], recall: RecallConfig, loss: float) -> None:
    """Record ``recall`` in a checkpoint's model config and ``loss``, the validation loss
    with it, as ``metrics.recall_loss`` (checkpoint.json rewritten atomically; the weights
    and train state, which it does not change, stay)."""
    folder = resolve_folder(path)
    meta, model_config = _read_meta(folder)
    meta["model"] = replace(model_config, recall=recall).to_dict()
    meta["metrics"].pop("recall_loss", None)
    if recall.on and math.isfinite(loss):
        meta["metrics"]["recall_loss"] = loss
    atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n")


def read_configs(path: str | os.PathLike[str]) -> tuple[ModelConfig, Events]:
    """The model config and event vocabulary a checkpoint folder records (checkpoint.json
    alone: no weights read)."""
    meta, model_config = _read_meta(resolve_folder(path))
    return model_config, vocabulary_of(meta["events"])


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The checkpoint folder ``path`` names, and a note for the user when it is not ``path``
    itself: a training output folder (holding ``best/``, or only ``latest/``) stands for its
    best checkpoint."""
    path = Path(path)
    if (path / META_FILE).exists() or not path.is_dir():
        return path, None
    for name in ("best", "latest"):
        if (path / name / META_FILE).is_file() or backup_path(path / name).is_dir():
            return path / name, f"{path} is a training folder; using its {name} checkpoint " \
                                f"{path / name}"
    return path, None


def _check_header(file: Path, meta: dict[str, Any], model_config: ModelConfig
                  ) -> dict[str, tuple[int, ...]]:
    """Check the weights file's header (names, dtypes, shapes) against the model config,
    reading only the header and allocating no model; returns the shapes."""
    require_file(file)
    expected = ComposerLSTM(model_config, device="meta").state_dict()  # shapes only
    try:
        with safe_open(file, "pt") as f:
            names = set(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
            dtypes = {k: f.get_slice(k).get_dtype() for k in names}
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({one_line(e)})") from None
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
    controls = f", controls {config.controls.width}" if config.controls.width else ""
    return f"hidden {config.hidden}, layers {config.layers}, embed_dim {config.embed_dim}" \
        + controls


def _read_meta(folder: Path) -> tuple[dict[str, Any], ModelConfig]:
    """Parse and validate checkpoint.json; returns it and its model config."""
    meta = read_meta(folder)
    return meta, _check_configs(meta["model"], meta["events"], str(folder / META_FILE))


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


def shipped_model(name: str = "default") -> Path:
    """A model shipped inside the package (``composer/model/shipped/NAME``: weights and
    checkpoint.json; its resumable training state stays in the source tree)."""
    return Path(str(resources.files("composer.model") / "shipped" / name))


def model_name(path: str | os.PathLike[str]) -> str:
    """A shipped model's name for its folder, else the folder's absolute path."""
    folder = Path(path).resolve()
    return next((n for n in shipped_names() if shipped_model(n).resolve() == folder),
                str(folder))


def default_checkpoint() -> Path:
    """The default model shipped inside the package (``composer/model/shipped/default``)."""
    return shipped_model("default")


def shipped_names() -> list[str]:
    """Names of the models shipped inside the package (``--checkpoint NAME``)."""
    root = shipped_model("default").parent
    return sorted(p.name for p in root.iterdir() if (p / "checkpoint.json").is_file())


def find_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """``path`` (a folder, or the name of a model shipped in the package when no such
    folder exists), else $COMPOSER_CHECKPOINT, else the package's
    :func:`default_checkpoint`."""
    if path is not None:
        named = str(path)
        if not Path(path).exists() and named in shipped_names():
            return shipped_model(named)
        return Path(path)
    if os.environ.get("COMPOSER_CHECKPOINT"):
        return Path(os.environ["COMPOSER_CHECKPOINT"])
    default = default_checkpoint()
    if not (default / "checkpoint.json").is_file():
        raise GenerateError(f"no default model is installed ({default} is missing); pass "
                            "--checkpoint or set COMPOSER_CHECKPOINT")
    return default
