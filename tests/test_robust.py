"""Nothing a user types or points at crashes, hangs, exhausts memory or loses their work.

Each test builds the hostile input (bytes, a FIFO, a device, a patched write or a tiny tmpfs)
and checks the one-line error or the recovery; every one of them failed before issue 10.
"""

from __future__ import annotations

import errno
import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from helpers import BACH, copy_chorales, write_tune

from composer.core.files import DiskFullError
from composer.core.messages import ComposerError, MidiError, check_seed
from composer.corpus import prepare as corpus_mod
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.midi.io import LoadConfig, load, parse_pitch, read_bytes
from composer.model import checkpoint as ckpt
from composer.model import storage as ckptio
from composer.model.checkpoint import (
    load_checkpoint,
    read_info,
    resolve_checkpoint_path,
    save_checkpoint,
)
from composer.model.config import ModelConfig, ModelError
from composer.model.lstm import ComposerLSTM, check_fits, estimate_bytes
from composer.model.storage import CheckpointError
from composer.tokens.performance import EventConfig
from composer.training.config import TrainConfig, TrainingError
from composer.training.loop import train

TINY = ModelConfig.preset("tiny")
EVENTS = EventConfig().to_dict()


def fast(**kw) -> TrainConfig:
    base = dict(steps=10, batch_size=4, seq_len=32, eval_seq_len=64, eval_every=5,
                warmup_steps=2,
                eval_max_batches=2, log_every=5)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("robust")
    copy_chorales(root / "midi", 12)
    prepare(root / "midi", root / "cache", CorpusConfig(valid_fraction=0.3, test_fraction=0.0))
    return Corpus.open(root / "cache")


def save_tiny(path: Path, step: int = 3, model: ComposerLSTM | None = None, **kw) -> Path:
    model = model or ComposerLSTM(TINY)
    return save_checkpoint(path, model, model.config, EVENTS, train_config={}, step=step,
                           metrics={"loss": 2.5}, data={}, **kw)


# ----------------------------------------------------------------------------- lost work


def test_a_new_run_over_an_old_one_is_refused_then_forced_aside(small_corpus, tmp_path):
    out = tmp_path / "run"
    train(small_corpus, out, TINY, fast(), device="cpu")
    best = (out / "best" / "model.safetensors").read_bytes()
    with pytest.raises(TrainingError) as e:
        train(small_corpus, out, TINY, fast(steps=5), device="cpu")
    message = str(e.value)
    assert "\n" not in message and "step 10" in message and "best validation loss" in message
    assert "--resume" in message and "--force" in message
    assert (out / "best" / "model.safetensors").read_bytes() == best  # untouched
    lines = (out / "metrics.jsonl").read_text().splitlines()
    result = train(small_corpus, out, TINY, fast(steps=5), device="cpu", force=True)
    assert result.step == 5
    old = out / "previous-1"
    assert (old / "best" / "model.safetensors").read_bytes() == best  # moved, not deleted
    assert (old / "metrics.jsonl").read_text().splitlines() == lines
    assert max(json.loads(x)["step"] for x in (out / "metrics.jsonl").open()) == 5
    train(small_corpus, out, TINY, fast(steps=5), device="cpu", force=True)
    assert (out / "previous-2" / "latest").is_dir()


def test_resume_does_not_repeat_metrics_lines(small_corpus, tmp_path):
    out = tmp_path / "run"
    train(small_corpus, out, TINY, fast(steps=10, log_every=1), device="cpu")
    # as after a kill between checkpoints: lines past the last checkpoint (step 10) and a
    # half-written line
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 11, "split": "train", "loss": 1.0}) + "\n")
        f.write('{"step": 12, "spl')
    train(small_corpus, out, None, fast(steps=15, log_every=1), device="cpu", resume=True)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys))  # no line repeated
    assert [s for s, split in keys if split == "train"] == list(range(1, 16))


# -------------------------------------------------------------------- concurrent prepares


