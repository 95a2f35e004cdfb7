"""The terminal side of the CLI: option defaults, errors, notes, progress bars, the tables
of results and their JSON.

Used only by :mod:`composer.cli` (and :mod:`composer.cli_evaluate`); the library returns
plain dicts and dataclasses.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from composer import ComposerError
from composer.files import atomic_write_text


def default(config: type | str, name: str) -> Any:
    """The default of field ``name`` of a config dataclass (options restate no default of
    their own). ``config`` is the class, or ``"module:Class"``: then a literal default is
    read from the module's source without importing it (``composer --help`` stays free of
    torch); any other default imports the module after all."""
    if isinstance(config, str):
        module, cls = config.split(":")
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)
                     and n.name == cls), [])
        for node in body:
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name \
                    and node.value is not None:
                with contextlib.suppress(ValueError, TypeError, SyntaxError):
                    return ast.literal_eval(node.value)
        config = getattr(importlib.import_module(module), cls)
    f = next(f for f in dataclasses.fields(config) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def errors_as_messages(fn: Callable) -> Callable:
    """A click command that shows a ComposerError as ``Error: ...`` (exit 1, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ComposerError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def note(text: str) -> None:
    """A ``Note: ...`` line on stderr."""
    click.echo(f"Note: {text}", err=True)


def prepared_line(report: Any) -> None:
    """The one line on stderr about a MIDI folder just prepared (a ``PrepareReport``)."""
    click.echo(f"Corpus: {report.files_loaded:,} files, {report.events:,} events "
               f"({len(report.skipped):,} skipped) cached in {report.cache_dir}; events: "
               f"{report.why}", err=True)


class Progress:
    """A tqdm bar on stderr fed by ``(done, total)`` callbacks; silent when ``quiet``."""

    def __init__(self, desc: str, unit: str, quiet: bool):
        self.desc, self.unit, self.quiet, self.bar = desc, unit, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: workers are forked
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def model_table(result: dict[str, Any]) -> str:
    """The terminal table of :func:`composer.evaluation.evaluate_model`'s result."""
    lstm = result["models"]["LSTM"]
    lines = [f"Split {result['split']!r} of {result['corpus']}: {result['files']:,} files, "
             f"{lstm['events']:,} events; baselines fitted on {result['train_events']:,} train "
             f"events of {result['train_corpus']}",
             f"{'model':<12} {'NLL nats/event':>15} {'perplexity':>11} {'accuracy':>9}   "
             "LSTM ahead by"]
    for name, r in result["models"].items():
        a = result["ahead"].get(name)
        gap = (f"{a['loss']:.3f} nats/event, perplexity x{a['perplexity_ratio']:.2f}, "
               f"accuracy {a['accuracy']:+.3f}" if a else "-")
        lines.append(f"{name:<12} {r['loss']:>15.4f} {r['perplexity']:>11.2f} "
                     f"{r['accuracy']:>9.3f}   {gap}")
    return "\n".join(lines)


def music_table(result: dict[str, Any]) -> str:
    """The terminal table of :func:`composer.musicstats.compare_sets`' result."""
    lines = [f"{result['generated_files']} generated vs {result['reference_files']} reference "
             "pieces; mean ± std per piece. overlap, KL: of the reference's intra-set and the",
             "inter-set distance densities (1, 0: generated pieces lie as close to the "
             "reference as reference pieces lie to each other)",
             f"{'feature':<30} {'reference':>15} {'generated':>15} {'overlap':>8} {'KL':>7}"]
    for name, e in result["features"].items():
        cells = [f"{e[k]['mean']:.2f} ± {e[k]['std']:.2f}" if not e["shape"]
                 else "x".join(map(str, e["shape"])) + " hist." for k in ("reference",
                                                                          "generated")]
        lines.append(f"{name:<30} {cells[0]:>15} {cells[1]:>15} {e['overlap']:>8.3f} "
                     f"{e['kl']:>7.3f}")
    return "\n".join(lines)


def copy_table(names: Sequence[str], matches: Sequence[Any], warnings: Sequence[str | None]
               ) -> str:
    """The terminal table of copy-check results (:class:`composer.copycheck.CopyMatch`)."""
    lines = [f"{'file':<32} {'events':>7} {'seconds':>8} {'share':>6}  source (at s, transposed)"]
    for name, m, warn in zip(names, matches, warnings, strict=True):
        src = f"{m.source} ({m.source_seconds:.1f} s, {m.transpose:+d})" if m.events else "-"
        lines.append(f"{name:<32} {m.events:>7} {m.seconds:>8.1f} {m.fraction:>6.0%}  {src}"
                     + ("  COPY" if warn else ""))
    return "\n".join(lines)


def save_json(result: Any, path: str | os.PathLike) -> Path:
    """Write a result (dicts, lists, numbers, dataclasses' ``__dict__``) as JSON; NaN and
    infinities become null."""
    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, (float, np.floating)):
            return float(x) if math.isfinite(x) else None
        return x.item() if isinstance(x, np.generic) else x

    return atomic_write_text(path, json.dumps(clean(result), indent=1) + "\n")
