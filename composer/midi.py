"""MIDI in and out: the only module that touches MIDI parsers and writers.

``load(path) -> Piece`` reads a Standard MIDI File into composer's own note arrays
(seconds, tempo map applied), with each note's place in beats (quarter notes), the tempo
map and the time signatures beside them; ``save(notes, path)`` writes notes back out.

Beats: a note's start and end in beats are its ticks divided by the file's ticks per
quarter note, exactly (no tempo involved). A never-released note capped at
``max_hanging_seconds`` ends at the beat of its capped end. Under SMPTE time division
(no quarter notes in the file) beats are derived from seconds at 120 bpm, and the tempo map
is that one tempo; ``Piece.ticks_per_beat == 0`` says so.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from composer import ComposerError, Config, MidiError
from composer.files import read_regular
from composer.timing import (
    BEAT_DTYPE,
    DEFAULT_US_PER_QUARTER,
    TEMPO_DTYPE,
    TIMESIG_DTYPE,
    beats_to_seconds,
    constant_tempo,
    seconds_to_beats,
)

# One row per note. Times in seconds; end > start for every note composer produces.
NOTE_DTYPE = np.dtype(
    [
        ("pitch", np.int16),  # MIDI pitch 0..127
        ("velocity", np.int16),  # 1..127
        ("start", np.float64),  # seconds
        ("end", np.float64),  # seconds
        ("program", np.int16),  # General MIDI program 0..127
        ("is_drum", np.bool_),  # True for channel 10 (index 9)
    ]
)


@dataclass(frozen=True)
class Note:
    """One note, in seconds."""

    pitch: int
    velocity: int
    start: float
    end: float
    program: int = 0
    is_drum: bool = False


def as_note_array(notes: NoteInput) -> np.ndarray:
    """Return ``notes`` (a NOTE_DTYPE array, a list of Note, or a Piece) as a NOTE_DTYPE array."""
    if isinstance(notes, Piece):
        return notes.notes
    if isinstance(notes, np.ndarray):
        if notes.dtype != NOTE_DTYPE:
            raise TypeError(f"expected an array of NOTE_DTYPE, got {notes.dtype}")
        return notes
    rows = [(n.pitch, n.velocity, n.start, n.end, n.program, n.is_drum) for n in notes]
    return np.array(rows, dtype=NOTE_DTYPE)


def note_list(notes: NoteInput) -> list[Note]:
    """Return ``notes`` as a list of :class:`Note` (inverse of :func:`as_note_array`)."""
    arr = as_note_array(notes)
    return [
        Note(int(r["pitch"]), int(r["velocity"]), float(r["start"]), float(r["end"]),
             int(r["program"]), bool(r["is_drum"]))
        for r in arr
    ]


@dataclass
class Piece:
    """A loaded MIDI file: its notes (NOTE_DTYPE array, sorted by start) and facts about it."""

    notes: np.ndarray
    duration: float  # seconds, end of the last note (0.0 when empty)
    format: int = 1  # SMF format of the source file
    ticks_per_beat: int = 0  # 0 for SMPTE time division
    warnings: tuple[str, ...] = ()  # non-fatal defects that were skipped (malformed meta, ...)
    beats: np.ndarray | None = None  # BEAT_DTYPE, one row per note (None: unknown)
    tempos: np.ndarray = field(default_factory=constant_tempo)  # TEMPO_DTYPE tempo map
    time_signatures: np.ndarray = field(  # TIMESIG_DTYPE, as written in the file
        default_factory=lambda: np.zeros(0, TIMESIG_DTYPE))


def piece_from_beats(notes: NoteInput, beats: np.ndarray, tempos: np.ndarray | None = None,
                     time_signatures: np.ndarray | None = None) -> Piece:
    """A Piece whose note times are given in beats (BEAT_DTYPE, one row per note); the
    seconds of ``notes`` are replaced by the beats under ``tempos`` (default 120 bpm)."""
    arr = as_note_array(notes).copy()
    beats = np.asarray(beats, dtype=BEAT_DTYPE)
    if beats.shape != arr.shape:
        raise ComposerError(f"{len(beats)} beat rows for {len(arr)} notes")
    tempos = constant_tempo() if tempos is None else tempos
    arr["start"] = beats_to_seconds(beats["start"], tempos)
    arr["end"] = beats_to_seconds(beats["end"], tempos)
    sigs = np.zeros(0, TIMESIG_DTYPE) if time_signatures is None else time_signatures
    duration = float(arr["end"].max()) if len(arr) else 0.0
    return Piece(arr, duration, 1, SAVE_TICKS_PER_BEAT, beats=beats, tempos=tempos,
                 time_signatures=sigs)


NoteInput = np.ndarray | Sequence[Note] | Piece  # anything as_note_array takes


@dataclass(frozen=True)
class LoadConfig(Config):
    """How MIDI files are read, and the bounds past which a file is refused."""

    _name = "load settings"

    keep_drums: bool = False  # drum notes (channel 10) are left out by default
    sustain: bool = True  # CC64 >= 64 holds released notes until the pedal lifts
    max_hanging_seconds: float = 5.0  # a never-released note ends at its track's end, or this long
    max_file_bytes: int = 64 << 20  # larger files are refused before reading
    max_seconds: float = 4 * 3600.0  # longer pieces are refused (e.g. absurd tick values)
    max_notes: int = 1_000_000  # more notes than this are refused


MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi", ".smf")


def load(path: str | os.PathLike, config: LoadConfig = LoadConfig()) -> Piece:
    """Read a MIDI file (.mid/.midi/.kar, or RIFF-wrapped .rmi) into a :class:`Piece`.

    Raises :class:`MidiError` with a one-line reason when the file cannot be read.
    """
    return parse(read_bytes(path, config), config)


def read_bytes(path: str | os.PathLike, config: LoadConfig = LoadConfig()) -> bytes:
    """The bytes of a regular file, at most ``config.max_file_bytes`` of them (checked before
    and while reading); otherwise :class:`MidiError` with a one-line reason. FIFOs and
    devices are refused without blocking."""
    return read_regular(path, config.max_file_bytes, error=MidiError)


def _unwrap_riff(data: bytes) -> bytes:
    """Return the SMF inside a RIFF RMID file (the 'data' chunk), or ``data`` unchanged."""
    if data[:4] != b"RIFF":
        return data
    if data[8:12] != b"RMID":
        raise MidiError("RIFF file that is not RMID (not a MIDI file)")
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if data[pos : pos + 4] == b"data":
            return data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise MidiError("RMID file without a data chunk")


def _track_chunks(data: bytes) -> tuple[int, int, list[tuple[int, int]], bool]:
    """Validate header and chunk layout: (format, division, [(start, end), ...], tracks_missing)."""
    if len(data) == 0:
        raise MidiError("empty file")
    if data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    if len(data) < 14:
        raise MidiError("truncated header")
    hlen, fmt, ntracks, division = struct.unpack_from(">IHHH", data, 4)
    if hlen < 6 or 8 + hlen > len(data):
        raise MidiError(f"header length {hlen} is invalid for a {len(data)}-byte file")
    if fmt > 2:
        raise MidiError(f"unknown MIDI format {fmt}")
    if fmt == 2:
        raise MidiError("format 2 (independent sequences) is not supported")
    if ntracks == 0:
        raise MidiError("header declares zero tracks")
    if division == 0:
        raise MidiError("time division is 0")
    if division & 0x8000 and not division & 0xFF:
        raise MidiError("invalid SMPTE time division (0 ticks per frame)")
    chunks: list[tuple[int, int]] = []
    pos = 8 + hlen
    while len(chunks) < ntracks and pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (clen,) = struct.unpack_from(">I", data, pos + 4)
        start, pos = pos + 8, pos + 8 + clen
        if pos > len(data):
            raise MidiError(f"truncated: chunk {len(chunks) + 1} claims {clen} bytes, "
                            f"{len(data) - start} remain")
        if cid == b"MTrk":
            chunks.append((start, pos))
    if not chunks:
        raise MidiError(f"no track found (header declares {ntracks})")
    return fmt, division, chunks, len(chunks) < ntracks


def _tick_to_seconds(seg_file: np.ndarray, seg_tick: np.ndarray, seg_spt: np.ndarray):
    """Vectorised (file, tick) -> seconds over the tempo segments of many files.

    Segments are sorted by (file, tick); every file has one at tick 0; ``seg_spt`` is the
    seconds per tick from that segment on.
    """
    first = np.append(True, seg_file[1:] != seg_file[:-1])
    dur = np.where(first, 0.0, np.diff(seg_tick, prepend=0) * np.roll(seg_spt, 1))
    cum = np.cumsum(dur)
    at = cum - np.maximum.accumulate(np.where(first, cum, 0.0))  # seconds at each segment
    seg_key = (seg_file << 41) | seg_tick

    def convert(file: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        i = np.searchsorted(seg_key, (file << 41) | ticks, side="right") - 1
        return at[i] + (ticks - seg_tick[i]) * seg_spt[i]

    return convert


def _tempo_segments(divisions: np.ndarray, tempo_file: np.ndarray, tempos: np.ndarray):
    """Tempo segments (file, tick, seconds per tick, us per quarter) of every file; see
    _tick_to_seconds (SMPTE files: one segment, us per quarter 500000 by the 120 bpm rule)."""
    files = np.arange(len(divisions))
    smpte = (divisions & 0x8000) != 0
    fps = (256 - (divisions >> 8)).astype(np.float64)
    rate = np.where(fps == 29, 29.97, fps) * (divisions & 0xFF)  # SMPTE ticks per second
    keep = ~smpte[tempo_file]  # tempo events do not apply under SMPTE time
    f = np.concatenate([files, tempo_file[keep]])
    tick = np.concatenate([np.zeros(len(files), np.int64), tempos[keep, 0]])
    us = np.concatenate([np.full(len(files), 500_000), tempos[keep, 1]])  # default 120 bpm
    order = np.lexsort((np.arange(len(f)), tick, f))  # file order within a tick
    f, tick, us = f[order], tick[order], us[order]
    last = np.append((f[1:] != f[:-1]) | (tick[1:] != tick[:-1]), True)  # last at a tick wins
    f, tick, us = f[last], tick[last], us[last]
    spt = np.where(smpte[f], 1.0 / np.where(smpte[f], rate[f], 1.0),
                   us / (1e6 * np.where(smpte[f], 1, divisions[f])))
    return f, tick, spt, us


def _last_before(keys: np.ndarray, ticks: np.ndarray, ev_keys: np.ndarray,
                 ev_ticks: np.ndarray) -> np.ndarray:
    """Index of the last event with the same key at or before each tick, else -1."""
    ev = (ev_keys << 41) | ev_ticks
    order = np.argsort(ev, kind="stable")
    i = np.searchsorted(ev[order], (keys << 41) | ticks, side="right") - 1
    found = (i >= 0) & (ev_keys[order][np.maximum(i, 0)] == keys)
    return np.where(found, order[np.maximum(i, 0)], -1)


def _apply_sustain(n: np.ndarray, controls: np.ndarray, track_end: np.ndarray) -> np.ndarray:
    """End ticks after the sustain pedal: a note released while the pedal is down sounds
    until the pedal lifts (or its track ends), or until its pitch is struck again (note-seq)."""
    ends = n[:, 5].copy()
    if len(controls) == 0 or len(n) == 0:
        return ends
    ckey = controls[:, 0] * 16 + controls[:, 1]  # track*16 + channel
    order = np.lexsort((controls[:, 2], ckey))
    ckey, cticks, down = ckey[order], controls[order, 2], controls[order, 3] >= 64
    first = np.append(True, ckey[1:] != ckey[:-1])
    change = down != np.where(first, False, np.roll(down, 1))
    ckey, cticks, down = ckey[change], cticks[change], down[change]
    # pedal-down intervals [press, lift): the next change in the same key, else the track end
    nxt_same = np.append(ckey[1:] == ckey[:-1], False)
    lift = np.where(nxt_same, np.roll(cticks, -1), track_end[ckey // 16])
    press_key, press, lift = ckey[down], cticks[down], lift[down]
    if len(press) == 0:
        return ends
    nkey = n[:, 0] * 16 + n[:, 1]
    i = _last_before(nkey, ends, press_key, press)
    held = (i >= 0) & (ends < lift[np.maximum(i, 0)])
    new_end = np.where(held, lift[np.maximum(i, 0)], ends)
    # a held note stops when its pitch is struck again (in the same track and channel)
    pkey = nkey * 128 + n[:, 2]
    order = np.lexsort((n[:, 4], pkey))
    nxt = np.full(len(n), np.iinfo(np.int64).max)
    same = pkey[order][1:] == pkey[order][:-1]
    nxt[order[:-1][same]] = n[order[1:][same], 4]
    return np.where(held, np.maximum(ends, np.minimum(new_end, nxt)), ends)


def _track_parser():
    try:
        from composer._smf import parse_track
    except ImportError:  # no compiler at install time: the pure-Python twin, same rules
        from composer._smf_ref import parse_track
    return parse_track


_parse_track = _track_parser()


@dataclass
class _Raw:
    """One file's tables straight from the track parser (global track ids)."""

    fmt: int
    division: int
    blobs: list[bytes]  # notes, tempos, controls, programs (int64 rows, see _smf.c)
    tempo_count: int
    track_end: list[int]
    warnings: list[str]
    timesigs: bytes  # int64 rows: tick, numerator, denominator


