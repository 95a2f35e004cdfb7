"""The files of a prepared corpus cache and the check that they agree with corpus.json."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from composer.core.config import Config
from composer.core.files import write_error
from composer.core.messages import ComposerError
from composer.corpus.facts import Guards
from composer.midi.io import LoadConfig
from composer.tokens.beats import Clock, NoteEventConfig, clock_from
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import CHOICES, PERFORMANCE, Events

FORMAT_VERSION = 2
SPLITS = ("train", "valid", "test")
INDEX_DTYPE = np.dtype([("offset", np.int64), ("length", np.int64), ("split", np.int8),
                        ("seconds", np.float64), ("notes", np.int64),
                        ("us_per_quarter", np.int64), ("numerator", np.int16),
                        ("denominator", np.int16), ("on_grid", np.int64), ("onsets", np.int64)])


def cache_problem(cache: Path, meta: dict | None = None) -> str | None:
    """None if tokens.npy and index.npy match what corpus.json records (byte sizes, shapes);
    otherwise a one-line description of the mismatch. No corpus.json yet: None."""
    try:
        meta = meta if meta is not None else json.loads((cache / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    recorded = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(recorded, dict):
        return "corpus.json records no file sizes (written by an older composer)"
    for name, want in recorded.items():
        try:
            size = (cache / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != want:
            return f"{name} is {size:,} bytes, corpus.json records {want:,}"
    if all(_has_header(cache / name, shape, dtype) for name, shape, dtype in (
            ("tokens.npy", (meta.get("events"),), np.uint16),
            ("index.npy", (meta.get("files_loaded"),), INDEX_DTYPE))):
        return None  # the headers np.save writes for these shapes: no need to parse them
    try:
        tokens = np.load(cache / "tokens.npy", mmap_mode="r")
        index = np.load(cache / "index.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        return f"tokens.npy or index.npy is unreadable ({e})"
    if tokens.shape != (meta.get("events"),) or index.shape != (meta.get("files_loaded"),) \
            or tokens.dtype != np.uint16 or index.dtype != INDEX_DTYPE:
        return "tokens.npy or index.npy does not have the shape corpus.json records"
    return None

def _has_header(path: Path, shape: tuple, dtype: np.dtype) -> bool:
    """Whether the .npy file ``path`` starts with the very header that ``np.save`` writes
    for an array of ``shape`` and ``dtype`` (reading it costs far less than ``np.load``)."""
    want = _npy_header(shape, np.dtype(dtype))
    try:
        with open(path, "rb") as f:
            return f.read(len(want)) == want
    except OSError:
        return False


@functools.lru_cache(maxsize=16)
def _npy_header(shape: tuple, dtype: np.dtype) -> bytes:
    """The header ``np.save`` writes for an array of ``shape`` and ``dtype``."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {
        "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return out.getvalue()


PARSER_VERSION = 2  # bump when midi/events rules change, to invalidate cached objects
AUTO_CHOICE = "auto"  # what `composer prepare/train --events` default to


