"""The page's harmonize view: ``POST /api/harmonize`` and ``POST /api/infill``.

``/api/harmonize`` takes JSON ``{"melody": "G4:1 A4:1 B4:2", "voices": [...], "temperature",
"passes", "rng_seed", "key", "transpose"}`` (or, instead of ``melody``, a MIDI melody in
``midi_base64``, its top line harmonized); ``/api/infill`` takes ``{"parts": [{"name",
"notes": [[pitch, start, end], ...]}], "meter": [4, 4], "from_bar", "to_bar", "voices", ...}``
(the page sends back the score it shows, to re-roll one voice or one span). Both answer
``{"parts": [...], "meter", "key", "beats", "midi": base64}``: the page draws the parts as a
piano roll, plays them, and offers the MIDI file. The shipped chorale harmonizer runs one
request at a time in a worker thread; every field is bounded and every error is one line.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from composer.core.messages import ComposerError
from composer.serve.api import ApiError

MAX_WORDS = 512  # notes of a typed melody
MAX_BEATS = 256.0  # length of a melody or score
MAX_PASSES = 256
MAX_NOTES = 4096  # notes of a score sent back for infill
MAX_UPLOAD = 1 << 20  # bytes of an uploaded MIDI melody
BODY_BYTES = MAX_UPLOAD * 2  # largest request body (base64 upload and JSON)
_lock = asyncio.Lock()
_model: list[Any] = []


def harmonizer():
    """The shipped chorale harmonizer, loaded once."""
    if not _model:
        from composer.harmony.store import load_harmonizer

        _model.append(load_harmonizer()[0])
    return _model[0]


def sample_config(fields: dict[str, Any]):
    """The sampling settings of a request, bounded."""
    from composer.harmony.config import HarmonySampleConfig

    passes = fields.get("passes", HarmonySampleConfig().passes)
    temperature = fields.get("temperature", HarmonySampleConfig().temperature)
    seed = fields.get("rng_seed")
    if not isinstance(passes, int) or isinstance(passes, bool) or not 1 <= passes <= MAX_PASSES:
        raise ApiError(f"passes must be an integer from 1 to {MAX_PASSES}")
    if not isinstance(temperature, (int, float)) or not 0 < temperature <= 5:
        raise ApiError("temperature must be a number in (0, 5]")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise ApiError("rng_seed must be a whole number >= 0, or null")
    return HarmonySampleConfig(passes=passes, temperature=float(temperature), rng_seed=seed)


def voice_names(fields: dict[str, Any]) -> list[str] | None:
    """The ``voices`` field: a list of up to 8 short names, or None."""
    voices = fields.get("voices")
    if voices is None:
        return None
    if not isinstance(voices, list) or len(voices) > 8 or not all(
            isinstance(v, str) and 0 < len(v) <= 32 for v in voices):
        raise ApiError("voices must be a list of voice names")
    return voices or None


def answer(scores: list) -> dict[str, Any]:
    """The JSON of a result: parts, meter, key, length in beats and the MIDI file."""
    from composer.midi.parts import save_parts

    score = scores[0]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "harmony.mid"
        save_parts(score, path)
        midi = base64.b64encode(path.read_bytes()).decode()
    parts = [{"name": p.name, "notes": [[int(r["pitch"]), float(r["start"]), float(r["end"])]
                                        for r in p.notes]} for p in score.parts]
    return {"parts": parts, "meter": list(score.meter), "key": score.key,
            "beats": score.end, "midi": midi}


def check_melody(notes: np.ndarray) -> np.ndarray:
    """Refuse a melody past MAX_BEATS."""
    if len(notes) and float(notes["end"].max()) > MAX_BEATS:
        raise ApiError(f"the melody is longer than {MAX_BEATS:g} beats")
    return notes


def run_harmonize(fields: dict[str, Any]) -> dict[str, Any]:
    """The work of ``/api/harmonize`` (in a worker thread)."""
    from composer.harmony.melody import parse_melody_text, read_melody
    from composer.harmony.session import harmonize

    config = sample_config(fields)
    meter, upload = (4, 4), fields.get("midi_base64")
    if upload is not None:
        if not isinstance(upload, str) or len(upload) > MAX_UPLOAD * 4 // 3 + 4:
            raise ApiError(f"midi_base64 must be a MIDI file of at most {MAX_UPLOAD:,} bytes")
        try:
            upload = base64.b64decode(upload, validate=True)
        except ValueError:
            raise ApiError("midi_base64 is not base64") from None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "melody.mid"
            path.write_bytes(upload)
            notes, score = read_melody(str(path))
            meter = score.meter
    else:
        text = fields.get("melody")
        if not isinstance(text, str) or len(text.split()) > MAX_WORDS or len(text) > 8192:
            raise ApiError(f"melody must be a line of at most {MAX_WORDS} notes like G4:1")
        notes = parse_melody_text(text)
    key, transpose = fields.get("key"), fields.get("transpose", 0)
    if key is not None and (not isinstance(key, str) or len(key) > 8):
        raise ApiError("key must be a short key name like G or Em")
    if not isinstance(transpose, int) or not -48 <= transpose <= 48:
        raise ApiError("transpose must be an integer from -48 to 48")
    scores = harmonize(harmonizer(), check_melody(notes), config, voices=voice_names(fields),
                       key=key or None, transpose=transpose, meter=meter)
    return answer(scores)


def score_of(fields: dict[str, Any]):
    """The PartScore a request sends back for infill, checked."""
    from composer.midi.parts import PART_DTYPE, Part, PartScore

    parts = fields.get("parts")
    if not isinstance(parts, list) or not 1 <= len(parts) <= 8:
        raise ApiError("parts must be a list of 1 to 8 parts")
    out, total = [], 0
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str) or \
                not isinstance(part.get("notes"), list):
            raise ApiError("each part needs a name and a list of notes")
        rows = []
        for n in part["notes"]:
            if not (isinstance(n, list) and len(n) == 3 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in n)
                    and 0 <= n[0] <= 127 and 0 <= n[1] < n[2] <= MAX_BEATS):
                raise ApiError("a note is [pitch 0..127, start, end] in beats, start < end")
            rows.append((int(n[0]), 80, float(n[1]), float(n[2])))
        total += len(rows)
        out.append(Part(part["name"][:32], np.array(rows, PART_DTYPE)))
    if total > MAX_NOTES:
        raise ApiError(f"too many notes (at most {MAX_NOTES})")
    meter = fields.get("meter", [4, 4])
    if not (isinstance(meter, list) and len(meter) == 2 and all(isinstance(x, int) for x in meter)
            and 1 <= meter[0] <= 16 and meter[1] in (2, 4, 8)):
        raise ApiError("meter must be [beats, unit] like [3, 4]")
    key = fields.get("key")
    return PartScore(out, (meter[0], meter[1]), key=key if isinstance(key, int) else None)


def run_infill(fields: dict[str, Any]) -> dict[str, Any]:
    """The work of ``/api/infill`` (in a worker thread)."""
    from composer.harmony.session import infill

    first, last = fields.get("from_bar"), fields.get("to_bar")
    if not isinstance(first, int) or not isinstance(last, int):
        raise ApiError("from_bar and to_bar must be bar numbers (from 1)")
    scores = infill(harmonizer(), score_of(fields), first, last, sample_config(fields),
                    voices=voice_names(fields))
    return answer(scores)


async def work(fn, fields: Any) -> dict[str, Any]:
    """Run ``fn(fields)`` in a thread, one request at a time; a ComposerError is a 400
    line."""
    if not isinstance(fields, dict):
        raise ApiError("the request must be a JSON object")
    async with _lock:
        try:
            return await asyncio.to_thread(fn, fields)
        except ApiError:
            raise
        except ComposerError as e:
            raise ApiError(str(e)) from None
