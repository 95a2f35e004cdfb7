"""Corpus: scan a folder of MIDI, ingest it in parallel, cache it, split it.

``prepare(midi_dir, cache_dir)`` finds every MIDI file below ``midi_dir``, parses and encodes
the new or changed ones in worker processes (a worker that crashes or stalls costs one file,
not the run), and writes a memory-mappable cache:

    CACHE_DIR/manifest.json        per-file record: size, mtime, content hash, status, reason
    CACHE_DIR/objects/KEY.u16      append-only pack of every file's tokens (KEY: settings)
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
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from composer import ComposerError, Config, MidiError
from composer._isolate import describe_failure, run_isolated
from composer.events import EventConfig, encode_many
from composer.files import (
    atomic_write_json,
    atomic_write_npy,
    atomic_write_text,
    fsync_dir,
    fsync_file,
)
from composer.midi import MIDI_SUFFIXES, LoadConfig, Piece, parse_many, read_bytes

FORMAT_VERSION = 1
PARSER_VERSION = 1  # bump when midi/events rules change, to invalidate cached objects
SPLITS = ("train", "valid", "test")
INDEX_DTYPE = np.dtype([("offset", np.int64), ("length", np.int64), ("split", np.int8),
                        ("seconds", np.float64), ("notes", np.int64)])


@dataclass(frozen=True)
class CorpusConfig(Config):
    """Everything that decides what the cache holds."""

    _name = "corpus settings"

    events: EventConfig = field(default_factory=EventConfig)  # the event vocabulary
    load: LoadConfig = field(default_factory=LoadConfig)  # how files are read, and the bounds
    valid_fraction: float = 0.05  # share of files (by content hash) in the validation split
    test_fraction: float = 0.05  # share of files in the test split
    timeout_seconds: float = 30.0  # a file whose parse takes longer is skipped

    def __post_init__(self) -> None:
        if not (0 <= self.valid_fraction and 0 <= self.test_fraction
                and self.valid_fraction + self.test_fraction < 1):
            raise ComposerError("valid and test fractions must be >= 0 and sum to less than 1")

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
    return sorted(_scan_stat(midi_dir))


def _scan_stat(midi_dir: str | os.PathLike) -> dict[str, os.stat_result | OSError]:
    """Relative path -> stat result (or the OSError) of every MIDI file below ``midi_dir``."""
    if not os.path.isdir(midi_dir):
        raise ComposerError(f"not a folder: {midi_dir}")
    found: dict[str, os.stat_result | OSError] = {}
    stack = [("", os.fspath(midi_dir))]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable sub-folder holds nothing we can read
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((prefix + entry.name + os.sep, entry.path))
                    continue
            except OSError:
                continue
            if entry.name.lower().endswith(MIDI_SUFFIXES):
                try:
                    st = entry.stat()
                    found[prefix + entry.name] = st if stat.S_ISREG(st.st_mode) else \
                        OSError(0, "not a regular file")
                except OSError as e:
                    found[prefix + entry.name] = e
    return found


def split_of(content_hash: str, config: CorpusConfig) -> int:
    """0 train, 1 valid, 2 test: a fixed function of the file's content hash."""
    u = int(content_hash[:8], 16) / 2**32
    if u < config.test_fraction:
        return 2
    return 1 if u < config.test_fraction + config.valid_fraction else 0


