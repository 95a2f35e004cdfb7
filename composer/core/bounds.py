"""Bounds on what a user may ask for: one set, read by the CLI, the library and the server.

A number outside its :class:`Bound` is refused in one line naming the bound, wherever it
comes from: a CLI flag (click shows it as a usage error: :func:`composer.cli.report.bounded`
builds the click type from the same bound), a config built in Python, a JSON plan, or a
web request. The values are what makes musical sense, with room to spare, and what the
code can compute without overflow:

- ``temperature`` in [0, 5]: at 5 sampling is already close to uniform noise;
- ``top_p`` in (0, 1];
- ``density`` in [0.1, 50] notes per second (the densest piano music is about 30);
- ``tempo`` in [10, 600] quarter notes per minute (real scores: about 20 to 400);
- lengths in seconds (a piece, its guards' silences and notes, a plan's ``from``): at most
  86,400 (a day), which keeps step counts far from overflow;
- the n-gram baseline's ``order``: 1 to 12 (order 10^6 took 24 GB before it was killed);
- ``max_num``, how far a user may raise the pieces per generation: 10,000;
- a pitch-class weight: in [0, 10^6] (12 of them sum without overflow);
- a render's audio: at most an hour (10 minutes unless raised);
- ``threads`` and ingest worker processes: from 1 to the CPUs this process may run on;
- a pitch-list seed holds at most :data:`MAX_SEED_PITCHES` pitches, a MIDI seed
  :data:`MAX_SEED_NOTES` notes (a long orchestral movement; the server takes fewer).

JSON read from users (plans, web requests) is decoded by :func:`loads_json`, which refuses
nesting deeper than :data:`MAX_JSON_DEPTH` and numbers too long to convert before the
decoder can recurse or overflow.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from composer.core.messages import ComposerError, is_int, is_number

MAX_SEED_PITCHES = 128  # pitches in a pitch-list seed (a chord or an arpeggio)
MAX_SEED_NOTES = 20_000  # notes in a MIDI seed (after stacked unisons are merged)
MAX_UNISON = 8  # notes at once on one key of one instrument past which a file's stacks are
#                 merged before rendering or seeding (two voices in unison stay two notes)
MAX_JSON_DEPTH = 32  # nesting of JSON read from users (a plan needs 3)
MAX_NUMBER_CHARS = 100  # the longest number literal in such JSON
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]|[-+0-9.eE]+')


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def free_cpus() -> int:
    """The CPUs this process may run on that other work does not keep busy (by the 1-minute
    load average), at least 1: the default thread count of training. On idle cores every
    thread shares the work of a step; when other work already fills them, a step waits for
    its slowest thread (on a 2-core machine at load 10, a 2-thread loop had not finished in
    16 minutes the 35 steps that 1 thread ran in 3)."""
    cpus = available_cpus()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cpus, math.floor(cpus - busy + 0.5)))


@dataclass(frozen=True)
class Bound:
    """A closed (or left-open) interval a number must lie in, and how to name it."""

    what: str  # how messages name the value, e.g. "temperature"
    lo: float
    hi: float
    lo_open: bool = False  # True: lo itself is excluded
    integer: bool = False

    def describe(self) -> str:
        """``"a number in [0, 5]"``, ``"an integer in [1, 8]"``."""
        lo, hi = (self.lo, self.hi) if self.integer else (f"{self.lo:g}", f"{self.hi:g}")
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}]"

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a number of the right kind inside the bound."""
        ok = is_int(value) if self.integer else is_number(value) and math.isfinite(value)
        return bool(ok and (self.lo < value if self.lo_open else self.lo <= value)
                    and value <= self.hi)

    def check(self, value: Any, error: type[ComposerError] = ComposerError,
              what: str | None = None) -> Any:
        """``value`` (as int or float) when inside, else ``error`` in one line."""
        if not self.contains(value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise error(f"{what or self.what} must be {self.describe()}, got {shown}")
        return int(value) if self.integer else float(value)


TEMPERATURE = Bound("temperature", 0.0, 5.0)
TOP_P = Bound("top_p", 0.0, 1.0, lo_open=True)
DENSITY = Bound("density (notes per second)", 0.1, 50.0)
TEMPO = Bound("tempo (quarter notes per minute)", 10.0, 600.0)
SECONDS = Bound("seconds", 0.0, 86400.0, lo_open=True)  # any length in seconds: a day at most
PLAN_FROM = Bound("'from' (seconds)", 0.0, SECONDS.hi)
NGRAM_ORDER = Bound("n-gram order", 1, 12, integer=True)  # its memory grows with the order
MAX_NUM = Bound("max_num", 1, 10_000, integer=True)  # pieces one generation may be raised to
# One pitch-class weight (they are normalised, so only their ratios count): 12 of them can
# never overflow a sum, and 1e6:1 is beyond any ratio a histogram can tell apart.
PITCH_WEIGHT = Bound("each pitch-class weight", 0.0, 1e6)
# Seconds of audio one render may make: 10 minutes unless raised (RenderConfig.seconds),
# never past an hour (635 MB of 44.1 kHz stereo WAV).
RENDER_SECONDS = Bound("render length (seconds)", 0.0, 3600.0, lo_open=True)


def threads_bound(what: str = "threads") -> Bound:
    """``threads`` (or worker processes): 1 to :func:`available_cpus` (more only slow every
    one of them down)."""
    return Bound(what, 1, available_cpus(), integer=True)


def check_threads(threads: int | None, error: type[ComposerError] = ComposerError
                  ) -> int | None:
    """``threads`` when None or within :func:`threads_bound`, else ``error``."""
    return None if threads is None else threads_bound().check(threads, error)


def loads_json(data: bytes | str, error: type[ComposerError] = ComposerError) -> Any:
    """``json.loads`` of text from a user, refusing in one line (``error``) nesting deeper
    than MAX_JSON_DEPTH and number literals longer than MAX_NUMBER_CHARS, checked by one
    linear scan before decoding (the decoder would recurse or convert without bound)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = 0
    for m in _JSON_TOKEN.finditer(raw):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif token in (b"]", b"}"):
            depth -= 1
        elif token[:1] != b'"' and len(token) > MAX_NUMBER_CHARS:
            raise error(f"a number in the JSON is longer than {MAX_NUMBER_CHARS} characters")
    return json.loads(raw)
