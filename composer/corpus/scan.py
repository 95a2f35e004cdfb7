"""Finding MIDI files in a folder, reading them, and showing their names.

``scan(midi_dir)`` lists the MIDI files below a folder (recursive, regular files only, dot
folders skipped); files are keyed by their contents (:func:`content_hash`), known without
reading them again while their stat is unchanged (:func:`known_hashes`), and a folder whose
every stat is unchanged is known from one walk in C (:func:`walked_stats`, ``_walk.c``);
``load_folder`` loads a small folder in-process; ``ingest_files`` reads,
hashes, parses and encodes a batch of files (what corpus workers run). File names are kept as
``str`` the way :mod:`os` gives them, so a name that is not valid UTF-8 holds surrogates and
opens as it is; :func:`display_name` is the form to print or write to a text file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from composer.core.messages import ComposerError, MidiError
from composer.corpus.facts import stats_many
from composer.midi.io import MIDI_SUFFIXES, LoadConfig, Piece, parse_many, read_bytes
from composer.tokens.beats import NoteEventConfig, clock_of, grid_counts_many
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, vocabulary_of


def display_name(name: str) -> str:
    """``name`` fit to print or write as UTF-8 text: bytes of a file name that are not valid
    UTF-8 (kept in ``str`` paths as surrogates) become U+FFFD, tabs and newlines spaces. The
    real name, for opening the file, is ``name`` itself."""
    shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return shown.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def scan(midi_dir: str | os.PathLike) -> list[str]:
    """Relative paths of the MIDI files below ``midi_dir`` (recursive, sorted, skips dot-dirs)."""
    return sorted(scan_stat(midi_dir))


def scan_stat(midi_dir: str | os.PathLike) -> dict[str, os.stat_result | OSError]:
    """Relative path -> stat result (or the OSError) of every MIDI file below ``midi_dir``."""
    if not os.path.isdir(midi_dir):
        raise ComposerError(f"not a folder: {display_name(os.fspath(midi_dir))}")
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


def content_hash(data: bytes) -> str:
    """The key of a file's contents in a corpus cache (BLAKE2b, 16 bytes, hex)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def hash_file(path: str | os.PathLike, load_config: LoadConfig) -> str | None:
    """:func:`content_hash` of a file's bytes; None when it cannot be read within the
    loader's bounds (its worker then says why)."""
    try:
        return content_hash(read_bytes(path, load_config))
    except MidiError:
        return None


# A stat is trusted when the file's times are this much older than the scan: a later
# edit then gets other times, even on a file system with coarse timestamps.
RACY_NS = 2_000_000_000


def trusted_stats(stats: dict[str, os.stat_result | OSError], scanned_ns: int
                  ) -> dict[str, str]:
    """Relative path -> stat key "device inode size mtime_ns ctime_ns" of each regular file
    whose times are older than ``scanned_ns`` (``time.time_ns()`` before the scan) by
    :data:`RACY_NS`. While a file's key is unchanged its contents are taken to be unchanged:
    ``touch``, ``cp -p``, ``rsync -a`` and tar can set the mtime back, never the ctime."""
    edge = scanned_ns - RACY_NS
    return {rel: f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
            for rel, st in stats.items() if _trusted(st, edge)}


