"""The plain parts of ``composer serve``'s web API, without HTTP: settings, request checks,
the result store and the gate that bounds concurrent work (:mod:`composer.serve.app` wires
them to Starlette).

- :class:`ServeConfig`: where the server listens and every bound it keeps.
- :func:`check_request`: a JSON generation request to a :class:`GenerateRequest`, or an
  :class:`ApiError` with a one-line message and its HTTP status.
- :class:`Results`: generated pieces in a server-owned temporary folder under random ids,
  the oldest evicted past ``max_results`` pieces or ``max_bytes``; clients name an id and
  one of :data:`RESULT_FILES`, never a path.
- :class:`Gate`: at most ``workers`` generations at once, at most ``queue`` waiting, each
  waiting at most ``wait_seconds``; past that a request gets 503 instead of memory.
- :class:`Jobs`: requests run in the background whose progress the page polls.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.core import bounds
from composer.core.bounds import Bound
from composer.core.config import Config
from composer.core.messages import ComposerError, is_int, is_number

SEED_KINDS = ("none", "pitches", "opening", "upload", "result")
RESULT_FILES = {"piece.mid": "audio/midi", "piece.wav": "audio/wav",
                "roll.json": "application/json"}  # the files of a result: media types
URL_KEYS = {"piece.mid": "mid", "piece.wav": "wav", "roll.json": "roll"}  # in its "urls"
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
PITCHES_PATTERN = re.compile(r"[A-Za-z0-9#, -]{1,400}")
MAX_PLAN_SEGMENTS = 256  # a drawn plan holds far fewer


class ApiError(ComposerError):
    """A request the server refuses: a one-line message and the HTTP status to send."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeConfig(Config):
    """How ``composer serve`` listens and the bounds it keeps."""

    _name = "serve settings"

    host: str = "127.0.0.1"  # loopback only; another host is said out loud
    allow_hosts: tuple[str, ...] = ()  # Host names answered besides this machine's own
    port: int = 8000
    workers: int = 2  # generations at once, each on one CPU thread
    queue: int = 32  # requests waiting for a worker; one more gets 503 at once
    wait_seconds: float = 180.0  # a request waits this long for a worker, then gets 503
    upload_bytes: int = 1 << 20  # largest MIDI upload (1 MiB); larger: 413
    parse_seconds: float = 10.0  # the isolated MIDI loader's limit per upload
    max_seconds: float = 120.0  # longest piece one request may ask for
    max_num: int = 4  # pieces per request
    seed_seconds: float = 20.0  # a MIDI seed's opening used (uploads, openings) ...
    seed_notes: int = 5_000  # ... and the most notes it may hold (stacked unisons merged)
    continue_seconds: float = 300.0  # "Continue from here": at most this much of the result
    max_results: int = 200  # pieces kept; the oldest are deleted past this ...
    max_bytes: int = 512 << 20  # ... or past this many bytes on disk
    # Connections (composer.serve.connections): slow or idle ones are closed, and new ones past
    # the caps are closed before anything is read.
    max_connections: int = 256  # open at once
    max_connections_per_client: int = 64  # open at once from one address
    header_seconds: float = 10.0  # a request's line and headers must arrive within this
    body_seconds: float = 60.0  # its body within this (1 MiB at 17 KiB/s), else 408
    keep_alive_seconds: float = 5.0  # an idle kept-alive connection is closed after this
    log_repeats: int = 5  # identical log lines let through a minute; the rest are counted

    def __post_init__(self) -> None:
        for name in ("port", "workers", "queue", "upload_bytes", "max_num", "max_results",
                     "max_bytes", "seed_notes", "max_connections", "max_connections_per_client",
                     "log_repeats"):
            v = getattr(self, name)
            if not is_int(v) or v < (0 if name == "port" else 1):
                raise ComposerError(f"{self._name}: {name} must be a positive integer, "
                                    f"got {v!r}")
        for name in ("wait_seconds", "parse_seconds", "max_seconds", "seed_seconds",
                     "continue_seconds", "header_seconds", "body_seconds", "keep_alive_seconds"):
            v = getattr(self, name)
            if not (is_number(v) and math.isfinite(v) and v > 0):
                raise ComposerError(f"{self._name}: {name} must be a number > 0, got {v!r}")


@dataclass(frozen=True)
class GenerateRequest:
    """A checked generation request."""

    model: str
    seed: str = "none"  # one of SEED_KINDS
    pitches: str = ""  # seed "pitches": numbers and/or note names
    style: str = "chord"  # a pitch seed played as a chord or an arpeggio
    opening: str = ""  # seed "opening": a bundled opening's id
    result: str = ""  # seed "result": a result id ("Continue from here")
    seconds: float = 30.0  # length of music to generate
    num: int = 1  # pieces
    temperature: float = 1.0
    top_p: float = 1.0
    rng_seed: int | None = None  # the same seed and request give the same music
    controls: dict[str, Any] = field(default_factory=dict)  # the model's declared controls
    plan: list[dict[str, Any]] = field(default_factory=list)  # segments over time (seconds)


