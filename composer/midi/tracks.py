"""The tables of Standard MIDI Files, and the tempo arithmetic over many files at once.

:mod:`composer.midi.io` reads files through here: ``read_tracks`` checks the header and chunk
layout and runs the track parser (``_smf``, or its pure-Python twin ``_smf_ref``) on every
track; the other functions are the vectorised steps of ``midi.parse_many`` (tick -> seconds
through the tempo maps of many files, sustain pedal, the tempo maps and time signatures of
each file). Every malformed input is a MidiError with a one-line reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from composer.core.messages import MidiError
from composer.midi.timing import (
    DEFAULT_US_PER_QUARTER,
    TEMPO_DTYPE,
    TIMESIG_DTYPE,
    constant_tempo,
    seconds_to_beats,
)


def unwrap_riff(data: bytes) -> bytes:
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


def track_chunks(data: bytes) -> tuple[int, int, list[tuple[int, int]], bool]:
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


def tick_to_seconds(seg_file: np.ndarray, seg_tick: np.ndarray, seg_spt: np.ndarray):
    """Vectorised (file, tick) -> seconds over the tempo segments of many files.

    Segments are sorted by (file, tick); every file has one at tick 0; ``seg_spt`` is the
    seconds per tick from that segment on.
    """
    first = np.append(True, seg_file[1:] != seg_file[:-1])
    dur = np.where(first, 0.0, np.diff(seg_tick, prepend=0) * np.roll(seg_spt, 1))
    cum = np.cumsum(dur)
    at = cum - np.maximum.accumulate(np.where(first, cum, 0.0))  # seconds at each segment
    seg_key = (seg_file << 41) | seg_tick
    files = int(seg_file[-1]) + 1 if len(seg_file) else 0
    first_seg = np.searchsorted(seg_file, np.arange(files))  # (files,) each file's first
    several = np.diff(np.append(first_seg, len(seg_file))) > 1  # (files,) tempo changes

    def convert(file: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        i = first_seg[file]  # a file of one tempo: its one segment (most files)
        at_several = np.flatnonzero(several[file])
        i[at_several] = np.searchsorted(seg_key, (file[at_several] << 41) | ticks[at_several],
                                        side="right") - 1
        return at[i] + (ticks - seg_tick[i]) * seg_spt[i]

    return convert


def tempo_segments(divisions: np.ndarray, tempo_file: np.ndarray, tempos: np.ndarray):
    """Tempo segments (file, tick, seconds per tick, us per quarter) of every file; see
    tick_to_seconds (SMPTE files: one segment, us per quarter 500000 by the 120 bpm rule)."""
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


def last_before(keys: np.ndarray, ticks: np.ndarray, ev_keys: np.ndarray,
                 ev_ticks: np.ndarray) -> np.ndarray:
    """Index of the last event with the same key at or before each tick, else -1."""
    ev = (ev_keys << 41) | ev_ticks
    order = np.argsort(ev, kind="stable")
    i = np.searchsorted(ev[order], (keys << 41) | ticks, side="right") - 1
    found = (i >= 0) & (ev_keys[order][np.maximum(i, 0)] == keys)
    return np.where(found, order[np.maximum(i, 0)], -1)


def note_order(file: np.ndarray, ticks: np.ndarray, seconds: np.ndarray, pitch: np.ndarray
               ) -> np.ndarray:
    """The stable order of notes by (file, start in seconds, pitch): ``np.lexsort((pitch,
    seconds, file))``, found by one sort of an integer key (file, start tick, pitch), many
    times faster, and checked: seconds rise with ticks within a file (else, as can happen by
    a rounding where tempo segments meet, the lexsort itself)."""
    bits = int(file.max(initial=0)).bit_length()
    if bits <= 15 and len(ticks) and int(ticks.max()) < 1 << 41:  # always, within a batch
        order = np.argsort((file << 48) | (ticks << 7) | pitch, kind="stable")
        f, t, s = file[order], ticks[order], seconds[order]
        if ((s[1:] > s[:-1]) | (t[1:] == t[:-1]) | (f[1:] != f[:-1])).all():
            return order
    return np.lexsort((pitch, seconds, file))


def apply_sustain(n: np.ndarray, controls: np.ndarray, track_end: np.ndarray) -> np.ndarray:
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
    i = last_before(nkey, ends, press_key, press)
    held = (i >= 0) & (ends < lift[np.maximum(i, 0)])
    new_end = np.where(held, lift[np.maximum(i, 0)], ends)
    # a held note stops when its pitch is struck again (in the same track and channel)
    pkey = nkey * 128 + n[:, 2]
    order = np.lexsort((n[:, 4], pkey))
    nxt = np.full(len(n), np.iinfo(np.int64).max)
    same = pkey[order][1:] == pkey[order][:-1]
    nxt[order[:-1][same]] = n[order[1:][same], 4]
    return np.where(held, np.maximum(ends, np.minimum(new_end, nxt)), ends)


def _tracks_parser():
    try:
        from composer.midi._smf import parse_tracks
    except ImportError:  # no compiler at install time: the pure-Python twin, same rules
        from composer.midi._smf_ref import parse_tracks
    return parse_tracks


_parse_tracks = _tracks_parser()


@dataclass
class RawFile:
    """One file's tables straight from the track parser (global track ids)."""

    fmt: int
    division: int
    blobs: list[bytes]  # notes, tempos, controls, programs (int64 rows, see _smf.c)
    tempo_count: int
    track_end: list[int]
    warnings: list[str]
    timesigs: bytes  # int64 rows: tick, numerator, denominator


def read_tracks(data: bytes, max_notes: int, first_track: int) -> RawFile:
    """The tables of one file (RIFF unwrapped, header and chunks checked) from the track
    parser; track ids start at ``first_track``. MidiError with a one-line reason."""
    data = unwrap_riff(bytes(data))
    fmt, division, chunks, missing = track_chunks(data)
    try:
        notes, tempos, controls, programs, ends, warnings, timesigs = _parse_tracks(
            data, chunks, max_notes, first_track)
    except ValueError as e:
        raise MidiError(str(e)) from None
    if missing:
        warnings.insert(0, "header declares more tracks than the file holds")
    return RawFile(fmt, division, [notes, tempos, controls, programs], len(tempos) // 16, ends,
                   warnings, timesigs)


def tempo_maps(segments: tuple, seg_us: np.ndarray, to_sec, tpq: np.ndarray,
                smpte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tempo maps (TEMPO_DTYPE) of all files, file after file, and each file's bounds."""
    seg_file, seg_tick, _ = segments
    maps = np.empty(len(seg_tick), TEMPO_DTYPE)
    maps["beat"] = seg_tick / tpq[seg_file]  # SMPTE files: one segment, at tick 0
    maps["seconds"] = to_sec(seg_file, seg_tick)
    maps["us_per_quarter"] = np.where(smpte[seg_file], DEFAULT_US_PER_QUARTER, seg_us)
    return maps, np.searchsorted(seg_file, np.arange(len(tpq) + 1))


def time_signatures(raws: list[tuple[int, RawFile]], to_sec, tpq: np.ndarray,
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