def _read_tracks(data: bytes, config: LoadConfig, first_track: int) -> _Raw:
    data = _unwrap_riff(bytes(data))
    fmt, division, chunks, missing = _track_chunks(data)
    blobs: list[list[bytes]] = [[], [], [], []]
    warnings = ["header declares more tracks than the file holds"] if missing else []
    budget, ends, sigs = config.max_notes, [], []
    for t, (start, end) in enumerate(chunks):
        try:
            *raw, end_tick, warns, timesigs = _parse_track(data, start, end, budget,
                                                            first_track + t)
        except ValueError as e:
            if str(e).startswith("more than"):
                raise MidiError(f"more than {config.max_notes} notes") from None
            raise MidiError(f"track {t + 1}: {e}") from None
        for blob, b in zip(blobs, raw, strict=True):
            blob.append(b)
        budget -= len(raw[0]) // (7 * 8)
        ends.append(end_tick)
        sigs.append(timesigs)
        warnings += [f"track {t + 1}: {w}" for w in warns]
    tempos = b"".join(blobs[1])
    return _Raw(fmt, division, [b"".join(b) for b in blobs], len(tempos) // 16, ends, warnings,
                b"".join(sigs))


def parse(data: bytes, config: LoadConfig = LoadConfig()) -> Piece:
    """Parse the bytes of a MIDI file into a :class:`Piece` (see :func:`load`)."""
    (result,) = parse_many([data], config)
    if isinstance(result, MidiError):
        raise result
    return result


