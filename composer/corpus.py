"""Corpus: scan a folder of MIDI, ingest it in parallel, cache it, split it.

``prepare(midi_dir, cache_dir)`` finds every MIDI file below ``midi_dir``, parses and encodes
the new or changed ones in worker processes (a worker that crashes or stalls costs one file,
not the run), and writes a memory-mappable cache:

    CACHE_DIR/manifest.json        per-file record: size, mtime, content hash, status, reason
    CACHE_DIR/objects/KEY/HASH.npy encoded tokens of one file, keyed by content + settings
    CACHE_DIR/tokens.npy           all tokens of all loaded files, uint16, concatenated
    CACHE_DIR/index.npy            per file: offset, length, split, seconds, notes
    CACHE_DIR/corpus.json          settings, file list and totals
    CACHE_DIR/skipped.tsv          every skipped file with its one-line reason

``Corpus.open(cache_dir)`` reads it back without loading the tokens into memory. Files are
assigned to train/valid/test by a hash of their content, so a split never changes from run to
run and a piece (or an exact copy of it) never sits in two splits.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from composer import ComposerError, MidiError
from composer.events import EventConfig, encode
from composer.midi import MIDI_SUFFIXES, LoadConfig, parse

FORMAT_VERSION = 1
PARSER_VERSION = 1  # bump when midi/events rules change, to invalidate cached objects
SPLITS = ("train", "valid", "test")
INDEX_DTYPE = np.dtype([("offset", np.int64), ("length", np.int64), ("split", np.int8),
                        ("seconds", np.float64), ("notes", np.int64)])


@dataclass(frozen=True)
class CorpusConfig:
    """Everything that decides what the cache holds."""

    events: EventConfig = field(default_factory=EventConfig)  # the event vocabulary
    load: LoadConfig = field(default_factory=LoadConfig)  # how files are read, and the bounds
    valid_fraction: float = 0.05  # share of files (by content hash) in the validation split
    test_fraction: float = 0.05  # share of files in the test split
    timeout_seconds: float = 30.0  # a file whose parse takes longer is skipped

    def __post_init__(self) -> None:
        if not (0 <= self.valid_fraction and 0 <= self.test_fraction
                and self.valid_fraction + self.test_fraction < 1):
            raise ComposerError("valid and test fractions must be >= 0 and sum to less than 1")

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        d = asdict(self)
        d["events"], d["load"] = self.events.to_dict(), self.load.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CorpusConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        events = EventConfig.from_dict(d.pop("events", {}))
        load = LoadConfig.from_dict(d.pop("load", {}))
        try:
            return cls(events=events, load=load, **d)
        except TypeError as e:
            raise ComposerError(f"invalid corpus settings: {e}") from None

    def object_key(self) -> str:
        """Key of the settings that change a file's tokens (split fractions do not)."""
        blob = json.dumps([PARSER_VERSION, self.events.to_dict(), self.load.to_dict()],
                          sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


@dataclass
class PrepareReport:
    """What one ``prepare`` run found and did."""

    cache_dir: Path
    files_found: int = 0
    files_loaded: int = 0
    files_parsed: int = 0  # parsed in this run (the rest came from the cache)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    notes: int = 0
    events: int = 0
    seconds: float = 0.0
    split_files: dict[str, int] = field(default_factory=dict)

    def skipped_by_reason(self) -> Counter:
        """Skipped files counted by kind of reason (numbers and positions stripped)."""
        return Counter(reason_kind(r) for _, r in self.skipped)


def reason_kind(reason: str) -> str:
    """Group a one-line reason: 'track 2: data byte over 127 at byte 40' -> 'data byte over 127'."""
    r = re.sub(r"^track \d+: ", "", reason)
    r = re.sub(r" at byte \d+", "", r)
    r = re.sub(r"\d+(\.\d+)?", "N", r)
    return r.split(" of ")[0] if r.startswith("duplicate") else r


def default_cache_dir(midi_dir: str | os.PathLike) -> Path:
    """Where ``prepare`` caches a folder when no ``--out`` is given (under XDG_CACHE_HOME)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "composer"
    src = Path(midi_dir).resolve()
    tag = hashlib.blake2b(str(src).encode(), digest_size=4).hexdigest()
    return root / "corpora" / f"{src.name or 'root'}-{tag}"


def scan(midi_dir: str | os.PathLike) -> list[str]:
    """Relative paths of the MIDI files below ``midi_dir`` (recursive, sorted, skips dot-dirs)."""
    root = Path(midi_dir)
    if not root.is_dir():
        raise ComposerError(f"not a folder: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.lower().endswith(MIDI_SUFFIXES) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def split_of(content_hash: str, config: CorpusConfig) -> int:
    """0 train, 1 valid, 2 test: a fixed function of the file's content hash."""
    u = int(content_hash[:8], 16) / 2**32
    if u < config.test_fraction:
        return 2
    return 1 if u < config.test_fraction + config.valid_fraction else 0


def _save_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_json(path: Path, obj: dict) -> None:
    _save_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=1)))


