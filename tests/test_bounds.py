"""Issue 19's hostile inputs to generation: one set of bounds for the CLI, the library and
the server (composer.core.bounds), one-line refusals instead of internal errors, and an empty
piece treated as a result."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from composer.cli.main import main
from composer.controls.features import ControlError, ControlSpec
from composer.controls.plan import make_plan, read_plan
from composer.core import bounds
from composer.core.bounds import Bound, loads_json, threads_bound
from composer.core.messages import ComposerError, GenerateError
from composer.generation.config import SampleConfig
from composer.generation.seeds import (
    check_seed_spec,
    resolve_seed,
    seed_clock,
    seed_file,
    seed_from_midi,
)
from composer.midi.io import NOTE_DTYPE, save
from composer.midi.render import plot_piano_roll, render
from composer.serve.api import ApiError, ServeConfig, check_request
from composer.tokens.performance import DEFAULT_CONFIG

SPEC = ControlSpec(("density", "pitch-classes", "tempo"))


def usage_error(args: list[str]) -> str:
    """Run ``composer ARGS``: a usage error (exit 2), never a traceback; its text."""
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    return r.output


@pytest.mark.parametrize("flag, value", [
    ("--tempo", "1e9"), ("--tempo", "1e7"), ("--density", "1e6"), ("--temperature", "1e308"),
    ("--top-p", "1.5"), ("--threads", "1000"),
    ("--max-silence", "1e308"), ("--max-note", "1e308"),  # OverflowError before
    ("--max-length", "1e308"), ("--length", "1e9"),
    ("--max-num", "1000000000")])  # a loop over 1e9 output paths before
def test_cli_refuses_unbounded_numbers_before_loading_anything(flag, value):
    out = usage_error(["generate", "--length", "2", flag, value])
    assert f"Invalid value for '{flag}'" in out and "is not in the range" in out


def test_evaluate_order_is_bounded(tmp_path):
    # order 1,000,000 grew to 24 GB before the kernel killed it
    out = usage_error(["evaluate", "--checkpoint", "default", "--order", "1000000"])
    assert "Invalid value for '--order'" in out and "1<=x<=12" in out
    from composer.core.messages import MetricsError
    from composer.evaluation.baselines import EvalConfig, NGram

    with pytest.raises(MetricsError, match=r"order must be an integer in \[1, 12\]"):
        EvalConfig(order=13)
    with pytest.raises(MetricsError, match="n-gram order must be"):
        NGram([], 4, order=10**6)


def test_train_threads_are_bounded_by_the_cpus(tmp_path):
    cpus = threads_bound().hi
    assert cpus == bounds.available_cpus() >= 1
    out = usage_error(["train", str(tmp_path), "--threads", str(cpus + 1)])
    assert f"1<=x<={cpus}" in out
    for command in ("train", "prepare"):  # ingest processes: 100,000 accepted before
        assert f"1<=x<={cpus}" in usage_error([command, str(tmp_path), "--workers", "100000"])


def test_library_keeps_the_same_bounds_as_the_cli_and_the_server():
    with pytest.raises(GenerateError, match=r"temperature must be a number in \[0, 5\]"):
        SampleConfig(temperature=1e308)
    SampleConfig(temperature=5.0)  # the edge itself is allowed
    for name in ("max_silence_seconds", "max_note_seconds", "max_seconds"):
        with pytest.raises(GenerateError, match=rf"{name} must be a number in \(0, 86400\]"):
            SampleConfig(**{name: 1e308})
    with pytest.raises(GenerateError, match=r"max_num must be an integer in \[1, 10000\]"):
        SampleConfig(max_num=10**9)
    with pytest.raises(ControlError, match=r"tempo .* must be a number in \[10, 600\]"):
        make_plan(SPEC, {"tempo": 1e9})  # ZeroDivisionError before
    with pytest.raises(ControlError, match=r"density .* in \[0.1, 50\]"):
        make_plan(SPEC, {"density": 1e6})
    assert make_plan(SPEC, {"tempo": 600, "density": 50}) is not None
    with pytest.raises(GenerateError, match="threads must be an integer"):
        bounds.check_threads(10**6, GenerateError)
    # the server's check names the same range for the same field
    config, models = ServeConfig(), {"default": None}
    for field, bad, good in (("temperature", 5.5, 5.0), ("top_p", 0, 1)):
        with pytest.raises(ApiError, match=bounds.TEMPERATURE.describe().replace("[", r"\[")
                           if field == "temperature" else r"\(0, 1\]"):
            check_request({field: bad}, config, models, {})
        assert getattr(check_request({field: good}, config, models, {}), field) == good


def test_bound_describes_and_checks():
    b = Bound("x", 0, 1, lo_open=True)
    assert b.describe() == "a number in (0, 1]"
    assert not b.contains(0) and b.contains(1) and not b.contains(float("nan"))
    assert not b.contains(True) and not b.contains("0.5")
    with pytest.raises(ComposerError, match=r"^x must be a number in \(0, 1\], got 2$"):
        b.check(2)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 32"),  # RecursionError before
    ('[{"from": 0, "density": ' + "9" * 5000 + "}]", "longer than 100 characters"),  # ValueError
    ('[{"from": 0, "density": 2}, {"from": 1e300, "density": 8}]',  # applied from 0 s before
     r"'from' \(seconds\) must be a number in \[0, 86400\], got 1e\+300"),
])
def test_hostile_plans_are_one_line_refusals(tmp_path, text, message):
    path = write(tmp_path, "plan.json", text)
    with pytest.raises(ControlError, match=message) as e:
        make_plan(SPEC, None, read_plan(path))
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_loads_json_scans_strings_and_depth_exactly():
    deep = "[" * 32 + "]" * 32
    assert loads_json(deep) is not None
    with pytest.raises(ComposerError, match="deeper than 32"):
        loads_json("[" + deep + "]")
    # brackets and long digit runs inside strings are text, not structure
    assert loads_json(json.dumps({"a": "[" * 100 + "9" * 500, "b": '\\"['})) == {
        "a": "[" * 100 + "9" * 500, "b": '\\"['}


def test_long_pitch_lists_and_empty_seeds(tmp_path):
    ninety = ",".join(str(p) for p in range(21, 111))  # 269 characters: 'File name too long'
    assert len(ninety) > 255  # before: longer than a file name may be
    check_seed_spec(ninety)
    assert seed_file(ninety) is None and seed_clock(ninety) is None
    assert len(resolve_seed(ninety, DEFAULT_CONFIG)) > 90  # a 90-note chord
    with pytest.raises(GenerateError, match="has 200 pitches; at most 128"):
        check_seed_spec(",".join(["C4"] * 200))
    with pytest.raises(GenerateError, match="seed is empty"):  # 'is a folder' before
        check_seed_spec("")
    with pytest.raises(GenerateError, match="is a folder"):
        check_seed_spec(str(tmp_path))
    assert "seed is empty" in usage_error(["generate", "--seed", ""])


def test_an_empty_piece_renders_and_plots(tmp_path):
    save([], tmp_path / "empty.mid")
    done = render(tmp_path / "empty.mid", tmp_path / "empty.wav")  # RenderError before
    assert done.backend == "silence" and "no notes" in done.notice
    assert (tmp_path / "empty.wav").read_bytes()[:4] == b"RIFF"
    png = plot_piano_roll(tmp_path / "empty.mid", tmp_path / "empty.png")  # error before
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def client(one_thread):
    from starlette.testclient import TestClient

    from composer.serve.app import create_app

    with TestClient(create_app()) as c:
        yield c


def test_a_short_web_request_with_no_notes_is_a_result(tmp_path, one_thread):
    """A piece that holds no note is a result (400 naming an internal work file before):
    a tiny beat-vocabulary model that always waits, asked for 0.1 s, draws only a rest
    (the opening guard lets a rest of up to 0.5 s through)."""
    from starlette.testclient import TestClient

    from composer.model.checkpoint import save_checkpoint
    from composer.model.config import ModelConfig
    from composer.model.lstm import ComposerLSTM
    from composer.serve.app import create_app
    from composer.tokens.beats import SHIFT, NoteEventConfig
    from composer.tokens.vocab import vocabulary_of
    from composer.training.config import TrainConfig

    events = vocabulary_of(NoteEventConfig())
    config = ModelConfig(vocab_size=events.size, embed_dim=8, hidden=16, layers=1)
    lazy = ComposerLSTM(config)
    with torch.no_grad():
        lazy.head.bias[events.vocab.ranges[SHIFT]] += 20.0  # it always waits
    save_checkpoint(tmp_path / "lazy", lazy, config, events.to_dict(),
                    train_config=TrainConfig().to_dict(), step=0, metrics={}, data={})
    with TestClient(create_app([tmp_path / "lazy"])) as client:
        lazy_id = client.get("/api/models").json()["models"][-1]["id"]
        r = client.post("/api/generate", json={"seconds": 0.1, "rng_seed": 3,
                                               "model": lazy_id})
        assert r.status_code == 200, r.text
        (piece,) = r.json()["results"]
        assert piece["notes"] == 0 and piece["audio"] == "silence"
        assert client.get(piece["urls"]["wav"]).content[:4] == b"RIFF"
        assert client.get(piece["urls"]["roll"]).json()["notes"] == []


def many_tracks(path, tracks: int = 65_535, notes: int = 25_000):
    """The issue's upload: a format-1 file of ``tracks`` tracks, the first ``notes`` each
    holding one note, all at once (~1 MB; 73 s and 916 MB per request before)."""
    body = [b"MThd" + struct.pack(">IHHH", 6, 1, tracks, 480)]
    for i in range(tracks):
        p = 21 + i % 88
        ev = (bytes([0, 0x90, p, 64, 0x83, 0x60, 0x80, p, 0]) if i < notes else b"") + \
            bytes([0, 0xFF, 0x2F, 0])
        body.append(b"MTrk" + struct.pack(">I", len(ev)) + ev)
    path.write_bytes(b"".join(body))
    return path


def test_a_seed_of_65535_tracks_is_bounded(client, tmp_path):
    path = many_tracks(tmp_path / "tracks.mid")
    assert path.stat().st_size < 1 << 20
    tokens = seed_from_midi(path, None, DEFAULT_CONFIG)  # 25,000 notes on 88 keys: 88
    assert len(tokens) < 400
    began = time.perf_counter()
    r = client.post("/api/generate", files={"midi": ("t.mid", path.read_bytes(), "audio/midi")},
                    data={"request": json.dumps({"seed": "upload", "seconds": 2,
                                                 "rng_seed": 1})})
    assert r.status_code == 200, r.text
    assert time.perf_counter() - began < 30
    with pytest.raises(GenerateError, match="has 500 notes; a seed takes at most 100"):
        seed_from_midi(spread(tmp_path / "long.mid", 500), None, DEFAULT_CONFIG, max_notes=100)


def spread(path, count: int):
    """``count`` notes one after another (no two at once)."""
    notes = np.zeros(count, NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = 60 + np.arange(count) % 12, 80
    notes["start"] = np.arange(count) * 0.1
    notes["end"] = notes["start"] + 0.1
    save(notes, path)
    return path


def test_a_chord_seed_sounds_each_pitch_once():
    from composer.generation.seeds import seed_from_pitches

    once, stack = (seed_from_pitches(p, "chord", DEFAULT_CONFIG) for p in ("C4", "C4 " * 128))
    assert np.array_equal(once, stack)  # 128 stacked C4s (the render bomb) are one C4
    arpeggio = seed_from_pitches("C4 C4 C4", "arpeggio", DEFAULT_CONFIG)
    assert len(arpeggio) > len(once)  # an arpeggio repeats a pitch in turn


def test_a_seed_keeps_a_unison_of_two_voices_but_merges_a_stack(tmp_path):
    def seed_of(count: int) -> np.ndarray:
        notes = np.zeros(count + 1, NOTE_DTYPE)
        notes["pitch"], notes["velocity"], notes["end"] = 60, 80, 1.0
        notes[-1]["pitch"] = 64  # and an E4 beside them
        save(notes, tmp_path / f"{count}.mid")
        return seed_from_midi(tmp_path / f"{count}.mid", None, DEFAULT_CONFIG)

    one, two, stack = seed_of(1), seed_of(2), seed_of(9)
    assert not np.array_equal(one, two)  # two voices in unison stay two notes
    assert np.array_equal(one, stack)  # nine on one key are the one a key can sound
