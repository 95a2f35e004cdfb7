"""Corpus ingestion: scan, isolated parallel workers, content-keyed cache, stable splits, CLI."""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BACH, write_tune

from composer.cli.main import main
from composer.core.isolate import run_isolated
from composer.core.messages import ComposerError
from composer.corpus import prepare as corpus
from composer.corpus.cache import Corpus, CorpusConfig, split_of
from composer.corpus.prepare import prepare
from composer.midi.io import LoadConfig, load
from composer.tokens.performance import EventConfig, decode, encode, quantise


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "midi"
    for i in range(6):
        write_tune(d / f"tune{i}.mid", [60 + i, 62 + i, 64 + i])
    write_tune(d / "sub" / "deeper" / "nested.MIDI", [50, 52])
    (d / "empty.mid").write_bytes(b"")
    (d / "notes.txt.mid").write_text("this is not a MIDI file\n")
    (d / "readme.txt").write_text("ignored: not a MIDI suffix")
    shutil.copy(d / "tune0.mid", d / "copy_of_tune0.mid")
    return d


def test_prepare_reads_good_files_and_skips_bad_ones_with_reasons(folder, tmp_path):
    report = prepare(folder, tmp_path / "cache", workers=2)
    assert report.files_found == 10
    assert report.files_loaded == 7
    reasons = dict(report.skipped)
    assert reasons["empty.mid"] == "empty file"
    assert "no MThd" in reasons["notes.txt.mid"]
    assert reasons["tune0.mid"].startswith("duplicate of") or \
        reasons["copy_of_tune0.mid"].startswith("duplicate of")
    report_file = (tmp_path / "cache" / "skipped.tsv").read_text().splitlines()
    assert report_file[0] == "path\treason" and len(report_file) == 1 + 3
    assert report.notes == 6 * 3 + 2
    assert sum(report.split_files.values()) == 7


def test_cache_holds_exactly_the_encoded_files(folder, tmp_path):
    prepare(folder, tmp_path / "cache", workers=1)
    c = Corpus.open(tmp_path / "cache")
    assert len(c.paths) == 7 and c.tokens.dtype == np.uint16
    assert isinstance(c.tokens, np.memmap)
    for i, rel in enumerate(c.paths):
        expected = encode(load(folder / rel).notes, c.config.events)
        np.testing.assert_array_equal(c.sequence(i), expected)
    assert sorted(np.concatenate([c.files(s) for s in corpus.SPLITS]).tolist()) == list(range(7))
    with pytest.raises(ComposerError, match="unknown split"):
        c.files("training")


def test_second_run_parses_nothing_and_changes_are_picked_up(folder, tmp_path):
    cache = tmp_path / "cache"
    first = prepare(folder, cache)
    stamp = (cache / "tokens.npy").stat().st_mtime_ns
    second = prepare(folder, cache)
    assert second.files_parsed == 0
    assert (second.files_loaded, second.events) == (first.files_loaded, first.events)
    assert (cache / "tokens.npy").stat().st_mtime_ns == stamp  # nothing rewritten
    write_tune(folder / "tune1.mid", [70, 71, 72, 73])  # changed content
    os.utime(folder / "tune1.mid", ns=(1, 1))
    write_tune(folder / "new.mid", [40, 41])
    third = prepare(folder, cache)
    assert third.files_parsed == 2
    assert third.files_loaded == first.files_loaded + 1
    assert third.notes == first.notes + 1 + 2


def test_settings_change_invalidates_cached_objects(folder, tmp_path):
    cache = tmp_path / "cache"
    prepare(folder, cache)
    coarse = CorpusConfig(events=EventConfig(steps_per_second=50, max_shift_steps=50))
    report = prepare(folder, cache, coarse)
    assert report.files_parsed == report.files_found
    assert Corpus.open(cache).config == coarse