def takes(declared: list[dict[str, Any]]) -> str:
    """What a model takes, from its declared inputs: ``density, key, style (bach, folk)``."""
    words = [c["name"] + (f" ({', '.join(c['choices'])})" if c.get("name") == "style" else "")
             for c in declared]
    return ", ".join(words) or "no controls"


def _number(d: Mapping[str, Any], name: str, default: float, bound: Bound) -> Any:
    v = d.get(name, default)
    if not bound.contains(v):
        raise ApiError(f"{name} must be {bound.describe()}, got {json.dumps(v)[:40]}")
    return int(v) if bound.integer else float(v)


def _text(d: Mapping[str, Any], name: str, pattern: re.Pattern[str] = ID_PATTERN) -> str:
    v = d.get(name, "")
    if not isinstance(v, str) or (v and not pattern.fullmatch(v)):
        raise ApiError(f"{name} is not valid: {json.dumps(v)[:40]}")
    return v


def check_request(d: Any, config: ServeConfig, models: Mapping[str, Any],
                  controls: Mapping[str, list[dict[str, Any]]]) -> GenerateRequest:
    """The :class:`GenerateRequest` of a decoded JSON body ``d``; :class:`ApiError` (400)
    naming the first field that is unknown, of the wrong type or out of range. ``models``:
    the model ids served (the first is the default); ``controls``: each model's declared
    controls (``[{"name": ...}, ...]``)."""
    if not isinstance(d, dict):
        raise ApiError("the request must be a JSON object")
    known = {f for f in GenerateRequest.__dataclass_fields__}
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise ApiError(f"unknown field {unknown[0][:40]!r}")
    model = _text(d, "model") or next(iter(models))
    if model not in models:
        raise ApiError(f"no model {model!r}", 404)
    seed = d.get("seed", "none")
    if seed not in SEED_KINDS:
        raise ApiError(f"seed must be one of {', '.join(SEED_KINDS)}, got "
                       f"{json.dumps(seed)[:40]}")
    style = d.get("style", "chord")
    if style not in ("chord", "arpeggio"):
        raise ApiError(f"style must be chord or arpeggio, got {json.dumps(style)[:40]}")
    pitches = _text(d, "pitches", PITCHES_PATTERN)
    for kind, value in (("pitches", pitches), ("opening", _text(d, "opening")),
                        ("result", _text(d, "result"))):
        if seed == kind and not value.strip():
            raise ApiError(f"seed {kind} needs the field {kind!r}")
    rng_seed = d.get("rng_seed")
    if rng_seed is not None:
        rng_seed = _number(d, "rng_seed", 0, Bound("rng_seed", 0, 2**31 - 1, integer=True))
    given = d.get("controls") or {}
    if not isinstance(given, dict):
        raise ApiError("controls must be an object")
    declared = controls.get(model, [])
    for name in given:
        if name not in {c.get("name") for c in declared}:
            raise ApiError(f"model {model!r} does not take {str(name)[:40]!r} (it takes "
                           f"{takes(declared)})")
    plan = d.get("plan") or []
    if not isinstance(plan, list) or len(plan) > MAX_PLAN_SEGMENTS or not all(
            isinstance(seg, dict) and is_number(seg.get("from")) for seg in plan):
        raise ApiError(f"plan must be a list of at most {MAX_PLAN_SEGMENTS} segments like "
                       '{"from": 0, "density": 2} (seconds)')
    for seg in plan:
        for name in seg:
            if name != "from" and name not in {c.get("name") for c in declared}:
                raise ApiError(f"plan: model {model!r} does not take {str(name)[:40]!r} (it "
                               f"takes {takes(declared)})")
    return GenerateRequest(
        model=model, seed=seed, pitches=pitches, style=style, opening=_text(d, "opening"),
        result=_text(d, "result"),
        seconds=_number(d, "seconds", 30.0, Bound("seconds", 0, config.max_seconds, True)),
        num=_number(d, "num", 1, Bound("num", 1, config.max_num, integer=True)),
        temperature=_number(d, "temperature", 1.0, bounds.TEMPERATURE),
        top_p=_number(d, "top_p", 1.0, bounds.TOP_P),
        rng_seed=rng_seed, controls=dict(given), plan=[dict(seg) for seg in plan])


# ------------------------------------------------------------------------------ results


@dataclass
class Result:
    """One generated piece in the store."""

    id: str
    folder: Path
    size: int  # bytes on disk
    info: dict[str, Any]  # what the API says of it