def packed_stats(stats: dict[str, os.stat_result | OSError], paths: Sequence[str],
                 scanned_ns: int) -> bytes | None:
    """The stat keys of ``paths`` (as :func:`trusted_stats` reads them) packed as int64,
    five per file in order: what a warm prepare compares with the last one's, cheaper than
    formatting them (about half the time, after the stats themselves); None when some file
    is not trusted."""
    edge, flat = scanned_ns - RACY_NS, []
    for rel in paths:
        st = stats[rel]
        if not _trusted(st, edge):
            return None
        flat += (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return array("q", flat).tobytes()


def _trusted(st: os.stat_result | OSError, edge: int) -> bool:
    """Whether a stat's key may stand for the file's contents: a regular file's stat whose
    mtime and ctime are both before ``edge`` (ns)."""
    return type(st) is os.stat_result and st.st_mtime_ns < edge and st.st_ctime_ns < edge


try:  # the warm prepare's stat walk in C (setup.py builds it where there is a compiler)
    from composer.corpus._walk import stat_keys as _walk_stat_keys
except ImportError:  # pragma: no cover (no compiler: scan_stat and packed_stats do it)
    _walk_stat_keys = None

_SUFFIX_BYTES = tuple(s.encode() for s in MIDI_SUFFIXES)


def walked_stats(midi_dir: str | os.PathLike, scanned_ns: int) -> tuple[int, bytes] | None:
    """(number of MIDI files, their stat keys) below ``midi_dir`` from one walk in C that
    makes the system calls of :func:`scan_stat` and builds no Python object a file (half
    the time of a warm prepare): the same files, each key as :func:`trusted_stats` reads
    it, one record a file sorted by path (path, NUL, five int64). None when the extension is
    not built, or when some file is not trusted by ``scanned_ns`` or the walk cannot vouch
    for the folder (see ``_walk.c``): :func:`scan_stat` and :func:`packed_stats` then."""
    if _walk_stat_keys is None:
        return None
    try:
        return _walk_stat_keys(midi_dir, _SUFFIX_BYTES, scanned_ns - RACY_NS)
    except (OSError, ValueError):  # a name the file system cannot take (a NUL byte)
        return None


def known_hashes(midi_dir: str | os.PathLike, stats: dict[str, os.stat_result | OSError],
                 trusted: dict[str, str], records: dict[str, dict], load_config: LoadConfig,
                 threads: int = 8) -> dict[str, str | None]:
    """Relative path -> content hash of the files that need no worker to know it: the hash
    of the last run's record when the file's :func:`trusted_stats` key is the one recorded
    there (the file is not read), else :func:`hash_file` (read in ``threads`` threads) when
    some recorded file has its size (the same bytes may be there under any name). Other
    files are new contents for sure: their worker hashes them."""
    out: dict[str, str | None] = {}
    sizes = {r.get("size") for r in records.values() if r.get("hash")}
    for rel in stats:
        rec = records.get(rel)
        if rec and rec.get("hash") and rel in trusted and rec.get("stat") == trusted[rel]:
            out[rel] = rec["hash"]
    todo = [rel for rel, st in stats.items() if rel not in out and isinstance(st, os.stat_result)
            and (st.st_size in sizes or None in sizes)]

    def one(rel: str) -> str | None:
        return hash_file(os.path.join(midi_dir, rel), load_config)

    if len(todo) < 64:
        out.update((rel, one(rel)) for rel in todo)
    else:
        with ThreadPoolExecutor(threads) as pool:
            out.update(zip(todo, pool.map(one, todo, chunksize=16), strict=True))
    return out


def ingest_files(paths: Sequence[str], load_config: LoadConfig,
                 event_config: Events | EventConfig | NoteEventConfig,
                 grid_steps: int = NoteEventConfig.steps_per_quarter) -> list[dict]:
    """Read, hash, parse and encode files (runs inside a worker process), one record each.

    A record has ``hash`` (None if unreadable), ``reason`` (None if loaded), and ``tokens``
    (the uint16 ids, as bytes), ``notes``, ``events``, ``seconds``, the ``clock`` (us per
    quarter, time signature numerator and denominator: :func:`composer.tokens.beats.clock_of`),
    ``grid`` (onsets on the beat grid of ``grid_steps`` per quarter, onsets), ``smpte``
    (whether its time division is SMPTE) and ``stats`` (:func:`composer.corpus.facts.stats_many`).
    Files are parsed and encoded together, in one vectorised pass; should that fail on an
    unforeseen input, they are redone one by one so that the failure costs only the file
    that caused it.
    """
    events = vocabulary_of(event_config)
    records: list[dict] = []
    datas: list[bytes] = []
    for path in paths:
        try:
            datas.append(read_bytes(path, load_config))
        except MidiError as e:
            records.append({"hash": None, "reason": str(e)})
            continue
        records.append({"hash": content_hash(datas[-1]), "reason": None})
    todo = [r for r in records if r["hash"]]
    try:
        pieces = parse_many(datas, load_config)
        loaded = [(r, p) for r, p in zip(todo, pieces, strict=True) if isinstance(p, Piece)]
        encoded = events.encode_many([p for _, p in loaded])
        for record, piece in zip(todo, pieces, strict=True):
            if isinstance(piece, MidiError):
                record["reason"] = str(piece)
        stats = stats_many([p for _, p in loaded])
        grids = grid_counts_many([p for _, p in loaded], grid_steps)
        for (record, piece), tokens, stat, grid in zip(loaded, encoded, stats, grids,
                                                        strict=True):
            if len(tokens) == 0:
                record["reason"] = no_notes_reason(piece)
                continue
            record.update(tokens=tokens.astype(np.uint16).tobytes(), notes=int(len(piece.notes)),
                          events=int(len(tokens)), seconds=round(float(piece.duration), 3),
                          clock=list(clock_of(piece)), grid=list(grid),
                          smpte=piece.ticks_per_beat <= 0, stats=stat)
    except Exception as e:  # a bug or a pathological file must cost one file, not the run
        if len(paths) > 1:
            return [ingest_files([p], load_config, events, grid_steps)[0] for p in paths]
        return [{**records[0], "reason": f"internal error: {type(e).__name__}: {e}"
                 .splitlines()[0]}]
    return records


def no_notes_reason(piece: Piece) -> str:
    """Why a piece gave no tokens: no notes at all, none in the pitch range, and whether
    drum notes were left out."""
    what = "no notes" if len(piece.notes) == 0 else "no notes in the pitch range"
    if piece.drums_left_out:
        what += f" ({piece.drums_left_out} drum notes left out; --keep-drums keeps them)"
    return what
