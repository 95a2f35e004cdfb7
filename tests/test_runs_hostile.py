"""Issue 19's careless uses of training runs and checkpoints: two runs into one folder,
``--force`` on a live run, resuming a finished run, ``--resume --force``, ``info`` on a
corrupted checkpoint, and a disk that fills up while generated files are written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import small_corpus

from composer.cli.main import main
from composer.core.files import DiskFullError, FolderBusy, locked_folder
from composer.corpus.cache import Corpus
from composer.generation import output as sample_mod
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.output import compose
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens.performance import EventConfig
from composer.training.config import TrainConfig
from composer.training.loop import train

TINY = ModelConfig.preset("tiny")
FAST = TrainConfig(steps=10, batch_size=8, seq_len=32, eval_seq_len=64, eval_every=5,
                   warmup_steps=2, eval_max_batches=2, log_every=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, one_thread) -> Corpus:
    return small_corpus(tmp_path_factory.mktemp("runs"))


def test_a_second_run_into_a_live_runs_folder_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, TINY, FAST, device="cpu")
    before = (out / "metrics.jsonl").read_text()
    with locked_folder(out, wait=False, holder="pid 4242 on host-a, since 12:00: composer "
                       "train x", what="training run"):
        for force in (False, True):  # both exited 0 and overwrote each other before
            with pytest.raises(FolderBusy, match=r"in use by another training run \(pid 4242"):
                train(corpus, out, TINY, FAST, device="cpu", force=force)
        r = CliRunner().invoke(main, ["train", str(corpus.cache_dir), "--out", str(out),
                                      "--preset", "tiny", "--steps", "10", "--force"])
        assert r.exit_code == 1 and "in use by another training run (pid 4242" in r.output
    assert (out / "metrics.jsonl").read_text() == before  # the live run was not moved
    assert not (out / "previous-1").exists()


def test_a_dead_holders_lock_is_free(corpus, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from composer.core.files import locked_folder\n"
         f"with locked_folder({str(out)!r}, wait=False, holder='a dying run'):\n"
         "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusy, match="a dying run"):
        train(corpus, out, TINY, FAST, device="cpu")
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert train(corpus, out, TINY, FAST, device="cpu").step == 10  # no stale lock


def test_resuming_a_finished_run_adds_nothing(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, TINY, FAST, device="cpu")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    again = train(corpus, out, TINY, FAST, device="cpu", resume=True)
    assert again.stopped == "already complete" and again.step == 10
    assert (out / "metrics.jsonl").read_text().splitlines() == lines  # a duplicate before
    assert json.loads(lines[-1])["split"] == "valid"


def test_resume_and_force_together_are_a_usage_error(tmp_path):
    for order in (["--resume", "--force"], ["--force", "--resume"]):
        r = CliRunner().invoke(main, ["train", str(tmp_path), *order])
        assert r.exit_code == 2 and "contradict each other" in r.output, r.output


def test_info_reports_corrupted_weights(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, TINY, FAST, device="cpu")
    weights = out / "best" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # the size and header stay: only the checksum can tell
    weights.write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["info", str(out / "best")])
    assert r.exit_code == 1 and "SHA-256 (corrupted)" in r.output and "Traceback" not in r.output


def test_a_full_disk_mid_generate_lists_what_was_written(tmp_path, monkeypatch):
    model, real, calls = ComposerLSTM(TINY), sample_mod.save, []

    def save(piece, path, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise DiskFullError(f"disk full: no space left to write {path}")
        return real(piece, path, **kw)

    monkeypatch.setattr(sample_mod, "save", save)
    config = SampleConfig(events=20)
    with pytest.raises(DiskFullError) as e:
        compose(model, EventConfig(), None,
                GenerateRequest(out=str(tmp_path), num=4, sample=config, rng_seed=1))
    message = str(e.value)
    assert "2 written before it" in message and "\n" not in message
    assert all(str(p) in message for p in calls[:2]) and str(calls[2]) not in message.split(
        "written before it")[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(p).name for p in calls[:2]]
