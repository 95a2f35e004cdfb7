"""MIDI in and out: the only module that touches MIDI parsers and writers.

``load(path) -> Piece`` reads a Standard MIDI File into composer's own note arrays
(seconds, tempo map applied); ``save(notes, path)`` writes notes back out.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, fields

import numpy as np

from composer import ComposerError, MidiError

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


def as_note_array(notes) -> np.ndarray:
    """Return ``notes`` (a NOTE_DTYPE array, a list of Note, or a Piece) as a NOTE_DTYPE array."""
    if isinstance(notes, Piece):
        return notes.notes
    if isinstance(notes, np.ndarray):
        if notes.dtype != NOTE_DTYPE:
            raise TypeError(f"expected an array of NOTE_DTYPE, got {notes.dtype}")
        return notes
    rows = [(n.pitch, n.velocity, n.start, n.end, n.program, n.is_drum) for n in notes]
    return np.array(rows, dtype=NOTE_DTYPE)


def note_list(notes) -> list[Note]:
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


@dataclass(frozen=True)
class LoadConfig:
    """How MIDI files are read, and the bounds past which a file is refused."""

    keep_drums: bool = False  # drum notes (channel 10) are left out by default
    sustain: bool = True  # CC64 >= 64 holds released notes until the pedal lifts
    max_hanging_seconds: float = 5.0  # a never-released note ends at its track's end, or this long
    max_file_bytes: int = 64 << 20  # larger files are refused before reading
    max_seconds: float = 4 * 3600.0  # longer pieces are refused (e.g. absurd tick values)
    max_notes: int = 1_000_000  # more notes than this are refused

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LoadConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ComposerError(f"unknown load settings: {', '.join(sorted(unknown))}")
        return cls(**d)


MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi", ".smf")


def load(path: str | os.PathLike, config: LoadConfig = LoadConfig()) -> Piece:
    """Read a MIDI file (.mid/.midi/.kar, or RIFF-wrapped .rmi) into a :class:`Piece`.

    Raises :class:`MidiError` with a one-line reason when the file cannot be read.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > config.max_file_bytes:
            limit = config.max_file_bytes >> 20
            raise MidiError(f"file is {size / 2**20:.1f} MiB (limit {limit} MiB)")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise MidiError(f"cannot read file: {e.strerror or e}") from None
    return parse(data, config)


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