def parse_many(datas: list[bytes], config: LoadConfig = LoadConfig()) -> list[Piece | MidiError]:
    """Parse many MIDI files at once: a Piece, or the MidiError saying why not, for each.

    The note processing (tempo maps, pedal, programs, bounds) runs vectorised over all
    files together, which is what makes bulk ingestion fast; ``parse`` is the one-file case.
    """
    results: list[Piece | MidiError | None] = [None] * len(datas)
    raws: list[tuple[int, _Raw]] = []
    tracks = 0
    for k, data in enumerate(datas):
        try:
            raw = _read_tracks(data, config, tracks)
        except MidiError as e:
            results[k] = e
            continue
        raws.append((k, raw))
        tracks += len(raw.track_end)
    if raws:
        _notes_of(raws, config, results)
    return results  # type: ignore[return-value]


def _notes_of(raws: list[tuple[int, _Raw]], config: LoadConfig, results: list) -> None:
    """Turn the parsed tables of many files into Pieces (or MidiErrors) in ``results``."""
    n, tempos, controls, programs = (
        np.frombuffer(b"".join(r.blobs[i] for _, r in raws), np.int64).reshape(-1, w)
        for i, w in enumerate((7, 2, 4, 4)))
    track_file = np.repeat(np.arange(len(raws)), [len(r.track_end) for _, r in raws])
    track_end = np.array([e for _, r in raws for e in r.track_end], np.int64)
    tempo_file = np.repeat(np.arange(len(raws)), [r.tempo_count for _, r in raws])
    divisions = np.array([r.division for _, r in raws], np.int64)
    # n columns: track, channel, pitch, velocity, start_tick, end_tick, hanging
    n = n[n[:, 5] > n[:, 4]]  # zero-length notes carry no sound (also makes n writable)
    if not config.keep_drums:
        n = n[n[:, 1] != 9]
    if config.sustain:
        n[:, 5] = np.where(n[:, 1] == 9, n[:, 5], _apply_sustain(n, controls, track_end))
    file = track_file[n[:, 0]]
    *segments, seg_us = _tempo_segments(divisions, tempo_file, tempos)
    to_sec = _tick_to_seconds(*segments)
    start, end = to_sec(file, n[:, 4]), to_sec(file, n[:, 5])
    capped = (n[:, 6] == 1) & (end > start + config.max_hanging_seconds)
    end = np.where(capped, start + config.max_hanging_seconds, end)
    smpte = (divisions & 0x8000) != 0
    tpq = np.where(smpte, 1, divisions).astype(np.float64)  # (files,)
    maps, map_bounds = _tempo_maps(segments, seg_us, to_sec, tpq, smpte)
    sigs, sig_bounds = _time_signatures(raws, to_sec, tpq, smpte)
    beats = np.empty(len(n), BEAT_DTYPE)
    beats["start"], beats["end"] = n[:, 4] / tpq[file], n[:, 5] / tpq[file]
    at = smpte[file]  # no quarter notes in the file: beats from seconds at 120 bpm
    beats["start"][at] = seconds_to_beats(start[at], constant_tempo())
    beats["end"][at] = seconds_to_beats(end[at], constant_tempo())
    prog = np.zeros(len(n), np.int64)
    if len(programs):
        i = _last_before(n[:, 0] * 16 + n[:, 1], n[:, 4], programs[:, 0] * 16 + programs[:, 1],
                         programs[:, 2])
        prog = np.where(i >= 0, programs[np.maximum(i, 0), 3], 0)
    notes = np.empty(len(n), NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = n[:, 2], n[:, 3]
    notes["start"], notes["end"] = start, end
    notes["program"], notes["is_drum"] = prog, n[:, 1] == 9
    order = np.lexsort((notes["pitch"], notes["start"], file))
    notes, file, beats, capped = notes[order], file[order], beats[order], capped[order]
    bounds = np.searchsorted(file, np.arange(len(raws) + 1))
    for j in np.unique(file[capped]).tolist():  # a capped end's beat: from its seconds
        at = np.flatnonzero(capped[bounds[j] : bounds[j + 1]]) + bounds[j]
        tempo_map = maps[map_bounds[j] : map_bounds[j + 1]]
        beats["end"][at] = seconds_to_beats(notes["end"][at], tempo_map)
    ends = np.append(notes["end"], 0.0)  # the sentinel keeps reduceat in range
    duration = np.where(bounds[1:] > bounds[:-1], np.maximum.reduceat(ends, bounds[:-1]), 0.0)
    for j, (k, raw) in enumerate(raws):
        if duration[j] > config.max_seconds:
            hours, limit = duration[j] / 3600, config.max_seconds / 3600
            results[k] = MidiError(f"lasts {hours:.1f} hours (limit {limit:g} h)")
            continue
        tpb = 0 if raw.division & 0x8000 else raw.division
        part = slice(bounds[j], bounds[j + 1])
        results[k] = Piece(notes[part], float(duration[j]), raw.fmt, tpb, tuple(raw.warnings),
                           beats=beats[part], tempos=maps[map_bounds[j] : map_bounds[j + 1]],
                           time_signatures=sigs[sig_bounds[j] : sig_bounds[j + 1]])


def _tempo_maps(segments: tuple, seg_us: np.ndarray, to_sec, tpq: np.ndarray,
                smpte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tempo maps (TEMPO_DTYPE) of all files, file after file, and each file's bounds."""
    seg_file, seg_tick, _ = segments
    maps = np.empty(len(seg_tick), TEMPO_DTYPE)
    maps["beat"] = seg_tick / tpq[seg_file]  # SMPTE files: one segment, at tick 0
    maps["seconds"] = to_sec(seg_file, seg_tick)
    maps["us_per_quarter"] = np.where(smpte[seg_file], DEFAULT_US_PER_QUARTER, seg_us)
    return maps, np.searchsorted(seg_file, np.arange(len(tpq) + 1))


def _time_signatures(raws: list[tuple[int, _Raw]], to_sec, tpq: np.ndarray,
                     smpte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The time signatures (TIMESIG_DTYPE) of all files, file after file, and each file's
    bounds; of several at one tick, the last one read wins."""
    rows = np.frombuffer(b"".join(r.timesigs for _, r in raws), np.int64).reshape(-1, 3)
    file = np.repeat(np.arange(len(raws)), [len(r.timesigs) // 24 for _, r in raws])
    order = np.lexsort((np.arange(len(rows)), rows[:, 0], file))
    rows, file = rows[order], file[order]
    last = np.append((file[1:] != file[:-1]) | (rows[1:, 0] != rows[:-1, 0]), True)[: len(rows)]
    rows, file = rows[last], file[last]
    sigs = np.empty(len(rows), TIMESIG_DTYPE)
    sigs["beat"] = np.where(smpte[file],  # SMPTE: the beat of its seconds at 120 bpm
                            seconds_to_beats(to_sec(file, rows[:, 0]), constant_tempo()),
                            rows[:, 0] / tpq[file])
    sigs["numerator"], sigs["denominator"] = rows[:, 1], rows[:, 2]
    return sigs, np.searchsorted(file, np.arange(len(raws) + 1))


SAVE_TICKS_PER_BEAT = 480
SAVE_TEMPO = 480_000  # microseconds per beat: with 480 ticks per beat, one tick is exactly 1 ms


def save(notes, path: str | os.PathLike, *, ticks_per_beat: int = SAVE_TICKS_PER_BEAT,
         tempo: int = SAVE_TEMPO) -> None:
    """Write notes (NOTE_DTYPE array, list of Note, or Piece) as a format-1 Standard MIDI File.

    A Piece that knows its beats (``Piece.beats``, e.g. from :func:`load` or
    :func:`piece_from_beats`) is written on its own clock: its tempo map and time signatures
    become meta events and every note sits at tick = beat * ``ticks_per_beat`` (rounded;
    exact for beats on a grid that divides ``ticks_per_beat``); ``tempo`` is not used. Other
    notes are written from their seconds at ``tempo`` (microseconds per quarter).

    One track per (program, is_drum) pair, each on its own channel (drums on channel 10);
    at equal times note-offs come before note-ons, so a repeated pitch is re-struck. The
    file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    import mido

    arr = as_note_array(notes)
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    if isinstance(notes, Piece) and notes.beats is not None:
        note_ticks = np.rint(notes.beats["start"] * ticks_per_beat).astype(np.int64)
        end_ticks = np.rint(notes.beats["end"] * ticks_per_beat).astype(np.int64)
        metas = [(int(np.rint(r["beat"] * ticks_per_beat)),
                  mido.MetaMessage("set_tempo", tempo=int(r["us_per_quarter"])))
                 for r in notes.tempos]
        metas += [(int(np.rint(r["beat"] * ticks_per_beat)),
                   mido.MetaMessage("time_signature", numerator=int(r["numerator"]),
                                    denominator=int(r["denominator"])))
                  for r in notes.time_signatures]
    else:
        to_tick = ticks_per_beat * 1e6 / tempo  # ticks per second
        note_ticks = np.rint(arr["start"] * to_tick).astype(np.int64)
        end_ticks = np.rint(arr["end"] * to_tick).astype(np.int64)
        metas = [(0, mido.MetaMessage("set_tempo", tempo=tempo))]
    meta, now = mido.MidiTrack(), 0
    for tick, msg in sorted(metas, key=lambda m: m[0]):  # stable: tempo first at a tick
        meta.append(msg.copy(time=tick - now))
        now = tick
    mid.tracks.append(meta)
    pairs = zip(arr["program"].tolist(), arr["is_drum"].tolist(), strict=True)
    groups = sorted(set(pairs), key=lambda g: (g[1], g[0]))
    channels = [c for c in range(16) if c != 9]
    melodic = [g for g in groups if not g[1]]
    if len(melodic) > len(channels):
        raise ComposerError(f"{len(melodic)} instruments do not fit in 15 MIDI channels")
    for program, is_drum in groups:
        channel = 9 if is_drum else channels[melodic.index((program, is_drum))]
        mask = (arr["program"] == program) & (arr["is_drum"] == is_drum)
        sel, on = arr[mask], note_ticks[mask]
        off = np.maximum(end_ticks[mask], on + 1)
        ticks = np.concatenate([off, on])
        kinds = np.concatenate([np.zeros(len(sel), int), np.ones(len(sel), int)])  # offs first
        pitches = np.concatenate([sel["pitch"], sel["pitch"]])
        vels = np.concatenate([np.zeros(len(sel), int), np.clip(sel["velocity"], 1, 127)])
        order = np.lexsort((pitches, kinds, ticks))
        track = mido.MidiTrack()
        if not is_drum:
            track.append(mido.Message("program_change", program=program, channel=channel, time=0))
        now = 0
        for i in order:
            kind = "note_on" if kinds[i] else "note_off"
            track.append(mido.Message(kind, note=int(pitches[i]), velocity=int(vels[i]),
                                      channel=channel, time=int(ticks[i] - now)))
            now = int(ticks[i])
        mid.tracks.append(track)
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        mid.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