def test_split_is_a_stable_function_of_content(folder, tmp_path):
    config = CorpusConfig(valid_fraction=0.3, test_fraction=0.3)
    prepare(folder, tmp_path / "a", config)
    a = Corpus.open(tmp_path / "a")
    before = {p: int(a.index["split"][i]) for i, p in enumerate(a.paths)}
    for i in range(20):  # the corpus grows: existing files keep their split
        write_tune(folder / f"more{i}.mid", [30 + i, 31 + i])
    prepare(folder, tmp_path / "b", config)
    b = Corpus.open(tmp_path / "b")
    after = {p: int(b.index["split"][i]) for i, p in enumerate(b.paths)}
    assert all(after[p] == s for p, s in before.items())
    assert set(after.values()) == {0, 1, 2}  # 27 files at 40/30/30: every split is used
    assert split_of("00000000" + "0" * 24, config) == 2
    assert split_of("ffffffff" + "0" * 24, config) == 0


def test_bad_split_fractions_are_an_error():
    with pytest.raises(ComposerError, match="sum to less than 1"):
        CorpusConfig(valid_fraction=0.6, test_fraction=0.5)


def test_config_round_trips_through_dict():
    config = CorpusConfig(events=EventConfig(velocity_bins=16), valid_fraction=0.1)
    assert CorpusConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def _crash_on_odd(jobs: list[int]) -> list[dict]:
    if any(job % 2 for job in jobs):
        os._exit(3)
    return [{"value": job} for job in jobs]


def _stall_on_three(jobs: list[int]) -> list[dict]:
    if 3 in jobs:
        time.sleep(60)
    return [{"value": job} for job in jobs]


def _allocate(jobs: list[int]) -> list[dict]:
    out = []
    for job in jobs:
        try:
            out.append({"size": len(bytearray(job))})
        except MemoryError:
            out.append({"reason": "out of memory"})
    return out


def test_workers_cannot_eat_the_machine():
    jobs = [1 << 20, 8 << 30, 1 << 20]  # the middle job asks for 8 GiB
    results = dict(run_isolated(_allocate, jobs, workers=1, memory_headroom=512 << 20))
    assert results == {0: {"size": 1 << 20}, 1: {"reason": "out of memory"}, 2: {"size": 1 << 20}}


def _batch_sizes(jobs: list[int]) -> list[dict]:
    return [{"batch": len(jobs)} for _ in jobs]


def test_batches_respect_count_and_cost():
    results = dict(run_isolated(_batch_sizes, list(range(12)), workers=1, batch=4,
                                cost=[10] * 6 + [100] * 6, max_cost=50))
    assert [results[i]["batch"] for i in range(12)] == [3, 3, 3, 3, 3, 3] + [1] * 6


def test_a_crashing_worker_costs_one_job_not_the_run():
    results = dict(run_isolated(_crash_on_odd, list(range(10)), workers=2, batch=4,
                                failure=corpus.parse_failure))
    assert sorted(results) == list(range(10))
    for i, r in results.items():
        if i % 2:
            assert r["reason"] == "parser crashed (exit code 3)"
        else:
            assert r == {"value": i}


def test_a_stalled_worker_is_killed_after_the_timeout():
    start = time.monotonic()
    results = dict(run_isolated(_stall_on_three, list(range(6)), workers=1, timeout=0.5, batch=3,
                                failure=corpus.parse_failure))
    assert time.monotonic() - start < 10
    assert results[3]["reason"] == "parse took longer than 0.5 s"
    assert all(results[i] == {"value": i} for i in (0, 1, 2, 4, 5))


def test_prepare_survives_a_parser_that_crashes(folder, tmp_path, monkeypatch):
    real = corpus.ingest_files

    def crashing(paths, *args):
        if any(path.endswith("tune3.mid") for path in paths):
            faulthandler.disable()  # pytest's handler would print the child's stack
            os.abort()
        return real(paths, *args)

    monkeypatch.setattr(corpus, "ingest_files", crashing)
    report = prepare(folder, tmp_path / "cache", workers=2)
    assert dict(report.skipped)["tune3.mid"].startswith("parser crashed")
    assert report.files_loaded == 6