class Results:
    """Generated pieces under ``root``, one folder per random id, oldest evicted first."""

    def __init__(self, root: Path, max_results: int, max_bytes: int) -> None:
        self.root, self.max_results, self.max_bytes = root, max_results, max_bytes
        self._items: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()

    def work_folder(self) -> Path:
        """A fresh folder for one request's scratch files (the caller deletes it)."""
        folder = self.root / f"work-{secrets.token_hex(8)}"
        folder.mkdir(mode=0o700)
        return folder

    def add(self, files: Mapping[str, Path | bytes], info: dict[str, Any]) -> dict[str, Any]:
        """Store a piece: ``files`` maps names of :data:`RESULT_FILES` to a file to move in
        or the bytes to write. Returns ``info`` with its ``id`` and file ``urls``."""
        rid = secrets.token_urlsafe(12)
        folder = self.root / rid
        folder.mkdir(mode=0o700)
        size = 0
        for name, src in files.items():
            assert name in RESULT_FILES, name
            dst = folder / name
            if isinstance(src, bytes):
                dst.write_bytes(src)
            else:
                shutil.move(src, dst)
            size += dst.stat().st_size
        info = {"id": rid, **info,
                "urls": {URL_KEYS[n]: f"/api/results/{rid}/{n}" for n in files}}
        with self._lock:
            self._items[rid] = Result(rid, folder, size, info)
            evicted = self._evict()
        for old in evicted:
            shutil.rmtree(old.folder, ignore_errors=True)
        return info

    def _evict(self) -> list[Result]:
        total = sum(r.size for r in self._items.values())
        gone = []
        while len(self._items) > 1 and (len(self._items) > self.max_results
                                        or total > self.max_bytes):
            _, old = self._items.popitem(last=False)
            total -= old.size
            gone.append(old)
        return gone

    def file(self, rid: str, name: str) -> Path | None:
        """The path of a result's file, None for an unknown id or file name."""
        if name not in RESULT_FILES or not ID_PATTERN.fullmatch(rid):
            return None
        with self._lock:
            item = self._items.get(rid)
        path = item.folder / name if item else None
        return path if path is not None and path.is_file() else None

    def __len__(self) -> int:
        return len(self._items)


# --------------------------------------------------------------------------------- gate


class Gate:
    """Bounds concurrent work: ``workers`` at once, ``queue`` waiting, ``wait`` seconds."""

    def __init__(self, workers: int, queue: int, wait: float) -> None:
        self._slots = asyncio.Semaphore(workers)
        self.queue, self.wait, self.waiting = queue, wait, 0

    def admit(self) -> None:
        """Take a place in the queue now (the caller then calls :meth:`run` with
        ``admitted=True``); :class:`ApiError` 503 when the queue is full."""
        if self.waiting >= self.queue:
            raise ApiError("the server is busy (too many requests waiting); try again", 503)
        self.waiting += 1

    async def run(self, fn: Callable[..., Any], *args: Any, admitted: bool = False) -> Any:
        """``fn(*args)`` in a worker thread once a slot is free; :class:`ApiError` 503 when
        the queue is full or no slot came free in time."""
        import anyio.to_thread

        if not admitted:
            self.admit()
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait)
        except asyncio.TimeoutError:
            raise ApiError(f"the server is busy (no worker free in {self.wait:g} s); "
                           "try again", 503) from None
        finally:
            self.waiting -= 1
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._slots.release()


# --------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """A generation request running in the background, polled by the page for progress."""

    id: str
    state: str = "queued"  # queued, running, done, failed
    done: int = 0  # seconds of music (or events) drawn so far ...
    total: int = 0  # ... of this many
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    status: int = 200  # the HTTP status a failure would have had

    def progress(self, done: int, total: int) -> None:
        """``generate``'s progress callback (called from the worker thread)."""
        self.state, self.done, self.total = "running", done, total

    def view(self) -> dict[str, Any]:
        """What ``GET /api/jobs/{id}`` answers."""
        out = {"id": self.id, "state": self.state, "done": self.done, "total": self.total}
        if self.state == "done":
            out["results"] = self.results
        if self.state == "failed":
            out.update(error=self.error, status=self.status)
        return out


class Jobs:
    """The latest ``limit`` jobs by id (older finished ones are forgotten)."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Job] = OrderedDict()

    def new(self) -> Job:
        """A new queued job under a random id."""
        job = Job(secrets.token_urlsafe(12))
        self._items[job.id] = job
        for old in [j for j in self._items.values() if j.state in ("done", "failed")]:
            if len(self._items) <= self.limit:
                break
            del self._items[old.id]
        return job

    def get(self, jid: str) -> Job | None:
        """The job of an id, None when unknown or forgotten."""
        return self._items.get(jid) if ID_PATTERN.fullmatch(jid) else None
