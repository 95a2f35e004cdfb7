"""The incremental corpus cache is keyed by file content, not by size + mtime (issue 19, case 6):
touched, renamed and duplicated files, and a manifest of the old size + mtime format
(``tests/test_corpus.py`` has the same-size, same-mtime edit)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from time import time_ns

import numpy as np
import pytest
from helpers import write_tune
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from composer.corpus import _walk, scan
from composer.corpus.cache import Corpus
from composer.corpus.prepare import prepare


def _same_size_edit(path: Path, pitches: list[int]) -> None:
    """Rewrite ``path`` with other notes but the same size and mtime (as `cp -p`/`rsync -a`)."""
    st = path.stat()
    before = path.read_bytes()
    write_tune(path, pitches)
    assert path.read_bytes() != before and path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unchanged_and_renamed_files_are_not_parsed_again(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    write_tune(src / "a.mid", [60, 62, 64])
    write_tune(src / "b.mid", [50, 52, 54])
    shutil.copy(src / "b.mid", src / "twin.mid")  # a duplicate: listed as such, per path
    cache = tmp_path / "cache"
    first = prepare(src, cache, workers=0)
    assert first.files_parsed == 3 and ("twin.mid", "duplicate of b.mid") in first.skipped
    os.utime(src / "a.mid", ns=(5, 5))  # touched, same content
    again = prepare(src, cache, workers=0)
    assert again.files_parsed == 0
    assert again.skipped == first.skipped and again.events == first.events
    (src / "a.mid").rename(src / "moved.mid")
    moved = prepare(src, cache, workers=0)
    assert moved.files_parsed == 0
    assert moved.files_loaded == first.files_loaded and moved.events == first.events
    assert "moved.mid" in Corpus.open(cache).paths


def test_cache_written_by_the_size_mtime_format_is_re_read(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    write_tune(src / "a.mid", [60, 62, 64])
    cache = tmp_path / "cache"
    prepare(src, cache, workers=0)
    manifest = json.loads((cache / "manifest.json").read_text())
    st = (src / "a.mid").stat()
    manifest["files"]["a.mid"].update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    (cache / "manifest.json").write_text(json.dumps(manifest))  # as the old format wrote it
    _same_size_edit(src / "a.mid", [70, 72, 74])
    report = prepare(src, cache, workers=0)
    assert report.files_parsed == 1
    c = Corpus.open(cache)
    fresh = tmp_path / "fresh"
    prepare(src, fresh, workers=0)
    assert c.sequence(0).tolist() == Corpus.open(fresh).sequence(0).tolist()


@pytest.mark.parametrize("walk", ["c", "python"])
def test_a_warm_prepare_stats_files_and_reads_none(tmp_path, monkeypatch, walk):
    import composer.corpus.scan as scan

    monkeypatch.setattr(scan, "RACY_NS", 0)  # trust stats at once (no 2 s wait)
    if walk == "python":  # as where the C walk is not built
        monkeypatch.setattr(scan, "_walk_stat_keys", None)
    src = tmp_path / "midi"
    src.mkdir()
    write_tune(src / "a.mid", [60, 62, 64])
    write_tune(src / "b.mid", [50, 52, 54])
    cache = tmp_path / "cache"
    first = prepare(src, cache, workers=0)

    def no_read(*args, **kwargs):
        raise AssertionError("a file with an unchanged stat was read")

    with monkeypatch.context() as m:
        m.setattr(scan, "read_bytes", no_read)
        again = prepare(src, cache, workers=0)  # fast path: the stat stamp
        assert again.files_parsed == 0 and again.events == first.events
        write_tune(src / "c.mid", [70])  # a new file: the others are still not read
        m.setattr(scan, "read_bytes", lambda path, config: (
            no_read() if not str(path).endswith("c.mid") else Path(path).read_bytes()))
        added = prepare(src, cache, workers=0)
        assert added.files_parsed == 1 and added.files_loaded == 3
    _same_size_edit(src / "a.mid", [71, 73, 75])  # size and mtime kept, ctime moves
    edited = prepare(src, cache, workers=0)
    assert edited.files_parsed == 1
    fresh = tmp_path / "fresh"
    prepare(src, fresh, workers=0)
    assert np.array_equal(Corpus.open(cache).tokens, Corpus.open(fresh).tokens)


def test_the_manifest_is_the_json_of_its_records(tmp_path):
    """The manifest is joined from records encoded as they came back from the workers: it
    reads back, and is byte for byte what ``json.dumps`` writes of it, after a cold prepare
    and after one that adds a file to records read from the last run."""
    src = tmp_path / "mïdi"
    src.mkdir()
    write_tune(src / "a\tb.mid", [60, 62, 64])
    (src / "broken.mid").write_bytes(b"MThd")
    cache = tmp_path / "cache"
    for added in ("c.mid", "d.mid"):
        prepare(src, cache, workers=1)
        text = (cache / "manifest.json").read_text()
        manifest = json.loads(text)
        assert text == json.dumps(manifest) + "\n"
        assert {"a\tb.mid", "broken.mid"} <= set(manifest["files"])
        write_tune(src / added, [70, 72])
    assert manifest["files"]["broken.mid"]["reason"]
    assert manifest["files"]["c.mid"]["events"] > 0


def _walked(root: Path, edge_ns: int) -> dict[str, tuple] | None:
    """The C walk's records as path -> (device, inode, size, mtime ns, ctime ns)."""
    walked = _walk.stat_keys(str(root), scan._SUFFIX_BYTES, edge_ns)
    if walked is None:
        return None
    count, blob = walked
    out, at = {}, 0
    while at < len(blob):
        end = blob.index(b"\0", at)
        out[blob[at:end].decode("utf-8", "surrogateescape")] = tuple(
            np.frombuffer(blob, np.int64, 5, end + 1).tolist())
        at = end + 1 + 40
    assert len(out) == count and list(out) == sorted(out, key=os.fsencode)
    return out