def test_cli_prepare_prints_the_summary(folder, tmp_path):
    out = tmp_path / "cache"
    result = CliRunner().invoke(main, ["prepare", str(folder), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "files read              7" in result.output
    assert "files skipped           3" in result.output
    assert "empty file" in result.output
    assert "hours of music" in result.output
    again = CliRunner().invoke(main, ["prepare", str(folder), "--out", str(out), "-q"])
    assert "(0 parsed, 10 from cache)" in again.output


def test_cli_reports_library_errors_without_traceback(folder, tmp_path):
    result = CliRunner().invoke(
        main, ["prepare", str(folder), "--out", str(tmp_path / "c"), "--valid", "0.6",
               "--test", "0.6"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(not BACH.is_dir(), reason="bundled corpus not built")
def test_bundled_corpus_loads_completely_and_round_trips(tmp_path):
    report = prepare(BACH, tmp_path / "cache", workers=2)
    # every file loads; only exact duplicates (same bytes) are kept once
    assert all(reason.startswith("duplicate of") for _, reason in report.skipped)
    assert report.files_loaded + len(report.skipped) == report.files_found > 300
    c = Corpus.open(tmp_path / "cache")
    for i, rel in enumerate(c.paths):
        notes = load(BACH / rel).notes
        got = decode(c.sequence(i), c.config.events)
        want = quantise(notes, c.config.events)
        for name in want.dtype.names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{rel}: {name}")


def test_a_batch_of_only_unreadable_files_is_reported_file_by_file(tmp_path):
    for i in range(3):
        write_tune(tmp_path / "midi" / f"t{i}.mid", [60, 62])
    config = CorpusConfig(load=LoadConfig(max_file_bytes=10))
    report = prepare(tmp_path / "midi", tmp_path / "cache", config, workers=1)
    assert report.files_loaded == 0
    size = (tmp_path / "midi" / "t0.mid").stat().st_size
    assert {r for _, r in report.skipped} == {f"file is {size} bytes (limit 10 bytes)"}


def test_cli_prepare_bounds_the_file_size(tmp_path):
    write_tune(tmp_path / "midi" / "ok.mid", [60, 62])
    (tmp_path / "midi" / "huge.mid").write_bytes(b"MThd" + bytes(2 << 20))
    result = CliRunner().invoke(main, ["prepare", str(tmp_path / "midi"), "--out",
                                       str(tmp_path / "c"), "--max-file-mb", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "files read              1" in result.output
    assert "file is N MiB (limit N MiB)" in result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_files_are_skipped_without_being_opened(tmp_path):
    write_tune(tmp_path / "midi" / "ok.mid", [60, 62])
    os.mkfifo(tmp_path / "midi" / "pipe.mid")  # opening it would block forever
    (tmp_path / "midi" / "folder.mid").mkdir()
    write_tune(tmp_path / "midi" / "folder.mid" / "inside.mid", [64])
    start = time.monotonic()
    report = prepare(tmp_path / "midi", tmp_path / "cache", workers=1)
    assert time.monotonic() - start < 10
    assert report.files_loaded == 2  # ok.mid and folder.mid/inside.mid
    assert dict(report.skipped) == {"pipe.mid": "cannot read file: not a regular file"}


def test_an_edit_keeping_size_and_mtime_is_read_again(folder, tmp_path):
    # cp -p, rsync -a and tar keep size and mtime through an edit: the cache must not
    cache, tune = tmp_path / "cache", folder / "tune1.mid"
    prepare(folder, cache)
    before, st = tune.read_bytes(), tune.stat()
    write_tune(tune, [50, 52, 53])  # other notes, the same number of bytes
    assert len(tune.read_bytes()) == len(before) and tune.read_bytes() != before
    os.utime(tune, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (tune.stat().st_size, tune.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    report = prepare(folder, cache)
    assert report.files_parsed == 1  # before: 0, and the old notes were served
    c = Corpus.open(cache)
    i = c.paths.index("tune1.mid")
    np.testing.assert_array_equal(c.sequence(i), encode(load(tune).notes, c.config.events))


def test_a_renamed_file_is_not_parsed_again(folder, tmp_path):
    cache = tmp_path / "cache"
    first = prepare(folder, cache)
    os.rename(folder / "tune1.mid", folder / "renamed.mid")
    again = prepare(folder, cache)
    assert again.files_parsed == 0 and again.files_loaded == first.files_loaded
    assert "renamed.mid" in Corpus.open(cache).paths
