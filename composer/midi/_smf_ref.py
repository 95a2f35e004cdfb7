"""Pure-Python twin of the C track parser in ``_smf.c``: same rules, same output.

Used by :mod:`composer.midi.io` when the compiled extension is not available, and by the
tests as an independent implementation to compare the C parser against. See ``_smf.c``
for the rules and the layout of the returned tables.
"""

from __future__ import annotations

from collections import deque

import numpy as np

MAX_TICK = 1 << 40
_MAX_WARNINGS = 8


def _vlq(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a variable-length quantity; value -1 past the end, -2 if longer than 4 bytes."""
    value = 0
    for _ in range(4):
        if pos >= end:
            return -1, pos
        b = buf[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos
    return -2, pos


def _rows(rows: list, width: int) -> bytes:
    return np.asarray(rows, dtype=np.int64).reshape(-1, width).tobytes()


def parse_track(
    data: bytes, start: int, end: int, max_notes: int, track: int = 0
) -> tuple[bytes, bytes, bytes, bytes, int, list[str], bytes]:
    """Parse one MTrk chunk body ``data[start:end]``; see ``_smf.c`` for the result layout."""
    if start < 0 or end > len(data) or start > end:
        raise ValueError("track bounds outside the file")
    buf = data
    notes: list[list[int]] = []
    tempos: list[tuple[int, int]] = []
    controls: list[tuple[int, int, int, int]] = []
    programs: list[tuple[int, int, int, int]] = []
    timesigs: list[tuple[int, int, int]] = []
    pending: dict[int, deque[int]] = {}
    warnings: list[str] = []

    def warn(msg: str, at: int) -> None:
        if len(warnings) < _MAX_WARNINGS:
            warnings.append(f"{msg} at byte {at}")

    pos, tick, running = start, 0, 0
    while pos < end:
        at = pos
        delta, pos = _vlq(buf, pos, end)
        if delta == -1:
            break
        if delta == -2:
            raise ValueError(f"malformed delta time at byte {at}")
        tick += delta
        if tick > MAX_TICK:
            raise ValueError(f"tick count over 2^40 at byte {at}")
        if pos >= end:
            warn("track ends inside an event", at)
            break
        status = buf[pos]
        if status == 0xFF:
            pos += 1
            if pos >= end:
                warn("meta event runs past the end of its track", at)
                break
            mtype = buf[pos]
            length, pos = _vlq(buf, pos + 1, end)
            if length < 0 or length > end - pos:
                warn("meta event runs past the end of its track", at)
                break
            if mtype == 0x2F:
                break
            if mtype == 0x51:
                if length == 3:
                    us = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                    if us > 0:
                        tempos.append((tick, us))
                    else:
                        warn("tempo 0 ignored", at)
                else:
                    warn("malformed tempo ignored", at)
            elif mtype == 0x58:
                if length == 4 and buf[pos] > 0 and buf[pos + 1] <= 6:
                    timesigs.append((tick, buf[pos], 1 << buf[pos + 1]))
                else:
                    warn("malformed time signature ignored", at)
            pos += length
            continue
        if status in (0xF0, 0xF7):
            length, pos = _vlq(buf, pos + 1, end)
            if length < 0 or length > end - pos:
                warn("sysex runs past the end of its track", at)
                break
            pos += length
            continue
        if status > 0xF0:
            pos += 1
            skip = 2 if status == 0xF2 else 1 if status in (0xF1, 0xF3) else 0
            if skip > end - pos:
                break
            pos += skip
            continue
        if status & 0x80:
            running = status
            pos += 1
        elif not running:
            raise ValueError(f"data byte without a status byte at byte {at}")
        kind, channel = running & 0xF0, running & 0x0F
        ndata = 1 if kind in (0xC0, 0xD0) else 2
        if ndata > end - pos:
            warn("track ends inside an event", at)
            break
        d1 = buf[pos]
        d2 = buf[pos + 1] if ndata == 2 else 0
        if d1 > 127 or d2 > 127:
            raise ValueError(f"data byte over 127 at byte {pos}")
        pos += ndata
        key = channel * 128 + d1
        if kind == 0x90 and d2 > 0:
            if len(notes) >= max_notes:
                raise ValueError(f"more than {max_notes} notes")
            notes.append([track, channel, d1, d2, tick, -1, 0])
            pending.setdefault(key, deque()).append(len(notes) - 1)
        elif kind in (0x80, 0x90):
            queue = pending.get(key)
            if queue:
                notes[queue.popleft()][5] = tick
        elif kind == 0xB0 and d1 == 64:
            controls.append((track, channel, tick, d2))
        elif kind == 0xC0:
            programs.append((track, channel, tick, d1))
    for row in notes:
        if row[5] < 0:
            row[5], row[6] = tick, 1
    return (_rows(notes, 7), _rows(tempos, 2), _rows(controls, 4), _rows(programs, 4), tick,
            warnings, _rows(timesigs, 3))


def parse_tracks(data: bytes, chunks: list[tuple[int, int]], max_notes: int, first_track: int
                 ) -> tuple[bytes, bytes, bytes, bytes, list[int], list[str], bytes]:
    """Parse every MTrk chunk body ``data[start:end]`` of ``chunks`` (track ids from
    ``first_track``): the tables of all tracks end to end, each track's end tick, and the
    warnings as "track N: ..."; at most ``max_notes`` notes in all. ValueError: "more than
    N notes" or "track N: <reason>"."""
    tables: list[list[bytes]] = [[], [], [], [], []]
    budget, ends, warnings = max_notes, [], []
    for t, (start, end) in enumerate(chunks):
        try:
            *raw, end_tick, warns, timesigs = parse_track(data, start, end, budget,
                                                          first_track + t)
        except ValueError as e:
            if str(e).startswith("more than"):
                raise ValueError(f"more than {max_notes} notes") from None
            raise ValueError(f"track {t + 1}: {e}") from None
        for table, b in zip(tables, [*raw, timesigs], strict=True):
            table.append(b)
        budget -= len(raw[0]) // (7 * 8)
        ends.append(end_tick)
        warnings += [f"track {t + 1}: {w}" for w in warns]
    notes, tempos, controls, programs, timesigs = (b"".join(t) for t in tables)
    return notes, tempos, controls, programs, ends, warnings, timesigs
