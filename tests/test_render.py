"""Audio rendering (FluidSynth and the sine fallback) and piano-roll pictures."""

from __future__ import annotations

import os
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BACH

from composer.cli.main import main
from composer.midi import render as render_mod
from composer.midi.io import NOTE_DTYPE, Note, load, max_unison, merge_unisons, save
from composer.midi.render import (
    RenderConfig,
    RenderError,
    find_soundfont,
    note_name,
    plot_piano_roll,
    render,
)

CHORALE = BACH / "bwv1.6.mid"  # 63 s
# FluidSynth renders until the last voice has faded: about 2.8 s past the last note-off with
# FluidR3_GM; the sine fallback adds 1 s (pretty_midi).
TAIL = 5.0
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or find_soundfont() is None,
    reason="FluidSynth or a General MIDI soundfont is not installed")


def wav_facts(path: Path) -> tuple[int, int, float, float]:
    """Sample rate, sample width (bytes), seconds and RMS level (of full scale)."""
    with wave.open(str(path)) as w:
        rate, width, n = w.getframerate(), w.getsampwidth(), w.getnframes()
        samples = np.frombuffer(w.readframes(n), "<i2") / 32768.0
    return rate, width, n / rate, float(np.sqrt(np.mean(samples ** 2)))


@pytest.fixture()
def short_midi(tmp_path) -> Path:
    path = tmp_path / "short.mid"
    save([Note(60 + i, 90, i * 0.25, i * 0.25 + 0.5) for i in range(8)], path)  # 2.25 s
    return path


@needs_fluidsynth
def test_fluidsynth_renders_a_chorale_at_44k1_with_its_length(tmp_path):
    result = render(CHORALE, tmp_path / "out.wav")
    assert result.backend == "fluidsynth" and result.notice is None
    assert result.soundfont is not None
    rate, width, seconds, rms = wav_facts(tmp_path / "out.wav")
    assert (rate, width) == (44100, 2)
    assert rms > 0.01  # not silent (a chorale measures about 0.06)
    duration = load(CHORALE).duration
    assert duration <= seconds <= duration + TAIL
    assert result.seconds == pytest.approx(seconds)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temporary file left


def test_sine_fallback_without_fluidsynth(tmp_path):
    result = render(CHORALE, tmp_path / "sub" / "out.wav",
                    config=RenderConfig(fluidsynth="no-such-fluidsynth-program"))
    assert result.backend == "sine" and result.soundfont is None
    assert "FluidSynth is not installed" in result.notice and "sine" in result.notice
    assert "\n" not in result.notice
    rate, width, seconds, rms = wav_facts(tmp_path / "sub" / "out.wav")
    assert (rate, width) == (44100, 2) and rms > 0.05
    assert seconds == pytest.approx(load(CHORALE).duration + 1.0, abs=0.01)


def test_sine_fallback_without_a_soundfont(tmp_path, monkeypatch, short_midi):
    monkeypatch.setattr(render_mod, "SOUNDFONT_PATHS", ())
    monkeypatch.setattr(render_mod, "bundled_soundfont", lambda: None)
    monkeypatch.delenv("COMPOSER_SOUNDFONT", raising=False)
    assert find_soundfont() is None
    result = render(short_midi, tmp_path / "out.wav")
    assert result.backend == "sine" and result.notice
    if shutil.which("fluidsynth"):
        assert "no General MIDI soundfont found" in result.notice
    assert wav_facts(tmp_path / "out.wav")[3] > 0.05


def _fake_fluidsynth(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-fluidsynth"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("body, says", [
    ("echo 'fluidsynth: error: out of cheese' >&2; exit 3", "exit code 3: fluidsynth: error"),
    ("exit 0", "no readable WAV"),
    ("exec sleep 30", "took longer than"),
])
def test_failing_or_hanging_fluidsynth_falls_back(tmp_path, short_midi, body, says):
    sf = tmp_path / "fake.sf2"
    sf.write_bytes(b"RIFF\0\0\0\0sfbk")
    config = RenderConfig(fluidsynth=_fake_fluidsynth(tmp_path, body), timeout_seconds=0.5)
    result = render(short_midi, tmp_path / "out.wav", soundfont=sf, config=config)
    assert result.backend == "sine" and says in result.notice
    assert result.elapsed < 10
    assert wav_facts(tmp_path / "out.wav")[3] > 0.05


def test_silent_output_falls_back(tmp_path, short_midi):
    silent = tmp_path / "silent.wav"
    render_mod._write_wav(silent, np.zeros(44100), 44100)
    sf = tmp_path / "fake.sf2"
    sf.write_bytes(b"RIFF\0\0\0\0sfbk")
    exe = _fake_fluidsynth(tmp_path, f'cp {silent} "$9"')  # $9: the file after -F
    result = render(short_midi, tmp_path / "out.wav", soundfont=sf,
                    config=RenderConfig(fluidsynth=exe))
    assert result.backend == "sine" and "only silence" in result.notice


@needs_fluidsynth
def test_unloadable_soundfont_falls_back(tmp_path, short_midi):
    # A soundfont with a valid header but nothing in it: FluidSynth cannot load it, says so
    # and exits 0, having rendered noise.
    sf = tmp_path / "empty.sf2"
    sf.write_bytes(b"RIFF" + struct.pack("<I", 4) + b"sfbk")
    result = render(short_midi, tmp_path / "out.wav", soundfont=sf)
    assert result.backend == "sine"
    assert "Failed to load" in result.notice