def _prepare_in_child(midi: str, cache: str, queue) -> None:
    try:
        report = prepare(midi, cache, workers=1)
        queue.put(("ok", report.files_loaded))
    except BaseException as e:  # noqa: BLE001 - report anything to the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def test_concurrent_prepares_of_one_cache_both_finish_with_a_valid_cache(tmp_path):
    midi = tmp_path / "midi"
    copy_chorales(midi, 30)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_prepare_in_child, args=(str(midi), str(tmp_path / "c"), queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == [("ok", results[0][1])] * 3, results
    corpus = Corpus.open(tmp_path / "c")
    assert len(corpus.tokens) == corpus.index["length"].sum() > 1000
    assert not [p.name for p in (tmp_path / "c").iterdir() if ".tmp" in p.name]


def _hold_lock(cache: str, locked, release) -> None:
    import fcntl

    fd = os.open(os.path.join(cache, ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    locked.set()
    release.wait(60)


def test_prepare_waits_for_the_lock(tmp_path):
    write_tune(tmp_path / "midi" / "a.mid", [60, 62])
    cache = tmp_path / "c"
    cache.mkdir()
    ctx = mp.get_context("fork")
    locked, release, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    holder = ctx.Process(target=_hold_lock, args=(str(cache), locked, release))
    holder.start()
    assert locked.wait(30)
    p = ctx.Process(target=_prepare_in_child, args=(str(tmp_path / "midi"), str(cache), queue))
    p.start()
    time.sleep(1.0)
    assert queue.empty() and not (cache / "corpus.json").exists()  # waiting, wrote nothing
    release.set()
    holder.join(10)
    assert queue.get(timeout=60) == ("ok", 1)
    p.join(10)


def test_a_truncated_cache_is_detected_on_open_and_rebuilt(tmp_path):
    midi = tmp_path / "midi"
    for i in range(5):
        write_tune(midi / f"t{i}.mid", [60 + i, 64 + i, 67 + i])
    prepare(midi, tmp_path / "c")
    good = np.load(tmp_path / "c" / "tokens.npy").copy()
    with open(tmp_path / "c" / "tokens.npy", "r+b") as f:
        f.truncate(128)  # as the race of issue 10 left it
    with pytest.raises(ComposerError, match=r"damaged \(tokens.npy is 128 bytes.*prepare"):
        Corpus.open(tmp_path / "c")
    report = prepare(midi, tmp_path / "c")  # same files: was "from cache" and never repaired
    assert report.repaired and "tokens.npy is 128 bytes" in report.repaired
    np.testing.assert_array_equal(Corpus.open(tmp_path / "c").tokens, good)
    assert prepare(midi, tmp_path / "c").repaired is None


# --------------------------------------------------------------------- crashes and hangs


def test_a_file_name_that_is_not_utf8_loads_and_the_rest_carry_on(tmp_path):
    midi = tmp_path / "midi"
    write_tune(midi / "good.mid", [60, 62, 64])
    bad = os.path.join(os.fsencode(midi), b"caf\xe9.mid")
    shutil.copy(midi / "good.mid", bad)
    with open(os.path.join(os.fsencode(midi), b"n\xffotes.mid"), "wb") as f:
        f.write(b"not midi")
    report = prepare(midi, tmp_path / "c")
    assert report.files_found == 3
    assert "no MThd" in dict(report.skipped)["n\udcffotes.mid"]
    corpus = Corpus.open(tmp_path / "c")
    # one of good.mid / café.mid is the duplicate of the other; the real name is kept
    assert len(corpus.paths) == 1 and report.files_loaded == 1
    tsv = (tmp_path / "c" / "skipped.tsv").read_text(encoding="utf-8")
    assert "n\ufffdotes.mid\tnot a MIDI file" in tsv
    assert prepare(midi, tmp_path / "c").files_parsed == 0  # the cache's fast path works too
    assert corpus_mod.display_name("caf\udce9.mid") == "caf\ufffd.mid"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_without_reading_them(device):
    start = time.monotonic()
    with pytest.raises(MidiError, match="not a regular file"):
        read_bytes(device)
    assert time.monotonic() - start < 1


def test_a_named_pipe_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "seed.mid"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(MidiError, match="named pipe"):
        load(fifo)
    (tmp_path / "ck").mkdir()
    os.mkfifo(tmp_path / "ck" / "checkpoint.json")
    with pytest.raises(CheckpointError, match="checkpoint.json: not a regular file"):
        load_checkpoint(tmp_path / "ck")
    assert time.monotonic() - start < 2


def test_a_huge_checkpoint_json_is_refused_unread(tmp_path, monkeypatch):
    path = save_tiny(tmp_path / "ck")
    monkeypatch.setattr(ckptio, "MAX_META_BYTES", 100)
    with pytest.raises(CheckpointError, match=r"checkpoint.json: file is [\d,]+ bytes \(limit"):
        load_checkpoint(path)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_old(tmp_path,
                                                                           monkeypatch):
    path = save_tiny(tmp_path / "ck", step=1)
    monkeypatch.setattr(ckpt, "write_file", _no_space)
    with pytest.raises(DiskFullError) as e:
        save_tiny(path, step=2)
    assert isinstance(e.value, CheckpointError)
    assert str(e.value).startswith("disk full: no space left to write checkpoint")
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    assert load_checkpoint(path).step == 1


def test_disk_full_while_preparing_is_one_line(tmp_path, monkeypatch):
    write_tune(tmp_path / "midi" / "a.mid", [60, 62])
    real = np.lib.format.open_memmap

    def full(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    with pytest.raises(DiskFullError, match=r"^disk full: no space left to write .*tokens.npy"):
        prepare(tmp_path / "midi", tmp_path / "c")
    assert not [p for p in (tmp_path / "c").iterdir() if ".tmp" in p.name]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 400 KiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_during_save_and_prepare(tiny_disk, tmp_path):
    small = ComposerLSTM(TINY)
    save_tiny(tiny_disk / "ck", step=1, model=small)
    big = ComposerLSTM(ModelConfig(embed_dim=64, hidden=128, layers=1))  # ~0.5 MB
    with pytest.raises(DiskFullError, match="^disk full: .*intact"):
        save_checkpoint(tiny_disk / "ck", big, big.config, EVENTS, train_config={}, step=2,
                        metrics={}, data={})
    assert load_checkpoint(tiny_disk / "ck").step == 1
    for i, path in enumerate(sorted(BACH.glob("*.mid"))[:40]):
        shutil.copy(path, (tmp_path / "m").mkdir(exist_ok=True) or tmp_path / "m" / f"{i}.mid")
    fs = os.statvfs(tiny_disk)
    (tiny_disk / "filler").write_bytes(b"\0" * (fs.f_bavail * fs.f_frsize - 30_000))
    with pytest.raises(DiskFullError, match="^disk full"):
        prepare(tmp_path / "m", tiny_disk / "cache")


@pytest.mark.parametrize("field, value, words", [
    ("lr", math.inf, "lr must be a finite number > 0"),
    ("lr", math.nan, "lr must be a finite number"),
    ("lr", 0.0, "lr must be"),
    ("lr", -1e-3, "lr must be"),
    ("grad_clip", math.inf, "grad_clip must be a finite"),
    ("batch_size", 100_000, "batch_size must be a whole number from 1 to 65,536"),
    ("seq_len", 10**9, "seq_len must be"),
    ("steps", 2.5, "steps must be a whole number"),
    ("seed", 2**64, "seed must be a whole number from 0 to 2\\*\\*63-1"),
])
def test_absurd_train_settings_are_refused_up_front(field, value, words):
    with pytest.raises(TrainingError, match=words):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field, value, words", [
    ("hidden", 10**9, "hidden 1000000000 is over the limit"),
    ("layers", 1_000_000, "layers 1000000 is over the limit of 64"),
    ("dropout", 1.0, "dropout must be a number in"),
    ("dropout", math.nan, "dropout must be a number in"),
])
def test_absurd_model_sizes_are_refused_before_allocating(field, value, words):
    with pytest.raises(ModelError, match=words):
        ModelConfig(**{field: value})


def test_memory_is_estimated_before_a_model_is_built(monkeypatch):
    config = ModelConfig(hidden=20_000, layers=8, embed_dim=4096)
    assert config.num_parameters() > 10**10
    small = ModelConfig(hidden=40, layers=3, embed_dim=8)
    assert small.num_parameters() == ComposerLSTM(small).num_parameters()
    with pytest.raises(ModelError, match=r"needs about \d+\.\d GiB .* but only"):
        check_fits(config, training=True)
    assert estimate_bytes(TINY, 4, 32, training=True) < 10 << 20
    assert check_fits(TINY, 4, 32, training=True) > 0


def test_training_that_cannot_fit_is_refused(small_corpus, tmp_path, monkeypatch):
    import composer.model.lstm as model_mod

    monkeypatch.setattr(model_mod, "available_memory", lambda device="cpu": 1 << 20)
    with pytest.raises(TrainingError, match="needs about .* GiB of memory .* but only"):
        train(small_corpus, tmp_path / "r", TINY, fast(batch_size=4096, seq_len=4096),
              device="cpu")
    assert not (tmp_path / "r" / "latest").exists()


def test_a_checkpoint_with_non_finite_weights_is_refused_at_load(tmp_path):
    model = ComposerLSTM(TINY)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    path = save_tiny(tmp_path / "ck", model=model)
    with pytest.raises(CheckpointError, match="head.weight holds non-finite values"):
        load_checkpoint(path)


@pytest.mark.parametrize("hidden", [8000, 10**7])
def test_a_checkpoint_claiming_a_huge_model_is_refused_without_allocating(tmp_path, hidden):
    path = save_tiny(tmp_path / "ck")
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["model"]["hidden"] = hidden
    (path / "checkpoint.json").write_text(json.dumps(meta))
    start = time.monotonic()
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        read_info(path)
    assert time.monotonic() - start < 2 and "\n" not in str(e.value)
    assert ("is over the limit" if hidden > 32768 else "the model config (hidden 8000") \
        in str(e.value)


def test_seeds_are_checked_into_range():
    assert check_seed(2**63 - 1) == 2**63 - 1 and check_seed("42") == 42
    assert check_seed(7.0) == 7
    for bad in (2**64, -1, "2**64", 1.5, True, None):
        with pytest.raises(ComposerError, match="seed must be a whole number"):
            check_seed(bad)


# ------------------------------------------------------------------------ clear messages


def test_prepare_of_a_folder_without_midi_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no music here")
    with pytest.raises(ComposerError, match=r"^no MIDI files found in .*empty "
                                            r"\(looked for \.mid \.midi \.kar \.rmi"):
        prepare(tmp_path / "empty", tmp_path / "c")


def test_a_training_folder_stands_for_its_best_checkpoint(tmp_path):
    save_tiny(tmp_path / "run" / "latest", step=9)
    assert resolve_checkpoint_path(tmp_path / "run")[0] == tmp_path / "run" / "latest"
    save_tiny(tmp_path / "run" / "best", step=5)
    path, note = resolve_checkpoint_path(tmp_path / "run")
    assert path == tmp_path / "run" / "best" and "training folder" in note
    assert load_checkpoint(path).step == 5
    assert resolve_checkpoint_path(path) == (path, None)
    assert resolve_checkpoint_path(tmp_path / "nothing") == (tmp_path / "nothing", None)


def _drum_file(path: Path, drums: bool) -> Path:
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    if drums:
        for _ in range(3):
            track.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0))
            track.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=240))
    track.append(mido.MetaMessage("end_of_track", time=10))
    mid.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def test_no_notes_mentions_drums_only_when_drums_were_left_out(tmp_path):
    _drum_file(tmp_path / "m" / "silent.mid", drums=False)
    _drum_file(tmp_path / "m" / "drums.mid", drums=True)
    write_tune(tmp_path / "m" / "tune.mid", [60, 62])
    reasons = dict(prepare(tmp_path / "m", tmp_path / "c").skipped)
    assert reasons["silent.mid"] == "no notes"
    assert reasons["drums.mid"] == "no notes (3 drum notes left out; --keep-drums keeps them)"
    assert load(tmp_path / "m" / "drums.mid", LoadConfig(keep_drums=True)).drums_left_out == 0


