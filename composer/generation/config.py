"""What a generation draws and how: :class:`SampleConfig`, and one whole ``composer generate``
job: :class:`GenerateRequest` (both torch-free, so the CLI reads their defaults and builds
them without loading torch)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from composer.core import bounds
from composer.core.config import Config
from composer.core.messages import GenerateError, check_int, is_int
from composer.evaluation.copycheck import CopyConfig
from composer.midi.instruments import Ensemble

MAX_EVENTS_PER_SECOND = 300  # a continuation given in seconds stops after this many events/s


@dataclass(frozen=True)
class SampleConfig(Config):
    """How events are drawn and how long a continuation is."""

    _error = GenerateError
    _name = "sample config"

    temperature: float = 1.0  # logits / temperature; 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely events (0: off)
    top_p: float = 1.0  # keep the smallest set of events holding this much mass (1: off)
    max_silence_seconds: float = 2.0  # longest run of silence the guard lets through
    max_opening_seconds: float = 0.5  # an unseeded piece's first note comes by then
    max_note_seconds: float | None = None  # no note lasts longer; None: the model's guard
    max_polyphony: int | None = None  # most notes at once; None: the model's guard (or none)
    # Instrument-aware models: the GM programs whose PROGRAM tokens may be drawn (None: any)
    # and whether drum hits may be (composer.midi.instruments.parse_instruments reads a list).
    instruments: tuple[int, ...] | None = None
    drums: bool = True
    # Models with controls: feedback that holds the music to the plan (0: the model alone).
    # Shift-score bias per note behind/ahead of the asked density: 2 held a plan rising 2 -> 8
    # notes/s within 10% in its first 5 s (0.5: 50-70%, the opening chord went uncorrected)
    # with no piling up of chords (benchmarks/bench_controls.py; docs/generation.md).
    density_gain: float = 2.0
    scale_penalty: float = 4.0  # score taken off notes outside an asked key's scale
    # With no key asked (a model that measured its corpus's keys): the piece keeps the seed's
    # key or one drawn from the corpus's; a note the corpus rarely plays in that key loses
    # key_hold x log(its share / an in-key share) (composer.generation.keyhold; 0: off).
    key_hold: float = 1.0
    # An asked ensemble of 2+ instruments: one not heard yet gains this many nats per second
    # of music drawn so far, one heard per second it has been silent past a 4 s rest
    # (composer.generation.ensemble; 0: off).
    instrument_gain: float = 2.0
    # An asked style (classifier-free guidance): the logits + this x (logits - the logits of a
    # twin row without the style); doubles the batch each step (0: the model alone).
    style_guidance: float = 1.0
    # A model with recall (composer.model.recall): mix in what the piece so far recalls, as
    # the model was scored (False: the model alone). A density asked or planned turns it
    # off: recall holds a piece to its own past, which held a rising plan back (2 notes/s
    # asked, 2.6 played in the first 5 s; the model alone 2.2).
    recall: bool = True
    seconds: float = 30.0  # length of music to generate (stops at the shift reaching it) ...
    events: int | None = None  # ... or, when set, exactly this many events instead
    # Limits checked before anything is allocated (a user raises them on purpose):
    max_num: int = 64  # continuations per run (CLI --max-num)
    max_seconds: float = 600.0  # seconds per continuation, 10 minutes (CLI --max-length);
    #                             events: at most max_seconds * MAX_EVENTS_PER_SECOND

    @property
    def max_events(self) -> int:
        """The most events a continuation may ask for: ``max_seconds`` at
        MAX_EVENTS_PER_SECOND."""
        return math.ceil(self.max_seconds * MAX_EVENTS_PER_SECOND)

    def __post_init__(self) -> None:
        bounds.TEMPERATURE.check(self.temperature, GenerateError, "sample config: temperature")
        bounds.TOP_P.check(self.top_p, GenerateError, "sample config: top_p")
        for name in ("max_silence_seconds", "max_opening_seconds", "max_note_seconds",
                     "max_seconds", "seconds"):
            if (v := getattr(self, name)) is not None or name != "max_note_seconds":
                bounds.SECONDS.check(v, GenerateError, f"sample config: {name}")
        for name, least in (("top_k", 0), ("events", 1), ("max_polyphony", 1)):
            v = getattr(self, name)
            if v is not None or name == "top_k":
                check_int(v, f"sample config: {name}", least, GenerateError)
        bounds.MAX_NUM.check(self.max_num, GenerateError, "sample config: max_num")
        for name in ("density_gain", "scale_penalty", "key_hold", "instrument_gain",
                     "style_guidance"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and 0 <= v <= 100):
                raise GenerateError(f"sample config: {name} must be a number in [0, 100], "
                                    f"got {v!r}")
        if self.instruments is not None and not (
                self.instruments and all(is_int(p) and 0 <= p <= 127 for p in self.instruments)):
            raise GenerateError("sample config: instruments must be GM programs 0..127 (at "
                                f"least one), got {self.instruments!r}")
        raise_it = "raise it with --max-length"
        if self.seconds > self.max_seconds:
            raise GenerateError(f"a length of {self.seconds:g} s is over the limit of "
                                f"{self.max_seconds:g} s ({raise_it})")
        if self.events is not None and self.events > self.max_events:
            raise GenerateError(f"{self.events:,} events is over the limit of "
                                f"{self.max_events:,} ({self.max_seconds:g} s at "
                                f"{MAX_EVENTS_PER_SECOND} events/s; {raise_it})")

    def check_num(self, num: int) -> int:
        """``num`` continuations as an int; GenerateError unless 1 <= num <= max_num."""
        check_int(num, "num", 1, GenerateError)
        if num > self.max_num:
            raise GenerateError(f"{num:,} continuations is over the limit of {self.max_num} "
                                "per run (raise it with --max-num)")
        return int(num)

    def events_per_row(self) -> int:
        """The most events one continuation draws (its length in events, or the cap of a
        length in seconds)."""
        return self.events or math.ceil(self.seconds * MAX_EVENTS_PER_SECOND) + CHUNK

CHUNK = 16  # steps per loop iteration (per CUDA graph replay)



@dataclass(frozen=True)
class GenerateRequest(Config):
    """One ``composer generate`` job as its flags (or a server request) give it: which
    model, what to continue under which controls, how many continuations drawn how, where
    the files go and what else is made of them. The CLI builds it in one place
    (:func:`composer.cli.main.generate`);
    :func:`composer.generation.session.generate_music` carries it out.

    The control words: ``control_request`` is what the user asked for (flags such as
    ``{"density": 4, "key": "D minor"}``), ``plan_file`` a JSON file of such requests over
    time; both become one :class:`~composer.controls.plan.ControlPlan` (the *plan*), whose
    per-step *control vectors* (tensors) the model reads as its
    :class:`~composer.controls.features.ControlSpec` (the *spec*) says."""

    _error = GenerateError
    _name = "generate request"

    checkpoint: str | None = None  # model or training folder, or a shipped model's name
    #                                (None: $COMPOSER_CHECKPOINT, else the shipped default)
    seed: str | None = None  # a MIDI file, or pitches like "60,64,67" (None: start context)
    seed_seconds: float | None = None  # only the first S seconds of a MIDI seed (None: all)
    seed_style: str = "chord"  # how a pitch-list seed is played: "chord" or "arpeggio"
    sample: SampleConfig = field(default_factory=SampleConfig)  # how events are drawn
    num: int = 1  # continuations, drawn in one batch, one file each
    rng_seed: int | None = None  # file k uses rng_seed + k - 1 (None: random)
    control_request: Mapping[str, Any] | None = None  # control flags asked for
    plan_file: str | None = None  # a JSON plan of control requests over time
    instruments: Ensemble | None = None  # what an instrument-aware model may play
    #                                      (None: a MIDI seed's instruments, else any)
    out: str = "."  # folder of the .mid files
    prefix: str = "composer"  # files are PREFIX-001.mid, PREFIX-002.mid, ...
    include_seed: bool = True  # the files start with the seed
    program: int = 0  # General MIDI program of the output
    force: bool = False  # overwrite existing files (else the next free numbers)
    device: str = "auto"  # where the model runs: auto, cpu, cuda
    threads: int | None = 1  # torch's CPU threads meanwhile (None: unchanged)
    engine: str = "auto"  # the stepper (composer.model.steppers.ENGINES)
    render_audio: bool = False  # also render each file to .wav
    plot_roll: bool = False  # also draw each file's piano roll (.png)
    copy_warn: float = CopyConfig.warn_seconds  # warn at copies this long (0: no check)
