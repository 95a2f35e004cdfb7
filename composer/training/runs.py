"""A training run's output folder: what it holds, setting an old run aside, metrics.jsonl.

``OUT/latest`` and ``OUT/best`` (checkpoints), ``OUT/metrics.jsonl`` (one JSON object per
logged step and evaluation), ``OUT/tb`` (TensorBoard, when installed) and ``OUT/soup`` (a
fine-tune's further runs: :mod:`composer.training.soup`) make up one run
(:data:`RUN_FILES`). A new run never silently mixes with an old one: :func:`set_aside_run`
refuses, or moves the old run into ``OUT/previous-N`` (nothing is deleted); after a resume,
:func:`truncate_metrics` drops the lines logged past the checkpoint resumed from.
One run at a time: :func:`holds_run` locks ``OUT`` (``OUT/.lock``, which ``--force``
does not move) for the whole of ``train``; a second run into it, ``--force`` or
``--resume`` included, is refused at once, naming the run that holds it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from composer.core.files import atomic_write_text, locked_folder, write_error
from composer.core.messages import ComposerError
from composer.model.checkpoint import read_info

F = TypeVar("F", bound=Callable[..., Any])

# one run (soup: a fine-tune's further runs, composer.training.soup)
RUN_FILES = ("latest", "best", ".latest.bak", ".best.bak", "metrics.jsonl", "tb", "soup")


def find_run(out: Path) -> str | None:
    """A one-line description of the training run held in ``out`` (step and best validation
    loss), or None if there is none."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return None
    facts = []
    for name, key in (("latest", "step"), ("best", "loss")):
        with contextlib.suppress(ComposerError):
            info = read_info(out / name)
            if key == "step":
                facts.append(f"step {info['step']}")
            elif isinstance(info["metrics"].get("loss"), (int, float)):
                facts.append(f"best validation loss {info['metrics']['loss']:.4f}")
    return f"a training run ({', '.join(facts) or 'files ' + ', '.join(found)})"


def set_aside_run(out: Path, force: bool, error: type[ComposerError] = ComposerError) -> None:
    """Make ``out`` ready for a new run: nothing to do if it holds none; otherwise raise
    ``error`` naming the run and the ways on, or (``force``) move it into OUT/previous-N."""
    run = find_run(out)
    if run is None:
        return
    if not force:
        raise error(f"{out} already holds {run}; use --resume to continue it, or "
                            "--force to start over (the old run is moved to "
                            f"{out / 'previous-N'}, not deleted)")
    n = 1
    while (out / f"previous-{n}").exists():
        n += 1
    aside = out / f"previous-{n}"
    try:
        aside.mkdir()
        for name in RUN_FILES:
            if (out / name).exists():
                os.rename(out / name, aside / name)
    except OSError as e:
        raise write_error(e, aside, "move the old run to") from None


def holds_run(train: F) -> F:
    """Decorates ``train(corpus, out_dir, ...)``: the call holds ``out_dir``'s lock (see the
    module docstring; in a distributed run, rank 0 holds it for all)."""
    @functools.wraps(train)
    def locked(corpus: Any, out_dir: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ComposerError(f"{out} is a file, not a folder for the training run")
        if int(os.environ.get("RANK", "0")) != 0:
            return train(corpus, out_dir, *args, **kwargs)
        program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        command = " ".join(["composer" if program in ("composer", "__main__.py") else program,
                            *sys.argv[1:]])
        holder = (f"pid {os.getpid()} on {socket.gethostname()}, since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {command[:300]}")
        with locked_folder(out, wait=False, holder=holder, what="training run"):
            return train(corpus, out_dir, *args, **kwargs)
    return locked  # type: ignore[return-value]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines of metrics.jsonl past ``step`` (written after the checkpoint a run
    resumes from) and any half-written line, so a resumed run repeats none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as e:
        raise ComposerError(f"cannot read {path}: {e}") from None
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) \
                and record["step"] <= step:
            kept.append(line)
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


class MetricsLog:
    """metrics.jsonl (and TensorBoard when installed), written by rank 0 only."""

    def __init__(self, out_dir: Path, active: bool):
        self.path = out_dir / "metrics.jsonl"
        try:
            self.file = open(self.path, "a") if active else None  # noqa: SIM115
        except OSError as e:
            raise write_error(e, self.path) from None
        self.tb = None
        if active:
            with contextlib.suppress(Exception):  # tensorboard is optional
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:
            raise write_error(e, self.path) from None
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{record.get('split', 'train')}/{k}", v, record["step"])

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):  # a full disk was reported already
                self.file.close()
        if self.tb is not None:
            self.tb.close()
