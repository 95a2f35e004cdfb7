"""The control options of ``composer train`` and ``composer generate`` (see
:mod:`composer.controls` and :mod:`composer.steering`), as decorators that :mod:`composer.cli`
applies; numbers are checked against :mod:`composer.bounds` (:func:`composer.report.bounded`),
the rest goes to the library unchanged, which validates it (one-line errors)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from composer import bounds
from composer.report import bounded

TRAIN_HELP = ("What the model is conditioned on: auto (density and pitch classes, + style "
              "when MIDI_DIR has subfolders, one style each, + tempo on the beat vocabulary), "
              "none, or a comma list of density, pitch-classes, style, tempo.")


def train_controls(f: Callable[..., Any]) -> Callable[..., Any]:
    """``composer train --controls``."""
    return click.option("--controls", default="auto", show_default=True, help=TRAIN_HELP)(f)


def generate_controls(f: Callable[..., Any]) -> Callable[..., Any]:
    """``composer generate --density --key --pitch-classes --style --tempo --controls``; the
    command receives them as ``density``, ``key``, ``pitch_classes``, ``style``, ``tempo``
    and ``plan``."""
    options = [
        click.option("--density", type=bounded(bounds.DENSITY),
                     help="Notes per second to aim for (a model trained with controls)."),
        click.option("--key", help='Key to play in, e.g. "D minor", "Bb major", "F#m".'),
        click.option("--pitch-classes", metavar="W0,...,W11",
                     help="12 pitch-class weights, C first (instead of --key)."),
        click.option("--style", help="One of the model's styles (its training subfolders)."),
        click.option("--tempo", type=bounded(bounds.TEMPO),
                     help="Quarter notes per minute (beat vocabulary); also the output's tempo."),
        click.option("--controls", "plan", type=click.Path(dir_okay=False, path_type=Path),
                     help='A JSON plan of controls over time: [{"from": 0, "density": 2}, '
                          '{"from": 20, "density": 6, "key": "A minor"}] (seconds).'),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def control_flags(density: float | None, key: str | None, pitch_classes: str | None,
                  style: str | None, tempo: float | None) -> dict[str, Any]:
    """The flags given, as :func:`composer.steering.make_plan` takes them."""
    given = {"density": density, "key": key, "pitch_classes": pitch_classes, "style": style,
             "tempo": tempo}
    return {k: v for k, v in given.items() if v is not None}
