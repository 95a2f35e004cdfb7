"""Issue 10, the command-line side: nothing a user types can crash, hang or exhaust memory
on generation, Ctrl-C keeps what was made and exits 130, usage errors are click's (exit 2),
anything unexpected is one line, progress does not flood a log, ``info`` reads well."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import copy_chorales, write_tune

import composer.cli.report as report_mod
import composer.generation.loop as generate_mod
from composer.cli.main import main
from composer.cli.report import Progress, engine_words
from composer.core.messages import GenerateError
from composer.corpus.cache import CorpusConfig
from composer.corpus.prepare import prepare
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.loop import GenerationInterrupted, generate
from composer.generation.output import compose
from composer.generation.seeds import parse_pitch, parse_pitches
from composer.midi.io import load
from composer.model.checkpoint import resolve_checkpoint_path, save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.model.storage import TRAIN_STATE_FILE
from composer.tokens.performance import EventConfig, Vocabulary

EC = EventConfig()
V = Vocabulary(EC).size


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny() -> ComposerLSTM:
    torch.manual_seed(0)
    return ComposerLSTM(ModelConfig.preset("tiny", vocab_size=V)).eval()


@pytest.fixture(scope="module")
def model() -> ComposerLSTM:
    return tiny()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training folder: RUN/best (with a train state) and RUN/latest."""
    run = tmp_path_factory.mktemp("run") / "run"
    m = tiny()
    for name in ("best", "latest"):
        save_checkpoint(run / name, m, m.config, EC.to_dict(), train_config={"steps": 9},
                        step=6, metrics={"loss": 1.25, "perplexity": 3.49, "accuracy": 0.4},
                        data={"corpus": "/data/cache", "files": {"train": 5, "valid": 1}},
                        train_state={"progress": {"step": 6}})
    return run


@pytest.fixture(scope="module")
def ckpt(run_dir) -> Path:
    return run_dir / "best"


def generate_cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["generate", *args], env=env)


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


# ------------------------------------------------------------------- sizes are bounded


def test_num_and_length_are_refused_before_anything_is_allocated(ckpt, tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("generation started")

    monkeypatch.setattr(generate_mod, "_feed", never)
    cases = [(["--num", "100000"], "100,000 continuations is over the limit of 64 per run "
                                   "(raise it with --max-num)"),
             (["--length", "1e4"], "a length of 10000 s is over the limit of 600 s (raise it "
                                   "with --max-length)"),
             (["--events", "1000000000000"], "1,000,000,000,000 events is over the limit of "
                                             "180,000 (600 s at 300 events/s; raise it")]
    for args, message in cases:
        result = generate_cli("--checkpoint", str(ckpt), *args, "--out", str(tmp_path), "-q")
        assert message in one_error_line(result, 1)
    assert not list(tmp_path.glob("*.mid"))


def test_limits_are_config_fields_a_user_can_raise(model, tmp_path):
    with pytest.raises(GenerateError, match="over the limit of 64"):
        generate(model, EC, None, 65, SampleConfig(events=16))
    raised = SampleConfig(events=16, max_num=65)
    assert len(generate(model, EC, None, 65, raised, rng_seed=1).tokens) == 65
    assert SampleConfig(seconds=900, max_seconds=1000).max_events == 300_000
    with pytest.raises(GenerateError, match="max_num must be"):
        SampleConfig(max_num=0)


def test_memory_is_estimated_and_what_cannot_fit_is_refused(model, ckpt, tmp_path,
                                                            monkeypatch):
    config = SampleConfig(seconds=600)
    need = generate_mod.memory_needed(model, 64, config)
    assert 64 * 3 * 8 * config.events_per_row() <= need < 2**30
    monkeypatch.setattr(generate_mod, "free_memory", lambda device: 2**20)  # 1 MiB free
    with pytest.raises(GenerateError, match=r"needs about .* GiB of memory, more than 80% of "
                                            r"the 0.0 GiB free on cpu; ask for fewer"):
        generate(model, EC, None, 64, config)
    result = generate_cli("--checkpoint", str(ckpt), "--num", "8", "--out", str(tmp_path))
    assert "GiB of memory" in one_error_line(result, 1)


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_generation_writes_the_partial_pieces_and_exits_130(ckpt, tmp_path,
                                                                          monkeypatch):
    calls = []

    def press_ctrl_c(self, done, total, postfix=""):
        calls.append(done)
        if len(calls) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "__call__", press_ctrl_c)
    out = tmp_path / "out"
    result = generate_cli("--checkpoint", str(ckpt), "--events", "4000", "--num", "2",
                          "--rng-seed", "1", "--out", str(out))
    assert result.exit_code == 130, result.output
    assert "Note: interrupted: the 2 file(s) above hold the music made so far" in result.stderr
    lines = result.stdout.strip().splitlines()
    assert [Path(line.split()[0]).name for line in lines] == ["composer-001.mid",
                                                              "composer-002.mid"]
    for name in ("composer-001.mid", "composer-002.mid"):
        assert len(load(out / name).notes) > 0  # valid MIDI with the music so far
    assert "Traceback" not in result.output