def test_bad_soundfont_is_an_error(tmp_path, short_midi):
    with pytest.raises(RenderError, match="no such file"):
        render(short_midi, tmp_path / "a.wav", soundfont=tmp_path / "missing.sf2")
    (tmp_path / "junk.sf2").write_bytes(os.urandom(100))
    with pytest.raises(RenderError, match="not an SF2/SF3 soundfont"):
        render(short_midi, tmp_path / "a.wav", soundfont=tmp_path / "junk.sf2")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_piano_roll_is_a_png_of_sensible_size(tmp_path):
    path = plot_piano_roll(CHORALE, tmp_path / "roll.png", seed_seconds=10.0)
    width, height = png_size(path)
    assert 800 <= width <= 2400 and height == 500
    assert 10_000 < path.stat().st_size < 2_000_000
    notes = load(CHORALE).notes
    plain = plot_piano_roll(notes[:20], tmp_path / "part.png", title="first 20 notes")
    assert png_size(plain) == (800, 500)  # short pieces get the minimum width
    assert png_size(plot_piano_roll(notes[:0], tmp_path / "none.png")) == (800, 500)


def test_note_names():
    assert [note_name(p) for p in (60, 61, 21, 108, 0)] == ["C4", "C#4", "A0", "C8", "C-1"]


def test_cli_render_and_plot(tmp_path):
    midi = tmp_path / "piece.mid"
    shutil.copy(CHORALE, midi)
    out = CliRunner().invoke(main, ["render", str(midi)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "piece.wav").is_file() and "Wrote" in out.output
    out = CliRunner().invoke(main, ["plot", str(midi), "-o", str(tmp_path / "p.png"),
                                    "--seed-seconds", "5"])
    assert out.exit_code == 0, out.output
    assert png_size(tmp_path / "p.png")[1] == 500
    out = CliRunner().invoke(main, ["render", str(midi), "--soundfont", str(midi), "--force"])
    assert out.exit_code == 1 and "not an SF2/SF3 soundfont" in out.output


def stacked_unison(path: Path, count: int) -> Path:
    """``count`` notes on C4 at once, the 843-byte file that made FluidSynth write 2.6 GB."""
    notes = np.zeros(count, NOTE_DTYPE)
    notes["pitch"], notes["velocity"], notes["end"] = 60, 80, 0.5
    save(notes, path)
    return path


def test_unison_stacks_are_measured_and_merged():
    notes = np.zeros(6, NOTE_DTYPE)
    notes["pitch"] = [60, 60, 60, 62, 60, 60]
    notes["velocity"] = [10, 90, 20, 30, 40, 50]
    notes["start"] = [0, 0.5, 1.0, 0, 2.0, 2.5]
    notes["end"] = [1, 0.8, 1.5, 3, 2.5, 3]
    assert max_unison(notes) == 2  # touching notes do not overlap
    merged = merge_unisons(notes)
    got = sorted((int(n["pitch"]), float(n["start"]), float(n["end"]), int(n["velocity"]))
                 for n in merged)
    assert got == [(60, 0.0, 1.0, 90), (60, 1.0, 1.5, 20), (60, 2.0, 2.5, 40),
                   (60, 2.5, 3.0, 50), (62, 0.0, 3.0, 30)]
    other = notes.copy()
    other["program"] = np.arange(6)  # the same key on other instruments is no stack
    assert max_unison(other) == 1 and len(merge_unisons(other)) == 6


@needs_fluidsynth
def test_a_unison_bomb_renders_its_length(tmp_path):
    bomb = stacked_unison(tmp_path / "bomb.mid", 128)
    result = render(bomb, tmp_path / "bomb.wav")  # 60 s and 2.6 GB before
    assert result.backend == "fluidsynth" and result.notice is None
    assert result.seconds < 5 and (tmp_path / "bomb.wav").stat().st_size < 1 << 20
    assert result.elapsed < 20


def test_fluidsynth_writing_without_end_is_stopped(tmp_path, short_midi):
    sf = tmp_path / "fake.sf2"
    sf.write_bytes(b"RIFF\0\0\0\0sfbk")
    endless = 'while :; do head -c 200000 /dev/zero >> "$9"; sleep 0.01; done'
    config = RenderConfig(fluidsynth=_fake_fluidsynth(tmp_path, endless), tail_seconds=0.5,
                          timeout_seconds=30)
    result = render(short_midi, tmp_path / "out.wav", soundfont=sf, config=config)
    assert result.backend == "sine" and "wrote more than the" in result.notice
    assert result.elapsed < 10  # stopped by size, long before the 30 s timeout
    assert not list(tmp_path.glob("*.tmp*"))


def test_pieces_past_the_render_bounds_are_refused(tmp_path):
    bomb = stacked_unison(tmp_path / "many.mid", 50)
    with pytest.raises(RenderError, match="50 notes; render takes at most 40") as e:
        render(bomb, tmp_path / "a.wav", config=RenderConfig(max_notes=40))
    assert "\n" not in str(e.value)
    long = np.zeros(1, NOTE_DTYPE)
    long["pitch"], long["velocity"], long["start"], long["end"] = 60, 80, 100.0, 101.0
    save(long, tmp_path / "long.mid")
    with pytest.raises(RenderError, match="lasts 101 s; render takes at most 60 s"):
        render(tmp_path / "long.mid", tmp_path / "a.wav", config=RenderConfig(max_seconds=60))
    assert not (tmp_path / "a.wav").exists()
