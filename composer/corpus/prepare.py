"""Corpus: scan a folder of MIDI, ingest it in parallel, cache it, split it.

``prepare(midi_dir, cache_dir)`` finds every MIDI file below ``midi_dir``, parses and encodes
the new or changed ones in worker processes (a worker that crashes or stalls costs one file,
not the run), and writes a memory-mappable cache:

    CACHE_DIR/manifest.json        per-file record: content hash (the key), status, reason,
                                   and the stat key (device, inode, size, mtime, ctime) the
                                   hash holds for
    CACHE_DIR/objects/KEY.u16      append-only pack of every file's tokens (KEY: settings)
    CACHE_DIR/tokens.npy           all tokens of all loaded files, uint16, concatenated
    CACHE_DIR/index.npy            per file: offset, length, split, seconds, notes, tempo and
                                   time signature, onsets on the beat grid (INDEX_DTYPE)
    CACHE_DIR/corpus.json          settings (the event vocabulary chosen), file list, totals,
                                   grid counts, sampling guards, median tempo
    CACHE_DIR/skipped.tsv          every skipped file with its one-line reason

Concurrent prepares of one cache take turns (a lock file, ``CACHE_DIR/.lock``); every file
is written atomically under a unique temporary name (not fsynced: a cache is derived data,
and what a crash leaves is caught as below). corpus.json records the byte sizes of
tokens.npy and index.npy: a cache whose files do not match is refused by ``Corpus.open``
(one line) and rebuilt by the next ``prepare`` (``PrepareReport.repaired`` says why).

A file is read again only when its stat key changed since it was hashed
(:func:`~composer.corpus.scan.trusted_stats`: ``touch``, ``cp -p``, ``rsync -a`` and tar can
set an mtime back, never a ctime); a prepare whose every key is as last time reads no file
at all (corpus.json's ``stat_scan``), and where the C walk is built (``_walk.c``) builds no
Python object a file either. A changed key means the file is hashed as before, and
only parsed if its contents are new (a touched or renamed file is not).

``Corpus.open(cache_dir)`` reads it back without loading the tokens into memory. Files are
assigned to train/valid/test by a hash of their content, so a split never changes from run to
run and a piece (or an exact copy of it) never sits in two splits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from composer.core.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    locked_folder,
    write_error,
)
from composer.core.isolate import describe_failure, run_isolated
from composer.core.messages import ComposerError
from composer.corpus.cache import (
    FORMAT_VERSION,
    INDEX_DTYPE,
    SPLITS,
    CorpusConfig,
    cache_problem,
    default_cache_dir,
    pack_path,
    read_manifest,
    split_of,
)
from composer.corpus.facts import PrepareReport, choose_vocabulary, summarise
from composer.corpus.scan import (
    display_name,
    hash_file,
    ingest_files,
    known_hashes,
    packed_stats,
    scan_stat,
    trusted_stats,
    walked_stats,
)
from composer.midi.io import MIDI_SUFFIXES
from composer.tokens.vocab import CHOICES


def parse_failure(stalled: bool, code: int | None, timeout: float) -> dict:
    """The record of a file whose parser stalled or crashed (``run_isolated``'s failure)."""
    return {"hash": None, "reason": describe_failure(stalled, code, timeout, "parse", "parser")}


def prepare(midi_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
            config: CorpusConfig | None = None, workers: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Ingest ``midi_dir`` into ``cache_dir``; only new or changed files are parsed.

    ``progress(done, total)`` is called as files finish. Returns a :class:`PrepareReport`.
    With ``config.vocabulary == "auto"`` the files are encoded with the vocabulary the last
    prepare of this cache chose (the beat vocabulary the first time); if the grid counts
    then call for the other one (:func:`~composer.corpus.facts.choose_vocabulary`), they are
    encoded again with it. ``PrepareReport.why`` says which and why.
    """
    config = config or CorpusConfig()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(midi_dir)
    look = _Look.of(midi_dir)
    with locked_folder(cache):
        meta = _read_meta(cache)
        if config.vocabulary != "auto":
            report = _prepare_locked(look, cache, config, meta, workers, progress)
            report.why = f"{config.vocabulary} (as asked)"
            return report
        guess = _last_choice(meta)
        report = _prepare_locked(look, cache, replace(config, vocabulary=guess), meta, workers,
                                 progress)
        kind, why = choose_vocabulary(*report.grid, config.notes.steps_per_quarter)
        if kind != guess:
            report = _prepare_locked(look, cache, replace(config, vocabulary=kind),
                                     _read_meta(cache), workers, progress)
        report.why = f"{kind} ({why})"
        return report


def _read_meta(cache: Path) -> dict | None:
    """The cache's corpus.json, or None when there is none fit to read."""
    try:
        meta = json.loads((cache / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _last_choice(meta: dict | None) -> str:
    """The vocabulary of the corpus of ``meta`` (corpus.json; the beat vocabulary if none)."""
    try:
        kind = meta["config"]["vocabulary"]  # type: ignore[index]
    except (KeyError, TypeError):
        return "notes"
    return kind if kind in CHOICES[:2] else "notes"


@dataclass
class _Look:
    """What a prepare saw of the folder: when it looked, the C walk's stat keys (None where
    it is not built or declined) and, once needed, every file's stat (:func:`scan_stat`)."""

    midi_dir: str | os.PathLike
    scanned_ns: int
    walked: tuple[int, bytes] | None
    _stats: dict[str, os.stat_result | OSError] | None = None

    @classmethod
    def of(cls, midi_dir: str | os.PathLike) -> _Look:
        scanned_ns = time.time_ns()
        look = cls(midi_dir, scanned_ns, walked_stats(midi_dir, scanned_ns))
        if look.walked is None:
            look.stats()  # scanned now: a folder without MIDI files fails here
        return look

    def stats(self) -> dict[str, os.stat_result | OSError]:
        """Relative path -> stat (or OSError) of every MIDI file, scanned the first time.
        After the walk this comes later than the walk's keys, never earlier: a file changed
        in between is hashed as it is now while the stamp keeps its old stat, so the next
        prepare looks again (the other order could stamp a new stat over old contents)."""
        if self._stats is None:
            self._stats = scan_stat(self.midi_dir)
            if not self._stats:
                raise ComposerError(f"no MIDI files found in "
                                    f"{display_name(os.fspath(self.midi_dir))} "
                                    f"(looked for {' '.join(MIDI_SUFFIXES)})")
        return self._stats

    def stamp(self, config: CorpusConfig) -> tuple[str | None, int]:
        """(the hash of every file's stat key under ``config``, None when some file is not
        trusted; the number of files): corpus.json's ``stat_scan``."""
        if self.walked is not None:
            return _digest(f"{config.to_dict()}\n", self.walked[1]), self.walked[0]
        stats = self.stats()
        paths = sorted(stats)
        keys = packed_stats(stats, paths, self.scanned_ns)
        return None if keys is None else _digest(
            f"{config.to_dict()}\n" + "\n".join(paths) + "\n\n", keys), len(paths)


def _prepare_locked(look: _Look, cache: Path, config: CorpusConfig, meta: dict | None,
                    workers: int | None,
                    progress: Callable[[int, int], None] | None) -> PrepareReport:
    """:func:`prepare` once the cache's lock is held (``meta``: its corpus.json as read)."""
    stat_stamp, found = look.stamp(config)
    unchanged = _unchanged(cache, meta, stat_stamp, found)
    if unchanged:
        return unchanged  # fast path: no file was added, removed or changed (by its stat)
    midi_dir, stats, scanned_ns = look.midi_dir, look.stats(), look.scanned_ns
    paths = sorted(stats)
    trusted = trusted_stats(stats, scanned_ns)
    manifest = read_manifest(cache, config)
    old = manifest["files"]
    known = {r["hash"]: r for r in old.values() if r.get("reason") is None and r.get("hash")}
    by_content = {r["hash"]: r for r in old.values() if r.get("hash")}  # loaded or skipped
    hashes = known_hashes(midi_dir, stats, trusted, old, config.load)
    files: dict[str, dict] = {}
    todo = []
    for rel in paths:
        st = stats[rel]
        if isinstance(st, OSError):
            files[rel] = {"hash": None, "reason": f"cannot read file: {st.strerror or st}"}
            continue
        if hashes.get(rel) in by_content:  # same bytes as before (also under another name)
            files[rel] = dict(by_content[hashes[rel]])
        else:
            files[rel] = {"size": st.st_size}
            todo.append(rel)
        files[rel].pop("stat", None)
        if rel in trusted:  # its hash holds as long as this stat does (not read again)
            files[rel]["stat"] = trusted[rel]
    report = PrepareReport(cache, files_found=len(paths), files_parsed=len(todo))
    report.repaired = cache_problem(cache)
    done = len(paths) - len(todo)
    if progress:
        progress(done, len(paths))
    packed = pack_path(cache, config)
    encoded: dict[str, str] = {}  # the records of this run, as their manifest JSON
    try:
        with open(packed, "ab") as pack:
            at = pack.tell() // 2
            jobs = [os.path.join(midi_dir, rel) for rel in todo]
            sizes = [files[rel]["size"] for rel in todo]
            args = (config.load, config.vocab_events, config.notes.steps_per_quarter)
            for i, record in run_isolated(ingest_files, jobs, args,
                                          workers, config.timeout_seconds, cost=sizes,
                                          failure=parse_failure):
                tokens = record.pop("tokens", None)
                if tokens is not None and record["hash"] in known:  # same content seen before
                    record["at"] = known[record["hash"]]["at"]
                elif tokens is not None:
                    pack.write(tokens)  # uint16 bytes: cheaper through the pipe than arrays
                    record["at"], at = at, at + record["events"]
                    known[record["hash"]] = record
                if not record["hash"] and record.get("reason"):  # a crash is keyed too
                    record["hash"] = hashes.get(todo[i]) or hash_file(jobs[i], config.load)
                files[todo[i]].update(record)
                encoded[todo[i]] = json.dumps(files[todo[i]])  # final: the worker works on
                done += 1
                if progress:
                    progress(done, len(paths))
    except OSError as e:
        raise write_error(e, packed) from None
    finally:
        kept = {k: v for k, v in files.items() if "reason" in v}
        if kept != old:
            manifest["files"] = kept
            with contextlib.suppress(ComposerError):  # a full disk is reported already
                atomic_write_text(cache / "manifest.json", _manifest_json(manifest, encoded),
                                  durable=False)
    listing = "\n".join(f"{r}\t{files[r]['hash']}" if isinstance(stats[r], os.stat_result)
                        else f"{r}\t{stats[r]}" for r in paths)
    scan_stamp = _digest(f"{config.to_dict()}\n{listing}")
    _consolidate(cache, packed, files, config, report, (scan_stamp, stat_stamp),
                 Path(midi_dir).resolve())
    return report


def _manifest_json(manifest: dict, encoded: dict[str, str]) -> str:
    """``json.dumps(manifest)`` and a newline, its records ("files", the last key) joined
    from ``encoded`` where this run encoded them already (as each came back from its
    worker, while the worker went on: at the end they cost only a join)."""
    head = json.dumps({k: v for k, v in manifest.items() if k != "files"})
    records = ", ".join(f"{json.dumps(rel)}: {encoded.get(rel) or json.dumps(rec)}"
                        for rel, rec in manifest["files"].items())
    return f"{head[:-1]}{', ' if len(head) > 2 else ''}\"files\": {{{records}}}}}\n"


def _digest(text: str, data: bytes = b"") -> str:
    """Hash of ``text`` (then ``data``); file names that are not valid UTF-8 (surrogates)
    hash by their bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape") + data,
                           digest_size=16).hexdigest()


def _unchanged(cache: Path, meta: dict | None, stat_stamp: str | None, found: int
               ) -> PrepareReport | None:
    """The report of the last run (``meta``: its corpus.json) if the scan is the same as
    then: the same files, each with the same (device, inode, size, mtime, ctime) as when it
    was hashed."""
    if stat_stamp is None or meta is None:
        return None
    try:
        if meta.get("stat_scan") != stat_stamp or cache_problem(cache, meta):
            return None
        rows = (cache / "skipped.tsv").read_text(encoding="utf-8").splitlines()[1:]
        return PrepareReport(cache, found, meta["files_loaded"], 0,
                             [tuple(r.split("\t", 1)) for r in rows], meta["notes"],
                             meta["events"], meta["seconds"], meta["split_files"],
                             vocabulary=meta["config"]["vocabulary"], grid=meta["grid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _consolidate(cache: Path, pack_path: Path, files: dict[str, dict], config: CorpusConfig,
                 report: PrepareReport, scans: tuple[str, str | None], source: Path) -> None:
    """Write tokens.npy / index.npy / corpus.json / skipped.tsv unless they are up to date
    (``scans``: the stamps of this scan by contents and by stat)."""
    scan = {"scan": scans[0], "stat_scan": scans[1]}
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
        if meta.get("stamp") == stamp and not cache_problem(cache, meta):  # same contents
            report.files_loaded, report.notes = meta["files_loaded"], meta["notes"]
            report.events, report.seconds = meta["events"], meta["seconds"]
            report.split_files, report.grid = meta["split_files"], meta["grid"]
            report.vocabulary = meta["config"]["vocabulary"]
            if any(meta.get(k) != v for k, v in scan.items()):
                atomic_write_json(meta_path, {**meta, **scan}, durable=False)
            return
    except (OSError, ValueError, KeyError):
        pass
    index = np.array([(0, rec["events"], split_of(rec["hash"], config), rec["seconds"],
                       rec["notes"], *rec["clock"], *rec["grid"])
                      for rec in (files[rel] for rel in loaded)], INDEX_DTYPE)
    index["offset"] = np.concatenate([[0], np.cumsum(index["length"])[:-1]]).astype(np.int64)
    report.files_loaded = len(loaded)
    report.notes, report.events = int(index["notes"].sum()), int(index["length"].sum())
    report.seconds = float(index["seconds"].sum())
    report.split_files = {s: int((index["split"] == k).sum()) for k, s in enumerate(SPLITS)}
    facts = summarise([files[rel] for rel in loaded], index["split"])
    report.grid, report.vocabulary = facts["grid"], config.vocabulary
    def write_tokens(tmp: Path) -> None:
        tokens = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint16,
                                           shape=(report.events,))  # (N,)
        pack = np.memmap(pack_path, dtype=np.uint16, mode="r") if report.events else None
        src, out = np.asarray(pack), np.asarray(tokens)  # plain views: cheap slices
        at = np.array([files[rel]["at"] for rel in loaded], np.int64)  # (files,) in the pack
        offset, length = index["offset"], index["length"]
        # runs of files that lie end to end in the pack as in tokens.npy are copied at once
        # (a cold prepare packs them in order: one run)
        starts = np.r_[True, at[1:] != at[:-1] + length[:-1]][: len(at)]  # (files,)
        bounds = np.append(np.flatnonzero(starts), len(at))  # run k: files bounds[k]..[k+1]
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            begin, end = int(offset[a]), int(offset[b - 1] + length[b - 1])
            out[begin:end] = src[at[a] : at[a] + end - begin]
        del pack, src, out, tokens  # unmapped; no msync (the cache is not fsynced)

    def write_index(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, index)

    atomic_write(cache / "tokens.npy", write_tokens, durable=False)
    atomic_write(cache / "index.npy", write_index, durable=False)
    lines = "".join(f"{display_name(rel)}\t{display_name(reason)}\n"
                    for rel, reason in report.skipped)
    atomic_write_text(cache / "skipped.tsv", "path\treason\n" + lines, durable=False)
    sizes = {name: (cache / name).stat().st_size for name in ("tokens.npy", "index.npy")}
    atomic_write_json(meta_path, {
        "format_version": FORMAT_VERSION, "stamp": stamp, **scan,
        "source": str(source), "config": config.to_dict(), "files": sizes,
        "paths": loaded, "files_loaded": len(loaded), "notes": report.notes,
        "events": report.events, "seconds": report.seconds, "split_files": report.split_files,
        **facts,
    }, durable=False)