def test_compose_keeps_what_was_drawn_when_interrupted(model, tmp_path):
    def stop(done, total):
        if done >= 64:
            raise KeyboardInterrupt

    with pytest.raises(GenerationInterrupted) as caught:
        compose(model, EC, None, GenerateRequest(out=str(tmp_path), num=3, rng_seed=2,
                                                 sample=SampleConfig(events=10_000)),
                progress=stop)
    outputs = caught.value.outputs
    assert [o.tokens for o in outputs] == [64, 64, 64]
    assert all(o.path.is_file() for o in outputs)
    full = generate(model, EC, None, 3, SampleConfig(events=64), rng_seed=2)
    assert np.array_equal(caught.value.generation.tokens[1], full.tokens[1])


def _quiet_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background parent may ignore it


def test_a_real_sigint_during_generate_exits_130_with_files(ckpt, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "composer", "generate", "--checkpoint", str(ckpt), "--events",
         "1000000", "--max-length", "86400", "--out", str(out), "--rng-seed", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_quiet_sigint)
    err = proc.stderr.readline()  # the first progress line: generation is under way
    assert err.startswith("generate: "), err
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted: the 1 file(s) above hold the music made so far" in stderr
    assert stdout.startswith(str(out / "composer-001.mid"))
    assert mido.MidiFile(out / "composer-001.mid").length > 0
    assert "Traceback" not in stderr


def test_ctrl_c_in_prepare_exits_130(tmp_path, monkeypatch):
    for k in range(3):
        write_tune(tmp_path / "midi" / f"t{k}.mid", [60, 62, 64])

    def press_ctrl_c(self, done, total, postfix=""):
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "__call__", press_ctrl_c)
    result = CliRunner().invoke(main, ["prepare", str(tmp_path / "midi"), "--out",
                                       str(tmp_path / "cache"), "--workers", "1"])
    assert result.exit_code == 130, result.output
    assert "Interrupted." in result.output and "Traceback" not in result.output


def test_ctrl_c_in_train_saves_and_exits_130(tmp_path, monkeypatch):
    midi = tmp_path / "midi"
    midi.mkdir()
    copy_chorales(midi, 6)
    prepare(midi, tmp_path / "cache", CorpusConfig(valid_fraction=0.2, test_fraction=0.0))

    def press_ctrl_c(self, done, total, postfix=""):
        if done == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the trainer finishes the step, saves, stops

    monkeypatch.setattr(Progress, "__call__", press_ctrl_c)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tmp_path / "cache"), "--out", str(out),
                                       "--preset", "tiny", "--steps", "1000", "--batch-size",
                                       "4", "--seq-len", "16", "--device", "cpu"])
    assert result.exit_code == 130, result.output
    assert "Stopped (interrupted)" in result.output
    assert (out / "latest" / "checkpoint.json").is_file()


# ------------------------------------------------------------------------- the rng seed