def test_the_c_walk_finds_the_files_scan_stat_finds_with_their_keys(tmp_path):
    src = tmp_path / "midi"
    for rel in ("a.mid", "B.MID", "sub/c.midi", "sub/deeper/d.Kar", "é/曲.mid", "z.smf"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        write_tune(src / rel, [60, 62])
    (src / "notes.txt").write_text("not MIDI")
    (src / ".hidden").mkdir()
    write_tune(src / ".hidden" / "skipped.mid", [60])
    write_tune(src / ".dot.mid", [60])
    os.symlink(src / "sub", src / "linked")  # a link to a folder: not followed
    os.symlink(src / "a.mid", src / "alias.mid")  # a link to a file: stat'ed through it
    walked = _walked(src, time_ns())
    stats = scan.scan_stat(src)
    assert walked is not None and set(walked) == set(stats)
    assert "sub/deeper/d.Kar" in walked and "é/曲.mid" in walked
    for rel, st in stats.items():
        assert walked[rel] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                               st.st_ctime_ns)
    _same_size_edit(src / "a.mid", [61, 63])  # size and mtime kept: the ctime tells
    again = _walked(src, time_ns())
    assert again["a.mid"] != walked["a.mid"] and again["B.MID"] == walked["B.MID"]


def test_the_c_walk_declines_what_it_cannot_vouch_for(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    write_tune(src / "a.mid", [60, 62])
    now = time_ns()
    assert _walked(src, now) is not None
    assert _walked(src, now - 10**12) is None  # a file newer than the edge: not trusted
    assert _walked(tmp_path / "missing", now) is None
    (tmp_path / "empty").mkdir()
    assert _walked(tmp_path / "empty", now) is None  # no file: the scan says so
    kelvin = src / "b.\u212aAR"  # str.lower() reads it as "b.kar": scan_stat takes it
    write_tune(kelvin, [60])
    assert "b.\u212aAR" in scan.scan_stat(src) and _walked(src, time_ns()) is None
    kelvin.unlink()
    os.symlink(tmp_path / "empty", src / "folder.mid")  # a MIDI name that is no file
    assert _walked(src, time_ns()) is None


_NAME = hs.text(hs.sampled_from("aZé曲._-"), min_size=1, max_size=6).filter(
    lambda name: name.strip("."))  # not "." or "..": the tree stays in its folder
_SUFFIX = hs.sampled_from(["", ".mid", ".MID", ".Midi", ".kar", ".txt", ".smf", ".rmi", ".mi"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hs.lists(hs.tuples(hs.lists(_NAME, max_size=2), _NAME, _SUFFIX), min_size=1,
                max_size=12))
def test_the_c_walk_and_scan_stat_agree_on_any_tree(tmp_path_factory, entries):
    """Random trees of names (dots, case, non-ASCII, nesting): the C walk keys exactly the
    files scan_stat finds, or declines where scan_stat finds none."""
    src = tmp_path_factory.mktemp("tree")
    for folders, stem, suffix in entries:
        path = src.joinpath(*folders, stem + suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(b"MThd")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # a name taken by a file and a folder at once
    stats = scan.scan_stat(src)
    walked = _walked(src, time_ns() + 10**12)
    if not stats:
        assert walked is None
    else:
        assert walked is not None and set(walked) == set(stats)