def is_prepared(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a prepared corpus cache (it holds corpus.json)."""
    return (Path(folder) / "corpus.json").is_file()


def parse_failure(stalled: bool, code: int | None, timeout: float) -> dict:
    """The record of a file whose parser stalled or crashed (``run_isolated``'s failure)."""
    return {"hash": None, "reason": describe_failure(stalled, code, timeout, "parse", "parser")}


def ingest_files(paths: Sequence[str], config: CorpusConfig) -> list[dict]:
    """Read, hash, parse and encode files (runs inside a worker process), one record each.

    A record has ``hash`` (None if unreadable), ``reason`` (None if loaded), and ``tokens``
    (uint16), ``notes``, ``events``, ``seconds``. Files are parsed and encoded together, in
    one vectorised pass; should that fail on an unforeseen input, they are redone one by one
    so that the failure costs only the file that caused it.
    """
    records: list[dict] = []
    datas: list[bytes] = []
    for path in paths:
        try:
            datas.append(read_bytes(path, config.load))
        except MidiError as e:
            records.append({"hash": None, "reason": str(e)})
            continue
        records.append({"hash": hashlib.blake2b(datas[-1], digest_size=16).hexdigest(),
                        "reason": None})
    todo = [r for r in records if r["hash"]]
    try:
        pieces = parse_many(datas, config.load)
        loaded = [(r, p) for r, p in zip(todo, pieces, strict=True) if isinstance(p, Piece)]
        encoded = encode_many([p.notes for _, p in loaded], config.events)
        for record, piece in zip(todo, pieces, strict=True):
            if isinstance(piece, MidiError):
                record["reason"] = str(piece)
        for (record, piece), tokens in zip(loaded, encoded, strict=True):
            if len(tokens) == 0:
                what = "no notes" if len(piece.notes) == 0 else "no notes in the pitch range"
                drums = "" if config.load.keep_drums else " (drums are left out)"
                record["reason"] = what + drums
                continue
            record.update(tokens=tokens.astype(np.uint16), notes=int(len(piece.notes)),
                          events=int(len(tokens)), seconds=round(float(piece.duration), 3))
    except Exception as e:  # a bug or a pathological file must cost one file, not the run
        if len(paths) > 1:
            return [ingest_files([p], config)[0] for p in paths]
        return [{**records[0], "reason": f"internal error: {type(e).__name__}: {e}"
                 .splitlines()[0]}]
    return records


def prepare(midi_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
            config: CorpusConfig | None = None, workers: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Ingest ``midi_dir`` into ``cache_dir``; only new or changed files are parsed.

    ``progress(done, total)`` is called as files finish. Returns a :class:`PrepareReport`.
    """
    config = config or CorpusConfig()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(midi_dir)
    stats = _scan_stat(midi_dir)
    paths = sorted(stats)
    listing = "\n".join(f"{r}\t{st.st_size}\t{st.st_mtime_ns}" if isinstance(st, os.stat_result)
                        else f"{r}\t{st}" for r, st in stats.items())
    scan_stamp = _digest(f"{config.to_dict()}\n{listing}")
    unchanged = _unchanged(cache, scan_stamp, len(paths))
    if unchanged:
        return unchanged  # fast path: no file was added, removed or touched
    manifest = _read_manifest(cache, config)
    old = manifest["files"]
    known = {r["hash"]: r for r in old.values() if r.get("reason") is None and r.get("hash")}
    files: dict[str, dict] = {}
    todo = []
    for rel in paths:
        st = stats[rel]
        if isinstance(st, OSError):
            files[rel] = {"hash": None, "reason": f"cannot read file: {st.strerror or st}"}
            continue
        prev = old.get(rel)
        if prev and (prev.get("size"), prev.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
            files[rel] = prev
        else:
            files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            todo.append(rel)
    report = PrepareReport(cache, files_found=len(paths), files_parsed=len(todo))
    done = len(paths) - len(todo)
    if progress:
        progress(done, len(paths))
    pack_path = _pack_path(cache, config)
    try:
        with open(pack_path, "ab") as pack:
            at = pack.tell() // 2
            jobs = [os.path.join(midi_dir, rel) for rel in todo]
            sizes = [files[rel]["size"] for rel in todo]
            for i, record in run_isolated(ingest_files, jobs, (config,), workers,
                                          config.timeout_seconds, cost=sizes,
                                          failure=parse_failure):
                tokens = record.pop("tokens", None)
                if tokens is not None and record["hash"] in known:  # same content seen before
                    record["at"] = known[record["hash"]]["at"]
                elif tokens is not None:
                    pack.write(tokens.tobytes())
                    record["at"], at = at, at + len(tokens)
                    known[record["hash"]] = record
                files[todo[i]].update(record)
                done += 1
                if progress:
                    progress(done, len(paths))
    finally:
        kept = {k: v for k, v in files.items() if "reason" in v}
        if kept != old:
            manifest["files"] = kept
            atomic_write_json(cache / "manifest.json", manifest)
    _consolidate(cache, pack_path, files, config, report, scan_stamp, Path(midi_dir).resolve())
    return report


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _unchanged(cache: Path, scan_stamp: str, found: int) -> PrepareReport | None:
    """The report of the last run if the scan is the same as then (same files, sizes, mtimes)."""
    try:
        meta = json.loads((cache / "corpus.json").read_text())
        if meta.get("scan") != scan_stamp or not (cache / "tokens.npy").is_file():
            return None
        rows = (cache / "skipped.tsv").read_text().splitlines()[1:]
        return PrepareReport(cache, found, meta["files_loaded"], 0,
                             [tuple(r.split("\t", 1)) for r in rows], meta["notes"],
                             meta["events"], meta["seconds"], meta["split_files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pack_path(cache: Path, config: CorpusConfig) -> Path:
    return cache / "objects" / f"{config.object_key()}.u16"


def _read_manifest(cache: Path, config: CorpusConfig) -> dict:
    """The manifest of the last run, or a fresh one (then the token pack starts empty)."""
    fresh = {"format_version": FORMAT_VERSION, "object_key": config.object_key(), "files": {}}
    pack = _pack_path(cache, config)
    pack.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
        ends = [r["at"] + r["events"] for r in manifest["files"].values() if "at" in r]
        valid = (manifest.get("format_version") == FORMAT_VERSION
                 and manifest.get("object_key") == config.object_key()
                 and pack.stat().st_size >= 2 * max(ends, default=0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if valid:
        return manifest
    pack.write_bytes(b"")
    return fresh


def _consolidate(cache: Path, pack_path: Path, files: dict[str, dict], config: CorpusConfig,
                 report: PrepareReport, scan_stamp: str, source: Path) -> None:
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
    listing = [f"{r}\t{files[r]['hash']}" for r in loaded]
    listing += [f"{r}\t{why}" for r, why in report.skipped]
    stamp = _digest(f"{config.to_dict()}\n" + "\n".join(listing))
    meta_path = cache / "corpus.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("stamp") == stamp:  # same contents: only the scan stamp may be new
            report.files_loaded, report.notes = meta["files_loaded"], meta["notes"]
            report.events, report.seconds = meta["events"], meta["seconds"]
            report.split_files = meta["split_files"]
            if meta.get("scan") != scan_stamp:
                atomic_write_json(meta_path, {**meta, "scan": scan_stamp})
            return
    except (OSError, ValueError, KeyError):
        pass
    index = np.zeros(len(loaded), INDEX_DTYPE)
    for i, rel in enumerate(loaded):
        rec = files[rel]
        index[i] = (0, rec["events"], split_of(rec["hash"], config), rec["seconds"], rec["notes"])
    index["offset"] = np.concatenate([[0], np.cumsum(index["length"])[:-1]]).astype(np.int64)
    report.files_loaded = len(loaded)
    report.notes, report.events = int(index["notes"].sum()), int(index["length"].sum())
    report.seconds = float(index["seconds"].sum())
    report.split_files = {s: int((index["split"] == k).sum()) for k, s in enumerate(SPLITS)}
    tokens = np.lib.format.open_memmap(cache / ".tokens.npy.partial", mode="w+",
                                       dtype=np.uint16, shape=(report.events,))
    pack = np.memmap(pack_path, dtype=np.uint16, mode="r") if report.events else None
    for i, rel in enumerate(loaded):
        o, n, at = index["offset"][i], index["length"][i], files[rel]["at"]
        tokens[o : o + n] = pack[at : at + n]
    del pack
    tokens.flush()
    del tokens
    fsync_file(cache / ".tokens.npy.partial")  # the memmap: too big for one atomic_write
    os.replace(cache / ".tokens.npy.partial", cache / "tokens.npy")
    fsync_dir(cache)
    atomic_write_npy(cache / "index.npy", index)
    lines = "".join(f"{rel}\t{reason}\n" for rel, reason in report.skipped)
    atomic_write_text(cache / "skipped.tsv", "path\treason\n" + lines)
    atomic_write_json(meta_path, {
        "format_version": FORMAT_VERSION, "stamp": stamp, "scan": scan_stamp,
        "source": str(source), "config": config.to_dict(),
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
        self.source: str | None = meta.get("source")  # the MIDI folder it was prepared from
        self.key: str | None = meta.get("stamp")  # content key: settings and file hashes

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