def test_rng_seeds_out_of_range_are_one_line(ckpt, tmp_path, model):
    for seed in (str(2**64), "-1", str(2**63)):
        result = generate_cli("--checkpoint", str(ckpt), "--rng-seed", seed, "--events", "8",
                              "--out", str(tmp_path), "-q")
        assert "rng seed must be a whole number from 0 to 2**63-1" in one_error_line(result, 1)
    top = generate(model, EC, None, 2, SampleConfig(events=8), rng_seed=2**63 - 1)
    assert top.rng_seed == 2**63 - 1 and len(top.tokens) == 2
    with pytest.raises(GenerateError, match="rng seed"):
        generate(model, EC, None, 1, SampleConfig(events=8), rng_seed=2**64)


# --------------------------------------------------------------------------- note names


def test_note_names_parse_like_numbers():
    assert parse_pitch("C4") == 60 and parse_pitch("c4") == 60 and parse_pitch("F#3") == 54
    assert parse_pitch("Bb2") == 46 and parse_pitch("bb2") == 46 and parse_pitch("B2") == 47
    assert parse_pitch("C-1") == 0 and parse_pitch("G9") == 127 and parse_pitch(" 61 ") == 61
    assert parse_pitches("C4, 64 g4") == [60, 64, 67]
    with pytest.raises(GenerateError, match="'H4' is not a note name or MIDI pitch"):
        parse_pitches("C4,H4")
    with pytest.raises(GenerateError, match="'Ab9' is pitch 128, outside MIDI's 0..127"):
        parse_pitch("Ab9")


def test_seed_accepts_note_names_mixed_with_numbers(ckpt, tmp_path):
    files = []
    for k, spec in enumerate(["60,64,67", "C4,E4,G4", "c4,64,g4"]):
        result = generate_cli("--checkpoint", str(ckpt), "--seed", spec, "--events", "32",
                              "--rng-seed", "7", "--out", str(tmp_path), "--prefix", f"s{k}",
                              "-q")
        assert result.exit_code == 0, result.output
        files.append((tmp_path / f"s{k}-001.mid").read_bytes())
    assert files[0] == files[1] == files[2]
    bad = generate_cli("--checkpoint", str(ckpt), "--seed", "C4,H4", "--out", str(tmp_path))
    line = one_error_line(bad, 2)
    assert "Invalid value for '--seed': 'H4' is not a note name or MIDI pitch" in line


# ------------------------------------------------------------------------- usage errors


def test_paths_typed_that_do_not_exist_are_usage_errors(ckpt, tmp_path):
    nope = str(tmp_path / "nope.mid")
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "pipe.mid"
    os.mkfifo(fifo)
    cases = [["generate", "--checkpoint", str(ckpt), "--seed", nope],
             ["generate", "--checkpoint", str(ckpt), "--seed", str(fifo)],
             ["generate", "--checkpoint", str(ckpt), "--seed", str(folder)],
             ["generate", "--checkpoint", str(ckpt), "--seed", "/dev/zero"],
             ["generate", "--checkpoint", str(tmp_path / "none")],
             ["info", str(tmp_path / "none")], ["evaluate", "--checkpoint", nope],
             ["render", nope], ["plot", nope], ["render", str(folder)],
             ["prepare", str(tmp_path / "none")], ["train", str(tmp_path / "none")],
             ["evaluate", "--generated", str(tmp_path / "none"), "--reference", str(folder)]]
    for args in cases:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("Usage: ") and "Traceback" not in result.output
        assert one_error_line(result, 2).startswith("Error: Invalid value for")


def test_an_unexpected_exception_is_one_line_unless_debugging(tmp_path, monkeypatch):
    import composer.midi.render as render_mod

    def broken(*a, **k):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(render_mod, "plot_piano_roll", broken)
    midi = write_tune(tmp_path / "t.mid", [60, 64])
    result = CliRunner().invoke(main, ["plot", str(midi)], env={"COMPOSER_DEBUG": ""})
    assert one_error_line(result, 1) == ("Error: internal error: ValueError: boom (rerun with "
                                         "COMPOSER_DEBUG=1 for the traceback)")
    debug = CliRunner().invoke(main, ["plot", str(midi)], env={"COMPOSER_DEBUG": "1"})
    assert isinstance(debug.exception, ValueError)


# --------------------------------------------------------------------------- progress