@dataclass(frozen=True)
class CorpusConfig(Config):
    """Everything that decides what the cache holds."""

    _name = "corpus settings"

    # Which event vocabulary: "performance" (events), "notes" (the beat vocabulary, notes)
    # or "auto" (notes when the corpus is quantised; see composer.corpus.facts). The library
    # default keeps today's corpora; `composer prepare/train` default to AUTO_CHOICE.
    vocabulary: str = PERFORMANCE
    events: EventConfig = field(default_factory=EventConfig)  # the performance vocabulary
    notes: NoteEventConfig = field(default_factory=NoteEventConfig)  # the beat vocabulary
    load: LoadConfig = field(default_factory=LoadConfig)  # how files are read, and the bounds
    valid_fraction: float = 0.05  # share of files (by content hash) in the validation split
    test_fraction: float = 0.05  # share of files in the test split
    timeout_seconds: float = 30.0  # a file whose parse takes longer is skipped

    def __post_init__(self) -> None:
        if not (0 <= self.valid_fraction and 0 <= self.test_fraction
                and self.valid_fraction + self.test_fraction < 1):
            raise ComposerError("valid and test fractions must be >= 0 and sum to less than 1")
        if self.vocabulary not in CHOICES:
            raise ComposerError(f"event vocabulary must be one of {', '.join(CHOICES)}, got "
                                f"{self.vocabulary!r}")
        # Drums belong to an instrument-aware vocabulary (its DRUM tokens): a corpus of one
        # is read with its drums whoever builds the settings (an evaluation or a benchmark
        # opening a model's corpus from its vocabulary alone read the dance tunes without
        # their drums, and rebuilt the training cache so).
        chosen = {"notes": (self.notes,), PERFORMANCE: (self.events,)}.get(
            self.vocabulary, (self.notes, self.events))
        if any(c.instruments for c in chosen) and not self.load.keep_drums:
            object.__setattr__(self, "load", replace(self.load, keep_drums=True))

    @property
    def vocab_events(self) -> Events:
        """The chosen vocabulary with its config (not for ``auto`` before a prepare)."""
        if self.vocabulary == "auto":
            raise ComposerError("the event vocabulary is chosen when the corpus is prepared")
        return Events(self.vocabulary, self.notes if self.vocabulary == "notes" else self.events)

    def object_key(self) -> str:
        """Key of the settings that change a file's tokens (split fractions do not)."""
        blob = json.dumps([PARSER_VERSION, self.vocab_events.to_dict(), self.load.to_dict(),
                           self.notes.steps_per_quarter], sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def default_cache_dir(midi_dir: str | os.PathLike) -> Path:
    """Where ``prepare`` caches a folder when no ``--out`` is given (under XDG_CACHE_HOME)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "composer"
    src = Path(midi_dir).resolve()
    tag = hashlib.blake2b(os.fsencode(src), digest_size=4).hexdigest()
    return root / "corpora" / f"{src.name or 'root'}-{tag}"


def split_of(content_hash: str, config: CorpusConfig) -> int:
    """0 train, 1 valid, 2 test: a fixed function of the file's content hash."""
    u = int(content_hash[:8], 16) / 2**32
    if u < config.test_fraction:
        return 2
    return 1 if u < config.test_fraction + config.valid_fraction else 0


def is_prepared(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a prepared corpus cache (it holds corpus.json)."""
    return (Path(folder) / "corpus.json").is_file()


def pack_path(cache: Path, config: CorpusConfig) -> Path:
    return cache / "objects" / f"{config.object_key()}.u16"


def read_manifest(cache: Path, config: CorpusConfig) -> dict:
    """The manifest of the last run, or a fresh one (then the token pack starts empty)."""
    fresh = {"format_version": FORMAT_VERSION, "object_key": config.object_key(), "files": {}}
    pack = pack_path(cache, config)
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
    try:
        pack.write_bytes(b"")
    except OSError as e:
        raise write_error(e, pack) from None
    return fresh


class Corpus:
    """A prepared corpus, memory-mapped: ``tokens`` (uint16), ``index`` and ``paths``."""

    def __init__(self, cache_dir: str | os.PathLike):
        cache = Path(cache_dir)
        try:
            meta = json.loads((cache / "corpus.json").read_text())
            if not isinstance(meta, dict):
                raise ValueError("corpus.json is not a JSON object")
        except (OSError, ValueError) as e:
            raise ComposerError(f"{cache} is not a prepared corpus ({e})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ComposerError(f"{cache}: corpus cache format {meta.get('format_version')} "
                                f"is not {FORMAT_VERSION}; run `composer prepare` again")
        problem = cache_problem(cache, meta)
        if problem:
            raise ComposerError(f"{cache}: the corpus cache is damaged ({problem}); run "
                                "`composer prepare` again to rebuild it")
        self.tokens = np.load(cache / "tokens.npy", mmap_mode="r")  # (N,) uint16
        self.index = np.load(cache / "index.npy")  # (F,) INDEX_DTYPE
        self.cache_dir = cache
        self.config = CorpusConfig.from_dict(meta["config"])
        self.paths: list[str] = meta["paths"]
        self.source: str | None = meta.get("source")  # the MIDI folder it was prepared from
        self.key: str | None = meta.get("stamp")  # content key: settings and file hashes
        self.events: Events = self.config.vocab_events  # the corpus's event vocabulary
        self.guards = Guards.from_dict(meta.get("guards"))  # measured on the train split
        self.clock: Clock = clock_from(meta.get("tempo"))  # median tempo, 4/4

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