def ingest_file(path: str, config: CorpusConfig, objdir: str) -> dict:
    """Read, hash, parse and encode one file; store its tokens under ``objdir``.

    Returns a record: ``hash`` (None if unreadable), ``reason`` (None if loaded), and
    ``notes``, ``events``, ``seconds``. Runs inside a worker process.
    """
    try:
        size = os.path.getsize(path)
        if size > config.load.max_file_bytes:
            limit = config.load.max_file_bytes >> 20
            return {"hash": None, "reason": f"file is {size / 2**20:.1f} MiB (limit {limit} MiB)"}
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return {"hash": None, "reason": f"cannot read file: {e.strerror or e}"}
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    record: dict = {"hash": digest, "reason": None}
    try:
        piece = parse(data, config.load)
        tokens = encode(piece.notes, config.events)
    except MidiError as e:
        return {**record, "reason": str(e)}
    except Exception as e:  # a bug or a pathological file must cost one file, not the run
        return {**record, "reason": f"internal error: {type(e).__name__}: {e}".splitlines()[0]}
    if len(tokens) == 0:
        what = "no notes" if len(piece.notes) == 0 else "no notes in the pitch range"
        drums = "" if config.load.keep_drums else " (drums are left out)"
        return {**record, "reason": what + drums}
    target = Path(objdir) / f"{digest}.npy"
    _save_atomic(target, lambda p: np.save(open(p, "wb"), tokens.astype(np.uint16)))
    return {**record, "notes": int(len(piece.notes)), "events": int(len(tokens)),
            "seconds": round(float(piece.duration), 3)}


def _worker(conn, fn: Callable, args: tuple) -> None:
    """Worker loop: receive a batch of (index, job), send back (index, result) one at a time."""
    try:
        while (batch := conn.recv()) is not None:
            for i, job in batch:
                conn.send((i, fn(job, *args)))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass


def run_isolated(fn: Callable, jobs: Sequence, args: tuple = (), workers: int | None = None,
                 timeout: float = 30.0, batch: int = 8) -> Iterator[tuple[int, dict]]:
    """Yield ``(i, fn(jobs[i], *args))`` in completion order, computed in worker processes.

    A worker that dies (a crashing parser) or stays on one job longer than ``timeout`` seconds
    is replaced, and that job yields ``{"hash": None, "reason": ...}``; the run carries on.
    """
    if not jobs:
        return
    n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pending = list(range(len(jobs)))[::-1]  # a stack: pop() gives the next job
    slots: dict = {}  # connection -> [process, outstanding job indices, time of last news]

    def start() -> None:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, fn, args), daemon=True)
        proc.start()
        child.close()
        slots[parent] = [proc, [], time.monotonic()]

    def feed(conn) -> None:
        slot = slots[conn]
        if not slot[1] and pending:
            take = [pending.pop() for _ in range(min(batch, len(pending)))]
            slot[1], slot[2] = take, time.monotonic()
            conn.send([(i, jobs[i]) for i in take])

    def lose(conn, stalled: bool) -> tuple[int, dict]:
        proc, outstanding, _ = slots.pop(conn)
        if stalled:
            proc.kill()
        proc.join()
        conn.close()
        pending.extend(outstanding[:0:-1])  # the rest of its batch goes back on the stack
        if pending:
            start()
        code = proc.exitcode
        reason = (f"parse took longer than {timeout:g} s" if stalled
                  else f"parser crashed (signal {-code})" if code and code < 0
                  else f"parser crashed (exit code {code})")
        return outstanding[0], {"hash": None, "reason": reason}

    for _ in range(n):
        start()
    try:
        while slots:
            for conn in list(slots):
                feed(conn)
                if not slots[conn][1]:
                    slots.pop(conn)[0].kill()
                    conn.close()
            ready = wait(list(slots), timeout=min(1.0, timeout))
            for conn in ready:
                try:
                    i, result = conn.recv()
                except (EOFError, OSError):
                    yield lose(conn, stalled=False)
                    continue
                slots[conn][1].remove(i)
                slots[conn][2] = time.monotonic()
                yield i, result
            now = time.monotonic()
            for conn in [c for c, s in slots.items() if s[1] and now - s[2] > timeout]:
                yield lose(conn, stalled=True)
    finally:
        for proc, _, _ in slots.values():
            proc.kill()