def test_progress_to_a_log_is_a_few_plain_lines(ckpt, tmp_path):
    result = generate_cli("--checkpoint", str(ckpt), "--events", "3000", "--rng-seed", "1",
                          "--out", str(tmp_path))  # ~190 updates
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("generate:")]
    assert 1 <= len(lines) <= 3 and lines[-1] == "generate: 3,000/3,000 event (100%)"
    assert "\r" not in result.stderr
    quiet = generate_cli("--checkpoint", str(ckpt), "--events", "300", "--out", str(tmp_path),
                         "--copy-warn", "0", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_progress_lines_are_spaced_in_time(monkeypatch, capsys):
    clock = iter(np.arange(0, 100, 1.0))
    monkeypatch.setattr(report_mod.time, "monotonic", lambda: next(clock))
    bar = Progress("work", "step", quiet=False, interval=5)
    for k in range(1, 21):
        bar(k, 20, "loss 1.0")
    assert capsys.readouterr().err.splitlines() == [
        "work: 1/20 step (5%), loss 1.0", "work: 6/20 step (30%), loss 1.0",
        "work: 11/20 step (55%), loss 1.0", "work: 16/20 step (80%), loss 1.0",
        "work: 20/20 step (100%), loss 1.0"]


def test_generate_speaks_of_modes_not_engines(ckpt, tmp_path):
    result = generate_cli("--checkpoint", str(ckpt), "--events", "16", "--rng-seed", "3",
                          "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "Note: rng seed 3 (--rng-seed 3 makes these files again), " in result.stderr
    assert "int8" not in result.stderr and " path" not in result.stderr
    assert engine_words("int8") == "fast CPU mode (8-bit weights)"
    assert engine_words("fused+cuda-graph") == "full-precision mode on the GPU"


# ------------------------------------------------------------------ info and checkpoints


def test_info_is_a_readable_summary_and_json_on_request(run_dir):
    result = CliRunner().invoke(main, ["info", str(run_dir / "best")])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "LSTM layers x" in text and "parameters" in text
    assert f"{V} events: pitches 0..127" in text
    assert "trained      6 steps of 9 planned" in text
    assert "valid loss   1.2500 nats/event" in text
    assert "corpus       /data/cache (5 train, 1 valid files)" in text
    assert "resumable    yes" in text and "{" not in text
    raw = CliRunner().invoke(main, ["info", str(run_dir / "best"), "--json"])
    meta = json.loads(raw.stdout)
    assert meta["step"] == 6 and meta["resumable"] is True and meta["parameters"] > 0


def test_info_does_not_call_a_checkpoint_without_its_state_resumable(run_dir, tmp_path):
    copy = tmp_path / "ckpt"
    copy.mkdir()
    for f in (run_dir / "latest").iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    (copy / TRAIN_STATE_FILE).unlink()
    result = CliRunner().invoke(main, ["info", str(copy)])
    assert result.exit_code == 0, result.output
    assert "resumable    no" in result.stdout


def test_a_training_folder_stands_for_its_best_checkpoint(run_dir, tmp_path):
    assert resolve_checkpoint_path(run_dir) == (
        run_dir / "best", f"{run_dir} is a training folder; using its best checkpoint "
                          f"{run_dir / 'best'}")
    assert resolve_checkpoint_path(run_dir / "best") == (run_dir / "best", None)
    result = generate_cli("--checkpoint", str(run_dir), "--events", "16", "--out",
                          str(tmp_path), "-q")
    assert result.exit_code == 0, result.output
    assert f"Note: {run_dir} is a training folder; using its best checkpoint" in result.stderr
    info = CliRunner().invoke(main, ["info", str(run_dir)])
    assert info.exit_code == 0 and "training folder" in info.stderr
    assert f"Checkpoint: {run_dir / 'best'}" in info.stdout


def test_a_checkpoint_left_mid_save_is_not_called_missing(run_dir, tmp_path):
    saved = tmp_path / ".ckpt.bak"  # where a save interrupted between two renames leaves it
    saved.mkdir()
    for f in (run_dir / "best").iterdir():
        saved.joinpath(f.name).write_bytes(f.read_bytes())
    result = CliRunner().invoke(main, ["info", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    assert f"Checkpoint: {saved}" in result.stdout
