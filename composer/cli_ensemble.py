"""The command line's vocabulary and instrument options (kept beside ``cli`` so that it
stays short).

- ``prepare/train --events performance|notes|auto``: the event vocabulary.
- ``prepare/train --instruments``: the instrument-aware vocabulary (:mod:`composer.ensemble`),
  drums kept; off by default, so corpora and models stay as they were.
- ``generate --instruments LIST``: the ensemble an instrument-aware model may play
  (:func:`composer.instruments.parse_instruments`; a bad list is a usage error, exit 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from composer.corpus import AUTO_CHOICE, CorpusConfig
from composer.instruments import Ensemble, InstrumentError, parse_instruments
from composer.vocab import CHOICES

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
    """``CorpusConfig(**settings)``, with both vocabularies instrument-aware and drums kept
    when ``instruments``."""
    config = CorpusConfig(**settings)
    if not instruments:
        return config
    return dataclasses.replace(
        config, events=dataclasses.replace(config.events, instruments=True),
        notes=dataclasses.replace(config.notes, instruments=True),
        load=dataclasses.replace(config.load, keep_drums=True))


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