def prepare(midi_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
            config: CorpusConfig | None = None, workers: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Ingest ``midi_dir`` into ``cache_dir``; only new or changed files are parsed.

    ``progress(done, total)`` is called as files finish. Returns a :class:`PrepareReport`.
    """
    config = config or CorpusConfig()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(midi_dir)
    paths = scan(midi_dir)
    objdir = cache / "objects" / config.object_key()
    objdir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(cache, config)
    old = manifest["files"]
    files: dict[str, dict] = {}
    todo = []
    for rel in paths:
        try:
            st = os.stat(os.path.join(midi_dir, rel))
        except OSError as e:
            files[rel] = {"hash": None, "reason": f"cannot read file: {e.strerror or e}"}
            continue
        prev = old.get(rel)
        if prev and (prev.get("size"), prev.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
            files[rel] = prev
        else:
            files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            todo.append(rel)
    report = PrepareReport(cache, files_found=len(paths), files_parsed=len(todo))
    if progress:
        progress(len(paths) - len(todo), len(paths))
    done = len(paths) - len(todo)
    try:
        jobs = [os.path.join(midi_dir, rel) for rel in todo]
        for i, record in run_isolated(ingest_file, jobs, (config, str(objdir)), workers,
                                      config.timeout_seconds):
            files[todo[i]].update(record)
            done += 1
            if progress:
                progress(done, len(paths))
    finally:
        manifest["files"] = {k: v for k, v in files.items() if "reason" in v}
        _save_json(cache / "manifest.json", manifest)
    _consolidate(cache, objdir, files, config, report)
    return report


def _read_manifest(cache: Path, config: CorpusConfig) -> dict:
    fresh = {"format_version": FORMAT_VERSION, "object_key": config.object_key(), "files": {}}
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return fresh
    if (manifest.get("format_version") != FORMAT_VERSION
            or manifest.get("object_key") != config.object_key()):
        return fresh
    return manifest


def _consolidate(cache: Path, objdir: Path, files: dict[str, dict], config: CorpusConfig,
                 report: PrepareReport) -> None:
    """Write tokens.npy / index.npy / corpus.json / skipped.tsv unless they are up to date."""
    seen: dict[str, str] = {}
    loaded = []
    for rel, rec in files.items():
        if rec.get("reason") is None and rec.get("hash"):
            if rec["hash"] in seen:
                report.skipped.append((rel, f"duplicate of {seen[rec['hash']]}"))
                continue
            seen[rec["hash"]] = rel
            loaded.append(rel)
        else:
            report.skipped.append((rel, rec.get("reason") or "not processed"))
    stamp = hashlib.blake2b(json.dumps(
        [config.to_dict(), [(r, files[r]["hash"]) for r in loaded]]).encode(),
        digest_size=16).hexdigest()
    index = np.zeros(len(loaded), INDEX_DTYPE)
    for i, rel in enumerate(loaded):
        rec = files[rel]
        index[i] = (0, rec["events"], split_of(rec["hash"], config), rec["seconds"], rec["notes"])
    index["offset"] = np.concatenate([[0], np.cumsum(index["length"])[:-1]]).astype(np.int64)
    report.files_loaded = len(loaded)
    report.notes, report.events = int(index["notes"].sum()), int(index["length"].sum())
    report.seconds = float(index["seconds"].sum())
    report.split_files = {s: int((index["split"] == k).sum()) for k, s in enumerate(SPLITS)}
    meta_path = cache / "corpus.json"
    try:
        if json.loads(meta_path.read_text()).get("stamp") == stamp:
            return  # nothing changed since the last run
    except (OSError, ValueError):
        pass
    tokens = np.lib.format.open_memmap(cache / ".tokens.npy.partial", mode="w+",
                                       dtype=np.uint16, shape=(report.events,))
    for i, rel in enumerate(loaded):
        o, n = index["offset"][i], index["length"][i]
        tokens[o : o + n] = np.load(objdir / f"{files[rel]['hash']}.npy")
    tokens.flush()
    del tokens
    os.replace(cache / ".tokens.npy.partial", cache / "tokens.npy")
    _save_atomic(cache / "index.npy", lambda p: np.save(open(p, "wb"), index))
    lines = "".join(f"{rel}\t{reason}\n" for rel, reason in report.skipped)
    _save_atomic(cache / "skipped.tsv", lambda p: p.write_text("path\treason\n" + lines))
    _save_json(meta_path, {
        "format_version": FORMAT_VERSION, "stamp": stamp, "config": config.to_dict(),
        "paths": loaded, "files_loaded": len(loaded), "notes": report.notes,
        "events": report.events, "seconds": report.seconds, "split_files": report.split_files,
    })


class Corpus:
    """A prepared corpus, memory-mapped: ``tokens`` (uint16), ``index`` and ``paths``."""

    def __init__(self, cache_dir: str | os.PathLike):
        cache = Path(cache_dir)
        try:
            meta = json.loads((cache / "corpus.json").read_text())
            self.tokens = np.load(cache / "tokens.npy", mmap_mode="r")  # (N,) uint16
            self.index = np.load(cache / "index.npy")  # (F,) INDEX_DTYPE
        except (OSError, ValueError) as e:
            raise ComposerError(f"{cache} is not a prepared corpus ({e})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ComposerError(f"{cache}: corpus cache format {meta.get('format_version')} "
                                f"is not {FORMAT_VERSION}; run `composer prepare` again")
        self.cache_dir = cache
        self.config = CorpusConfig.from_dict(meta["config"])
        self.paths: list[str] = meta["paths"]

    @classmethod
    def open(cls, cache_dir: str | os.PathLike) -> Corpus:
        """Open a cache written by :func:`prepare`."""
        return cls(cache_dir)

    def files(self, split: str) -> np.ndarray:
        """Indices (into ``index``/``paths``) of the files in ``split``."""
        if split not in SPLITS:
            raise ComposerError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
        return np.flatnonzero(self.index["split"] == SPLITS.index(split))

    def sequence(self, i: int) -> np.ndarray:
        """Tokens of file ``i`` (a read-only view of the memory map)."""
        o, n = self.index["offset"][i], self.index["length"][i]
        return self.tokens[o : o + n]

    def sequences(self, split: str) -> list[np.ndarray]:
        """Token sequences of every file in ``split``."""
        return [self.sequence(i) for i in self.files(split)]