def test_every_checkpoint_file_gets_the_same_mode(tmp_path):
    old = os.umask(0o077)
    try:
        path = save_tiny(tmp_path / "ck", train_state={"x": torch.zeros(2)})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes == dict.fromkeys(["model.safetensors", "checkpoint.json", "train_state.pt"],
                                  0o644)


def test_info_says_resumable_only_when_the_train_state_checks_out(tmp_path):
    path = save_tiny(tmp_path / "ck", train_state={"x": torch.zeros(2)})
    info = read_info(path)
    assert info["resumable"] and info["resume_problem"] is None
    (path / "train_state.pt").write_bytes(b"garbage")
    info = read_info(path)
    assert info["has_train_state"] and not info["resumable"]
    assert "train_state.pt" in info["resume_problem"]
    assert read_info(save_tiny(tmp_path / "ck2"))["resume_problem"] == "no training state saved"


def test_note_names_parse_to_midi_pitches():
    assert [parse_pitch(n) for n in ("C4", "c4", "F#3", "Bb2", "B♭2", "E#4", "Cb4", "C-1",
                                       "G9", "60", " A4 ", "F##3")] == \
        [60, 60, 54, 46, 46, 65, 59, 0, 127, 60, 69, 55]
    for bad in ("H2", "C", "C#", "Cbbb4", "G#9", "128", "", "/dev/zero"):
        with pytest.raises(MidiError):
            parse_pitch(bad)


def test_a_checkpoint_too_big_for_free_memory_is_refused_before_building(tmp_path,
                                                                          monkeypatch):
    import composer.model.lstm as model_mod

    path = save_tiny(tmp_path / "ck")
    monkeypatch.setattr(model_mod, "available_memory", lambda device="cpu": 1000)

    def meta_only(config, device=None):
        assert device == "meta", "a real model was built"
        return ComposerLSTM(config, device=device)

    monkeypatch.setattr(ckpt, "ComposerLSTM", meta_only)
    with pytest.raises(CheckpointError, match=r"the model in .*ck needs about .* but only"):
        load_checkpoint(path)