def _seconds_per_tick(division: int, tempos: np.ndarray):
    """Return a vectorised tick -> seconds function for this division and tempo map."""
    if division & 0x8000:  # SMPTE: frames per second x ticks per frame; tempo does not apply
        fps = 256 - (division >> 8)
        fps = 29.97 if fps == 29 else float(fps)
        rate = fps * (division & 0xFF)
        if rate <= 0:
            raise MidiError("invalid SMPTE time division")
        return lambda ticks: ticks / rate
    order = np.argsort(tempos[:, 0], kind="stable")
    ticks, us = tempos[order, 0], tempos[order, 1]
    keep = np.append(ticks[1:] != ticks[:-1], True)[: len(ticks)]  # last tempo at a tick wins
    ticks, us = ticks[keep], us[keep]
    if len(ticks) == 0 or ticks[0] != 0:
        ticks, us = np.insert(ticks, 0, 0), np.insert(us, 0, 500_000)
    sec_per_tick = us / (1e6 * division)  # (K,)
    at = np.concatenate([[0.0], np.cumsum(np.diff(ticks) * sec_per_tick[:-1])])  # (K,)

    def convert(x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(ticks, x, side="right") - 1
        return at[i] + (x - ticks[i]) * sec_per_tick[i]

    return convert


def _last_before(keys: np.ndarray, ticks: np.ndarray, ev_keys: np.ndarray,
                 ev_ticks: np.ndarray) -> np.ndarray:
    """Index of the last event with the same key at or before each tick, else -1."""
    ev = (ev_keys << 41) | ev_ticks
    order = np.argsort(ev, kind="stable")
    i = np.searchsorted(ev[order], (keys << 41) | ticks, side="right") - 1
    found = (i >= 0) & (ev_keys[order][np.maximum(i, 0)] == keys)
    return np.where(found, order[np.maximum(i, 0)], -1)


def _apply_sustain(n: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """End times (ticks) after the sustain pedal: a note released while the pedal is down
    sounds until the pedal lifts, or until the same pitch is struck again (as note-seq does)."""
    ends = n[:, 5].copy()
    if len(controls) == 0 or len(n) == 0:
        return ends
    ckey = controls[:, 0] * 16 + controls[:, 1]  # track*16 + channel
    order = np.lexsort((controls[:, 2], ckey))
    ckey, cticks, down = ckey[order], controls[order, 2], controls[order, 3] >= 64
    first = np.append(True, ckey[1:] != ckey[:-1])
    change = down != np.where(first, False, np.roll(down, 1))
    ckey, cticks, down = ckey[change], cticks[change], down[change]
    # pedal-down intervals [press, lift): a press is followed by a lift in the same key or none
    nxt_same = np.append(ckey[1:] == ckey[:-1], False)
    lift = np.where(nxt_same, np.roll(cticks, -1), np.iinfo(np.int64).max)
    press_key, press, lift = ckey[down], cticks[down], lift[down]
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


def parse(data: bytes, config: LoadConfig = LoadConfig()) -> Piece:
    """Parse the bytes of a MIDI file into a :class:`Piece` (see :func:`load`)."""
    data = _unwrap_riff(bytes(data))
    fmt, division, chunks, missing = _track_chunks(data)
    tables: list[list[np.ndarray]] = [[], [], [], []]  # notes, tempos, controls, programs
    widths = (6, 2, 3, 3)
    track_ends: list[int] = []
    warnings = ["header declares more tracks than the file holds"] if missing else []
    budget = config.max_notes
    for t, (start, end) in enumerate(chunks):
        try:
            *raw, end_tick, warns = _parse_track(data, start, end, budget + 1)
        except ValueError as e:
            raise MidiError(f"track {t + 1}: {e}") from None
        for table, blob, width in zip(tables, raw, widths, strict=True):
            rows = np.frombuffer(blob, dtype=np.int64).reshape(-1, width)
            if width != 2:  # tempos are global; other tables are per track
                rows = np.column_stack([np.full(len(rows), t, np.int64), rows])
            table.append(rows)
        budget -= len(tables[0][-1])
        if budget < 0:
            raise MidiError(f"more than {config.max_notes} notes")
        track_ends.append(end_tick)
        warnings += [f"track {t + 1}: {w}" for w in warns]
    n, tempos, controls, programs = (np.concatenate(tab) for tab in tables)
    # n columns: track, channel, pitch, velocity, start_tick, end_tick, hanging
    n = n[n[:, 5] > n[:, 4]]  # zero-length notes carry no sound
    if not config.keep_drums:
        n = n[n[:, 1] != 9]
    if config.sustain:
        n[:, 5] = np.where(n[:, 1] == 9, n[:, 5], _apply_sustain(n, controls))
    to_sec = _seconds_per_tick(division, tempos)
    start, end = to_sec(n[:, 4]), to_sec(n[:, 5])
    hanging = n[:, 6] == 1
    end = np.where(hanging, np.minimum(end, start + config.max_hanging_seconds), end)
    duration = float(end.max()) if len(end) else 0.0
    if duration > config.max_seconds:
        hours, limit = duration / 3600, config.max_seconds / 3600
        raise MidiError(f"lasts {hours:.1f} hours (limit {limit:g} h)")
    prog = np.zeros(len(n), np.int64)
    if len(programs):
        i = _last_before(n[:, 0] * 16 + n[:, 1], n[:, 4], programs[:, 0] * 16 + programs[:, 1],
                         programs[:, 2])
        prog = np.where(i >= 0, programs[np.maximum(i, 0), 3], 0)
    notes = np.empty(len(n), NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = n[:, 2], n[:, 3]
    notes["start"], notes["end"] = start, end
    notes["program"], notes["is_drum"] = prog, n[:, 1] == 9
    notes = notes[np.lexsort((notes["pitch"], notes["start"]))]
    tpb = 0 if division & 0x8000 else division
    return Piece(notes, duration, fmt, tpb, tuple(warnings))


SAVE_TICKS_PER_BEAT = 480
SAVE_TEMPO = 480_000  # microseconds per beat: with 480 ticks per beat, one tick is exactly 1 ms


def save(notes, path: str | os.PathLike, *, ticks_per_beat: int = SAVE_TICKS_PER_BEAT,
         tempo: int = SAVE_TEMPO) -> None:
    """Write notes (NOTE_DTYPE array, list of Note, or Piece) as a format-1 Standard MIDI File.

    One track per (program, is_drum) pair, each on its own channel (drums on channel 10);
    at equal times note-offs come before note-ons, so a repeated pitch is re-struck. The
    file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    import mido

    arr = as_note_array(notes)
    to_tick = ticks_per_beat * 1e6 / tempo  # ticks per second
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    mid.tracks.append(meta)
    pairs = zip(arr["program"].tolist(), arr["is_drum"].tolist(), strict=True)
    groups = sorted(set(pairs), key=lambda g: (g[1], g[0]))
    channels = [c for c in range(16) if c != 9]
    melodic = [g for g in groups if not g[1]]
    if len(melodic) > len(channels):
        raise ComposerError(f"{len(melodic)} instruments do not fit in 15 MIDI channels")
    for program, is_drum in groups:
        channel = 9 if is_drum else channels[melodic.index((program, is_drum))]
        sel = arr[(arr["program"] == program) & (arr["is_drum"] == is_drum)]
        on = np.rint(sel["start"] * to_tick).astype(np.int64)
        off = np.maximum(np.rint(sel["end"] * to_tick).astype(np.int64), on + 1)
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
