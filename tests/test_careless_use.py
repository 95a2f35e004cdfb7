"""Issue 26, as a careless user: never clobber a user's files (concurrent generates, an
output that is the input, an existing file without --force), a tiny file does not render
to a huge WAV, pitch-class weights cannot overflow, no dangling links in the repository,
generated output is ignored by git, and the copy-check note only when asked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import write_tune

import composer.generation.output as output_mod
import composer.generation.session as session_mod
from composer.cli.main import main
from composer.controls.plan import pitch_classes
from composer.core.files import FileTaken, atomic_write_bytes, check_output
from composer.core.messages import ComposerError
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.output import compose, output_paths
from composer.midi.io import NOTE_DTYPE, load, save
from composer.midi.render import RenderConfig, render
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens.performance import EventConfig, Vocabulary

ROOT = Path(__file__).resolve().parents[1]
EC = EventConfig()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> ComposerLSTM:
    torch.manual_seed(0)
    return ComposerLSTM(ModelConfig.preset("tiny", vocab_size=Vocabulary(EC).size)).eval()


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# ------------------------------------------------------------- 1. concurrent generates


def test_concurrent_generates_into_one_folder_never_overwrite_each_other(model, tmp_path,
                                                                          monkeypatch):
    # Before: four runs each chose composer-001..003 before generating, each reported
    # writing them, and three files survived.
    runs, real = 4, output_mod.generate
    together = threading.Barrier(runs)

    def generate_then_wait(*args, **kwargs):  # every run has chosen its names by now
        gen = real(*args, **kwargs)
        together.wait(timeout=120)
        return gen

    monkeypatch.setattr(output_mod, "generate", generate_then_wait)
    done: dict[int, list] = {}

    def one(i: int) -> None:
        job = GenerateRequest(out=str(tmp_path), num=3, sample=SampleConfig(events=24),
                              rng_seed=i, engine="plain")
        done[i] = compose(model, EC, None, job)[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    reported = [o for i in range(runs) for o in done[i]]
    assert len({o.path for o in reported}) == runs * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"composer-{k:03d}.mid" for k in range(1, runs * 3 + 1)]
    for o in reported:  # each file holds what the run that reported it wrote
        assert len(load(o.path).notes) == o.notes


def test_a_file_made_after_the_names_were_chosen_is_not_replaced(model, tmp_path, monkeypatch):
    real = output_mod.generate

    def someone_writes_meanwhile(*args, **kwargs):
        (tmp_path / "composer-001.mid").write_bytes(b"mine")
        return real(*args, **kwargs)

    monkeypatch.setattr(output_mod, "generate", someone_writes_meanwhile)
    job = GenerateRequest(out=str(tmp_path), num=2, sample=SampleConfig(events=16),
                          rng_seed=0, engine="plain")
    outputs, _ = compose(model, EC, None, job)
    assert (tmp_path / "composer-001.mid").read_bytes() == b"mine"
    assert [o.path.name for o in outputs] == ["composer-002.mid", "composer-003.mid"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_names_with_a_companion_taken_are_skipped_and_a_seed_is_never_an_output(tmp_path):
    (tmp_path / "composer-001.wav").write_bytes(b"a user's recording")
    assert output_paths(tmp_path, "composer", 1, companions=(".wav",))[0].name == \
        "composer-002.mid"
    seed = write_tune(tmp_path / "composer-001.mid", [60, 62])
    with pytest.raises(FileTaken, match="is the input"):  # --force from 001 on: not the seed
        output_paths(tmp_path, "composer", 2, force=True, inputs=[seed])


# ------------------------------------------------- 2. the output is the input, --force


@pytest.mark.parametrize("command", ["render", "plot"])
def test_render_and_plot_refuse_to_overwrite_their_input(tmp_path, command):
    midi = write_tune(tmp_path / "x.mid", [60, 64, 67])
    before = midi.read_bytes()
    (tmp_path / "link.mid").symlink_to("x.mid")
    os.link(midi, tmp_path / "hard.mid")
    for out in ("x.mid", "link.mid", "hard.mid"):  # before: a WAV or PNG over the MIDI file
        for force in ((), ("--force",)):
            r = run(command, midi, "-o", tmp_path / out, *force)
            assert r.exit_code == 1 and "is the input" in r.output, r.output
            assert r.output.count("\n") == 1
    assert midi.read_bytes() == before


@pytest.mark.parametrize("command,suffix", [("render", ".wav"), ("plot", ".png")])
def test_an_existing_output_is_replaced_only_with_force(tmp_path, command, suffix):
    midi = write_tune(tmp_path / "x.mid", [60, 64, 67])
    out = tmp_path / f"x{suffix}"
    out.write_bytes(b"keep me")
    r = run(command, midi)
    assert r.exit_code == 1 and r.output == f"Error: {out} exists (give --force to replace it)\n"
    assert out.read_bytes() == b"keep me"
    r = run(command, midi, "--force")
    assert r.exit_code == 0, r.output
    assert out.read_bytes() != b"keep me"


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_a_folder_written_is_never_the_folder_read(tmp_path, command):
    music = tmp_path / "music"
    write_tune(music / "a.mid", [60, 62, 64])
    (tmp_path / "same").symlink_to("music")
    r = run(command, music, "--out", tmp_path / "same")  # before: the cache went in there
    assert r.exit_code == 1 and "is the input" in r.output, r.output
    assert sorted(p.name for p in music.iterdir()) == ["a.mid"]


def test_evaluate_refuses_an_existing_json_before_any_work(tmp_path):
    write_tune(tmp_path / "music" / "a.mid", [60, 62, 64])
    out = tmp_path / "result.json"
    out.write_text("{}")
    r = run("evaluate", "--generated", tmp_path / "music", "--reference", tmp_path / "music",
            "--json", out, "-q")
    assert r.exit_code == 1 and "exists (give --force" in r.output and "|" not in r.output
    assert out.read_text() == "{}"


def test_the_one_rule_and_the_atomic_claim(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"1")
    assert check_output(tmp_path / "new", [a]) == tmp_path / "new"
    with pytest.raises(FileTaken, match="give --force"):
        check_output(a)
    assert check_output(a, force=True) == a
    with pytest.raises(FileTaken, match="is the input"):
        check_output(a, [a], force=True)
    from composer.core.files import atomic_write
    with pytest.raises(FileTaken):
        atomic_write(a, lambda p: p.write_bytes(b"2"), replace=False)
    assert a.read_bytes() == b"1" and sorted(tmp_path.iterdir()) == [a]
    atomic_write_bytes(a, b"3")  # replace=True stays the default of internal files
    assert a.read_bytes() == b"3"


# ------------------------------------------------------------------ 3. render's bound


def test_a_tiny_file_renders_at_most_ten_minutes_by_default(tmp_path):
    notes = np.zeros(2, NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = 60, 80
    notes["start"], notes["end"] = [0.0, 3590.0], [3500.0, 3591.0]  # the two notes
    save(notes, tmp_path / "late.mid")
    assert (tmp_path / "late.mid").stat().st_size < 120
    config = RenderConfig(sample_rate=8000)  # small files, same bound
    done = render(tmp_path / "late.mid", tmp_path / "late.wav", config=config)
    assert 599 <= done.seconds <= 611  # before: 3,591 s (630 MB at 44.1 kHz)
    assert done.notice.startswith("rendered the first 600 s of 3,591 s (--max-length")
    r = run("render", tmp_path / "late.mid", "--max-length", "5", "-o", tmp_path / "five.wav")
    assert r.exit_code == 0, r.output
    assert 5 <= float(re.search(r"\(([\d.]+) s of audio", r.output)[1]) <= 15  # its tail
    assert "Note: rendered the first 5 s of 3,591 s" in r.output
    r = run("render", tmp_path / "late.mid", "--max-length", "3601")
    assert r.exit_code == 2 and "3600" in r.output  # the hard bound: an hour
    with pytest.raises(ComposerError, match="render length"):
        render(tmp_path / "late.mid", tmp_path / "x.wav", config=RenderConfig(seconds=1e9))


# ------------------------------------------------------------- 5. pitch-class weights


@pytest.mark.parametrize("text", ["1e308,1e308,1,1,1,1,1,1,1,1,1,1", "inf,1,1,1,1,1,1,1,1,1,1,1",
                                  "nan,1,1,1,1,1,1,1,1,1,1,1", "2e6,0,0,0,0,0,0,0,0,0,0,0"])
def test_pitch_class_weights_are_bounded(text):
    # before: 1e308 twice summed to inf and the model got an all-zero histogram, silently
    bound = r"pitch-class weight must be a number in \[0, 1e\+06\]"
    with pytest.raises(ComposerError, match=bound):
        pitch_classes(text)


def test_pitch_class_weights_at_the_bound_give_a_histogram():
    h = pitch_classes([1e6] * 2 + [1e-300] * 10)
    assert np.isfinite(h).all() and h.sum() == pytest.approx(1) and h[0] == pytest.approx(0.5)


def test_generate_refuses_overflowing_pitch_classes_in_one_line():
    r = run("generate", "--checkpoint", "default", "--pitch-classes",
            "1e308,1e308,1,1,1,1,1,1,1,1,1,1", "--length", "1")
    assert r.exit_code == 1 and r.output.startswith("Error: each pitch-class weight")


# ----------------------------------------------------------- 7. 8. the repository itself


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout


needs_git = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                               reason="not a git checkout")


@needs_git
def test_the_repository_holds_no_absolute_or_dangling_links():
    links = [line.split("\t", 1)[1] for line in git("ls-files", "-s").splitlines()
             if line.startswith("120000 ")]
    for link in links:
        target = os.readlink(ROOT / link)
        assert not os.path.isabs(target), f"{link} -> {target}: absolute"
        assert (ROOT / link).resolve().is_file(), f"{link} -> {target}: dangles"
        assert ROOT in (ROOT / link).resolve().parents, f"{link} -> {target}: leaves the repo"
    for path in ROOT.rglob("*"):  # untracked ones too (not in ignored build folders)
        if path.is_symlink() and ".venv" not in path.parts and "build" not in path.parts:
            assert not os.path.isabs(os.readlink(path)) and path.exists(), path


@needs_git
def test_generated_output_in_the_repository_root_is_ignored():
    names = ["composer-001.mid", "composer-017.wav", "composer-002.png"]
    assert git("check-ignore", *names).split() == names  # before: composer-001.mid untracked
    assert subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "README.md"]
                          ).returncode == 1


# ------------------------------------------------------------- 9. the copy-check note


def test_the_copy_check_note_only_when_asked(tmp_path, monkeypatch):
    # Outside a source checkout the shipped model's corpus is not there; before, every
    # generate said so, even with -q.
    monkeypatch.setattr(session_mod, "training_copy_index", lambda *a, **k: None)
    quiet = run("generate", "--length", "1", "--rng-seed", "0", "--out", tmp_path, "-q")
    assert quiet.exit_code == 0 and "copy check" not in quiet.output
    asked = run("generate", "--length", "1", "--rng-seed", "0", "--out", tmp_path, "-q",
                "--copy-warn", "10")
    assert asked.exit_code == 0 and "copy check skipped: the training corpus" in asked.output
    shown = "".join(run("generate", "--help").output.split())  # however click wraps it
    assert "skipped,saidonlywhen--copy-warnisgiven" in shown
    assert "said only when `--copy-warn` is given" in " ".join(
        (ROOT / "README.md").read_text().split())
