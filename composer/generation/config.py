"""What a generation draws and how: :class:`SampleConfig` (torch-free, so the CLI reads its
defaults without loading torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from composer.core import bounds
from composer.core.config import Config
from composer.core.messages import GenerateError, check_int, is_int

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
    max_note_seconds: float | None = None  # no note lasts longer; None: the model's guard
    max_polyphony: int | None = None  # most notes at once; None: the model's guard (or none)
    # Instrument-aware models: the GM programs whose PROGRAM tokens may be drawn (None: any)
    # and whether drum hits may be (composer.midi.instruments.parse_instruments reads a list).
    instruments: tuple[int, ...] | None = None
    drums: bool = True
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
        for name in ("max_silence_seconds", "max_note_seconds", "max_seconds", "seconds"):
            if (v := getattr(self, name)) is not None or name != "max_note_seconds":
                bounds.SECONDS.check(v, GenerateError, f"sample config: {name}")
        for name, least in (("top_k", 0), ("events", 1), ("max_polyphony", 1)):
            v = getattr(self, name)
            if v is not None or name == "top_k":
                check_int(v, f"sample config: {name}", least, GenerateError)
        bounds.MAX_NUM.check(self.max_num, GenerateError, "sample config: max_num")
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

