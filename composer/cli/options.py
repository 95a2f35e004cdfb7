"""The control options of ``composer train`` and ``composer generate`` (see
:mod:`composer.controls.features` and :mod:`composer.controls.plan`), as decorators that
:mod:`composer.cli.main`
applies; numbers are checked against :mod:`composer.core.bounds`
(:func:`composer.cli.report.bounded`),
the rest goes to the library unchanged, which validates it (one-line errors)."""
# The command line's vocabulary and instrument options (kept beside ``cli`` so that it
# stays short).
#
# - ``prepare/train --events performance|notes|auto``: the event vocabulary.
# - ``prepare/train --instruments``: the instrument-aware vocabulary
# (:mod:`composer.tokens.ensemble`),
#   drums kept; off by default, so corpora and models stay as they were.
# - ``generate --instruments LIST``: the ensemble an instrument-aware model may play
#   (:func:`composer.midi.instruments.parse_instruments`; a bad list is a usage error, exit 2).

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from composer.cli.report import bounded
from composer.core import bounds
from composer.corpus.cache import AUTO_CHOICE, CorpusConfig
from composer.midi.instruments import Ensemble, InstrumentError, parse_instruments
from composer.tokens.vocab import CHOICES

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


def control_request(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The control flags given among a command's ``flags`` (density, key, pitch_classes,
    style, tempo), as :func:`composer.controls.plan.make_plan` takes them: the user's
    control request."""
    return {k: flags[k] for k in ("density", "key", "pitch_classes", "style", "tempo")
            if flags.get(k) is not None}

EVENTS_HELP = ("Event vocabulary: performance (10 ms grid, for performed MIDI), notes (notes "
               "with durations in 1/12 beats, for quantised MIDI), or auto: notes when at "
               "least 90% of onsets lie on the beat grid.")
ENSEMBLE_HELP = ("Instrument-aware vocabulary: notes keep their General MIDI program "
                 "(PROGRAM tokens) and drums are kept (DRUM tokens). Without it every "
                 "instrument is merged into one part and drums are left out.")
CHOOSE_HELP = ("Instruments the output may use, e.g. \"violin,viola,cello\" (GM names, "
               "families such as strings or brass, numbers 0..127, drums) [default: a MIDI "
               "seed's instruments, else any]. Needs a model trained with --instruments.")


def events_option(more: str = "") -> Any:
    """The ``--events`` option (into the parameter ``vocabulary``); ``more``: help added."""
    return click.option("--events", "vocabulary", type=click.Choice(CHOICES),
                        default=AUTO_CHOICE, show_default=True, help=EVENTS_HELP + more)


def corpus_config(instruments: bool, **settings: Any) -> CorpusConfig:
    """``CorpusConfig(**settings)``, with both vocabularies instrument-aware when
    ``instruments`` (which keeps the drums: :class:`CorpusConfig` sees to it)."""
    config = CorpusConfig(**settings)
    if not instruments:
        return config
    return dataclasses.replace(
        config, events=dataclasses.replace(config.events, instruments=True),
        notes=dataclasses.replace(config.notes, instruments=True))


def _ensemble(ctx: click.Context, param: click.Parameter, value: str | None) -> Ensemble | None:
    if value is None:
        return None
    try:
        return parse_instruments(value)
    except InstrumentError as e:
        raise click.BadParameter(str(e), ctx, param) from None


instruments_flag = click.option("--instruments", is_flag=True, help=ENSEMBLE_HELP)
instruments_list = click.option("--instruments", callback=_ensemble, metavar="LIST",
                                help=CHOOSE_HELP)
