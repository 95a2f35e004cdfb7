"""Terminal tables and JSON of results, for the CLI: how composer's results are shown.

Used only by :mod:`composer.cli`; the library returns plain dicts and dataclasses.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from composer.files import atomic_write_text


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
