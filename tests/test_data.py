"""Tests of composer.data: training windows, DDP shards, resumable state, eval, augmentation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import BACH, write_tune
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.core.messages import ComposerError
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.model.lstm import IGNORE_INDEX
from composer.tokens.performance import (
    NOTE_OFF,
    NOTE_ON,
    TIME_SHIFT,
    EventConfig,
    Vocabulary,
    canonical_order,
    decode,
)
from composer.training.augment import augment_tokens, transpose_range
from composer.training.config import AugmentConfig, DataError
from composer.training.data import WindowSampler, eval_batches

T, B = 32, 16  # small windows keep the tests fast


@pytest.fixture(scope="session")
def bach(tmp_path_factory) -> Corpus:
    cache = tmp_path_factory.mktemp("bach-cache")
    prepare(BACH, cache, workers=1)
    return Corpus.open(cache)


@pytest.fixture(scope="session")
def extremes(tmp_path_factory) -> Corpus:
    """Train-only corpus of three tunes: at the top of the pitch range, the bottom, the middle."""
    midi = tmp_path_factory.mktemp("extremes")
    write_tune(midi / "top.mid", [127, 126, 125, 126] * 20, step=120)
    write_tune(midi / "bottom.mid", [0, 1, 2, 1] * 20, step=120)
    write_tune(midi / "middle.mid", [60, 62, 64, 62] * 20, step=120)
    cache = midi / "cache"
    prepare(midi, cache, CorpusConfig(valid_fraction=0, test_fraction=0), workers=1)
    return Corpus.open(cache)


def file_of(corpus: Corpus, pos: np.ndarray) -> np.ndarray:
    return np.searchsorted(corpus.index["offset"], pos, side="right") - 1


def batches(sampler: WindowSampler, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [sampler.next_batch() for _ in range(n)]


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (x1, y1), (x2, y2) in zip(a, b, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


# --- sampler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("augment", [None, AugmentConfig()])
def test_batches_have_shape_dtype_and_shifted_targets(bach, augment):
    sampler = WindowSampler(bach, "train", T, B, augment, seed=1)
    for inputs, targets in batches(sampler, 5):
        assert inputs.shape == targets.shape == (B, T)
        assert inputs.dtype == targets.dtype == torch.int64
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
        both = torch.cat([inputs, targets])
        assert both.min() >= 0 and both.max() < len(Vocabulary(bach.config.events))


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_windows_are_whole_inside_one_file_of_the_split(bach, split):
    sampler = WindowSampler(bach, split, T, B, seed=2)
    wanted = set(bach.files(split).tolist())
    for _ in range(20):
        start = sampler.window_starts()
        inputs, targets = sampler.next_batch()
        f = file_of(bach, start)
        assert set(f.tolist()) <= wanted
        assert (start + T + 1 <= bach.index["offset"][f] + bach.index["length"][f]).all()
        raw = np.stack([bach.tokens[s : s + T + 1] for s in start]).astype(np.int64)
        assert np.array_equal(inputs.numpy(), raw[:, :-1])
        assert np.array_equal(targets.numpy(), raw[:, 1:])


def test_short_files_are_skipped_and_counted(bach):
    seq_len = 600
    sampler = WindowSampler(bach, "train", seq_len, B, seed=0)
    length = bach.index["length"][bach.files("train")]
    assert sampler.skipped_files == int((length < seq_len + 1).sum()) > 0
    assert sampler.n_files == int((length >= seq_len + 1).sum())
    f = file_of(bach, np.concatenate([sampler.window_starts(s) for s in range(20)]))
    assert (bach.index["length"][f] >= seq_len + 1).all()
    with pytest.raises(DataError, match="no window"):
        WindowSampler(bach, "train", 10**6, B)


def test_same_seed_same_batches_other_seed_other_batches(bach):
    aug = AugmentConfig()
    a = batches(WindowSampler(bach, "train", T, B, aug, seed=7), 4)
    assert_same(a, batches(WindowSampler(bach, "train", T, B, aug, seed=7), 4))
    other = batches(WindowSampler(bach, "train", T, B, aug, seed=8), 1)
    assert not torch.equal(a[0][0], other[0][0])


def test_state_dict_resume_reproduces_the_next_batches(bach, tmp_path):
    aug = AugmentConfig()
    sampler = WindowSampler(bach, "train", T, B, aug, seed=3)
    batches(sampler, 3)
    torch.save({"sampler": sampler.state_dict()}, tmp_path / "ckpt.pt")
    expected = batches(sampler, 4)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["sampler"]
    resumed = WindowSampler(bach, "train", T, B, aug, seed=3)
    resumed.load_state_dict(state)
    assert_same(batches(resumed, 4), expected)
    other = WindowSampler(bach, "train", T, B, aug, seed=4)
    with pytest.raises(DataError, match="seed"):
        other.load_state_dict(state)


def test_ranks_draw_disjoint_windows(bach):
    world = 3
    starts = [
        {int(p) for s in range(30)
         for p in WindowSampler(bach, "train", T, B, seed=5, rank=r, world_size=world)
         .window_starts(s)}
        for r in range(world)
    ]
    for r in range(world):
        assert len(starts[r]) > 100
        for q in range(r):
            assert not starts[r] & starts[q]
    one = WindowSampler(bach, "train", T, B, seed=5, rank=1, world_size=world).next_batch()
    zero = WindowSampler(bach, "train", T, B, seed=5, rank=0, world_size=world).next_batch()
    assert not torch.equal(one[0], zero[0])
    with pytest.raises(DataError):
        WindowSampler(bach, "train", T, B, rank=3, world_size=3)


def test_augmentation_is_for_the_train_split_only(bach):
    with pytest.raises(DataError, match="train split only"):
        WindowSampler(bach, "valid", T, B, AugmentConfig())
    plain = WindowSampler(bach, "valid", T, B, seed=9)
    start = plain.window_starts()
    inputs, _ = plain.next_batch()
    raw = np.stack([bach.tokens[s : s + T] for s in start])
    assert np.array_equal(inputs.numpy(), raw)  # untouched tokens


def test_disabled_augmentation_changes_nothing(bach):
    off = batches(WindowSampler(bach, "train", T, B, AugmentConfig(0, 0), seed=6), 3)
    assert_same(off, batches(WindowSampler(bach, "train", T, B, None, seed=6), 3))


def test_sampler_transposes_each_window_by_one_shift(bach):
    vocab = Vocabulary(bach.config.events)
    sampler = WindowSampler(bach, "train", T, B, AugmentConfig(transpose=3, stretch=0), seed=4)
    shifts = []
    for _ in range(20):
        start = sampler.window_starts()
        inputs, targets = sampler.next_batch()
        window = torch.cat([inputs, targets[:, -1:]], 1).numpy()
        raw = np.stack([bach.tokens[s : s + T + 1] for s in start]).astype(np.int64)
        note = raw < vocab.ranges[NOTE_OFF].stop
        diff = window - raw
        assert (diff[~note] == 0).all()
        k = diff[np.arange(B), note.argmax(axis=1)]  # (B,) shift at each window's first note
        assert (diff == np.where(note, k[:, None], 0)).all()  # one k per window
        shifts += k.tolist()
    assert set(shifts) == set(range(-3, 4))


def test_sampler_stretch_keeps_events_in_order(bach):
    vocab = Vocabulary(bach.config.events)
    shift = vocab.ranges[TIME_SHIFT]
    sampler = WindowSampler(bach, "train", T, B, AugmentConfig(transpose=0, stretch=0.3), seed=2)
    changed = 0
    for _ in range(10):
        start = sampler.window_starts()
        inputs, targets = sampler.next_batch()
        window = torch.cat([inputs, targets[:, -1:]], 1).numpy()
        for row, s in zip(window, start, strict=True):
            f = file_of(bach, np.array([s]))[0]
            rest = bach.tokens[s : bach.index["offset"][f] + bach.index["length"][f]]
            events = row[(row < shift.start) | (row >= shift.stop)]
            orig = rest[(rest < shift.start) | (rest >= shift.stop)]
            assert np.array_equal(events, orig[: len(events)])
            changed += not np.array_equal(row, rest[: T + 1])
    assert changed > B


def test_window_that_shrinks_past_its_file_end_is_left_unstretched(tmp_path):
    write_tune(tmp_path / "long.mid", [60, 62] * 5, step=970)  # notes of 101 steps
    prepare(tmp_path, tmp_path / "cache", CorpusConfig(valid_fraction=0, test_fraction=0))
    corpus = Corpus.open(tmp_path / "cache")
    tokens = corpus.sequence(0).astype(np.int64)  # VELOCITY, then ON, 100, 1, OFF per note
    assert len(tokens) == 41
    # One window position only: a factor < 1 merges each 100 + 1 shift pair, so the slice
    # comes out too short and stays as it is; a factor > 1 only changes the shift values.
    sampler = WindowSampler(corpus, "train", 40, 32, AugmentConfig(0, 0.3), seed=0)
    inputs, targets = sampler.next_batch()
    window = torch.cat([inputs, targets[:, -1:]], 1).numpy()
    kept = (window == tokens).all(axis=1)
    assert 0 < kept.sum() < len(window)
    assert (window[:, 0] == tokens[0]).all()


def test_transposition_stays_in_pitch_range_at_the_extremes(extremes):
    vocab = Vocabulary(extremes.config.events)
    sampler = WindowSampler(extremes, "train", 16, 64, AugmentConfig(3, 0.05), seed=0)
    highest, lowest = set(), set()
    for _ in range(10):
        inputs, targets = sampler.next_batch()
        window = torch.cat([inputs, targets[:, -1:]], 1).numpy()
        lo, hi = transpose_range(window, vocab)
        assert (lo <= 0).all() and (hi >= 0).all()  # every pitch is still in range
        on = window < vocab.ranges[NOTE_ON].stop
        highest |= set(window.max(axis=1, where=on, initial=-1).tolist())
        lowest |= set(window.min(axis=1, where=on, initial=999).tolist())
    assert 127 in highest and 0 in lowest  # the edges are reached but never crossed
    tokens = extremes.sequence(0)
    lo, hi = (int(x) for x in transpose_range(tokens, vocab))
    assert (lo, hi) in {(-2, 0), (0, 125)}  # top tune: 125..127; bottom: 0..2
    with pytest.raises(DataError, match="out of range"):
        augment_tokens(tokens, vocab, transpose=hi + 1)


# --- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len", [1, 17, 256])
def test_eval_batches_target_every_token_of_the_split_once(bach, seq_len):
    files = bach.files("valid")
    got = []
    for inputs, targets in eval_batches(bach, "valid", seq_len, 5):
        assert inputs.shape == targets.shape and inputs.shape[1] == seq_len
        assert inputs.dtype == targets.dtype == torch.int64 and inputs.shape[0] <= 5
        real = targets != IGNORE_INDEX
        assert torch.equal(inputs[:, 1:][real[:, :-1]], targets[:, :-1][real[:, :-1]])
        assert (real[:, :-1] | ~real[:, 1:]).all()  # padding only at the end of a row
        got.append(targets[real].numpy())
    expected = np.concatenate([bach.sequence(i)[1:] for i in files])
    assert np.array_equal(np.concatenate(got), expected)


def test_eval_batches_shard_over_ranks(bach):
    count = lambda rank, world: sum(  # noqa: E731
        int((t != IGNORE_INDEX).sum()) for _, t in eval_batches(bach, "test", 64, 4, rank, world)
    )
    total = int((bach.index["length"][bach.files("test")] - 1).sum())
    assert count(0, 1) == total == sum(count(r, 3) for r in range(3))
    assert all(count(r, 3) > 0 for r in range(3))


# --- augmentation ----------------------------------------------------------------------------


def note_steps(notes: np.ndarray, sps: int) -> tuple[np.ndarray, np.ndarray]:
    return np.rint(notes["start"] * sps).astype(np.int64), np.rint(notes["end"] * sps)


@pytest.mark.parametrize("k", [-3, -1, 0, 2, 3])
def test_transposition_moves_every_decoded_pitch(bach, k):
    config = bach.config.events
    vocab = Vocabulary(config)
    for i in bach.files("train")[:5]:
        tokens = bach.sequence(i)
        out = augment_tokens(tokens, vocab, transpose=k)
        assert out.dtype == np.uint16 and len(out) == len(tokens)
        expected = decode(tokens, config)
        expected["pitch"] += k
        assert np.array_equal(decode(out, config), canonical_order(expected))


@pytest.mark.parametrize("f", [0.95, 1.0, 1.05, 0.5, 1.37, 3.0])
def test_stretch_moves_every_decoded_time_to_rint_of_step_times_factor(bach, f):
    config = bach.config.events
    vocab, sps = Vocabulary(config), config.steps_per_second
    for i in bach.files("train")[:5]:
        tokens = bach.sequence(i)
        out = augment_tokens(tokens, vocab, transpose=2, stretch=f)
        expected = decode(tokens, config)
        start, end = note_steps(expected, sps)
        new_start = np.rint(start * f)
        expected["start"] = new_start / sps
        expected["end"] = np.maximum(np.rint(end * f), new_start + 1) / sps
        expected["pitch"] += 2
        assert np.array_equal(decode(out, config), canonical_order(expected))
    if f == 1.0:
        assert np.array_equal(augment_tokens(tokens, vocab, 0, f), tokens)


def test_augment_tokens_rejects_bad_input():
    vocab = Vocabulary()
    with pytest.raises(ComposerError):
        augment_tokens(np.array([len(vocab)]), vocab)
    with pytest.raises(DataError):
        augment_tokens(np.array([60]), vocab, stretch=0.0)
    with pytest.raises(DataError):
        augment_tokens(np.zeros((2, 2), int), vocab)
    assert augment_tokens(np.zeros(0, np.uint16), vocab, 0, 1.5).size == 0


CONFIGS = [
    EventConfig(),
    EventConfig(steps_per_second=50, max_shift_steps=50, velocity_bins=16, min_pitch=21,
                max_pitch=108),
    EventConfig(max_shift_steps=3, velocity_bins=1, min_pitch=60, max_pitch=64),
]


def event_times(ids: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, int]:
    """Non-shift tokens, the step of each, and the total time of a token sequence."""
    shift = vocab.ranges[TIME_SHIFT]
    is_shift = (ids >= shift.start) & (ids < shift.stop)
    time = np.cumsum(np.where(is_shift, ids.astype(np.int64) - shift.start + 1, 0))
    return ids[~is_shift], time[~is_shift], int(time[-1]) if ids.size else 0


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_augment_tokens_keeps_any_valid_sequence_valid(data):
    config = data.draw(st.sampled_from(CONFIGS))
    vocab = Vocabulary(config)
    tokens = np.array(data.draw(st.lists(st.integers(0, len(vocab) - 1), max_size=60)), np.uint16)
    lo, hi = (int(x) for x in transpose_range(tokens, vocab))
    k = data.draw(st.integers(lo, hi))
    f = data.draw(st.floats(0.25, 4.0))
    out = augment_tokens(tokens, vocab, k, f)
    assert out.dtype == np.uint16 and (out < len(vocab)).all()
    decode(out, config)  # any valid sequence decodes
    ev, t, total = event_times(tokens, vocab)
    ev2, t2, total2 = event_times(out, vocab)
    note = ev < vocab.ranges[NOTE_OFF].stop
    assert np.array_equal(ev2, ev + np.where(note, k, 0))
    assert np.array_equal(t2, np.rint(t * f)) and total2 == np.rint(total * f)


# --- config ----------------------------------------------------------------------------------


def test_augment_config_round_trips_and_validates():
    config = AugmentConfig(transpose=5, stretch=0.1)
    assert AugmentConfig.from_dict(config.to_dict()) == config
    assert AugmentConfig.from_dict({}) == AugmentConfig()
    buf = io.BytesIO()
    torch.save(config.to_dict(), buf)
    buf.seek(0)
    assert AugmentConfig.from_dict(torch.load(buf, weights_only=True)) == config
    for bad in [{"transpose": -1}, {"transpose": 1.5}, {"stretch": 1.0}, {"stretch": -0.1},
                {"stretch": True}, {"pitch": 3}]:
        with pytest.raises(DataError):
            AugmentConfig.from_dict(bad)


def test_openings_start_windows_at_their_piece_and_cold_windows_skip_their_first_targets(bach):
    offsets = set(bach.index["offset"][bach.files("train")].tolist())
    always = WindowSampler(bach, "train", 32, 64, seed=3, openings=1.0, burn_in=8)
    assert set(always.window_starts(0).tolist()) <= offsets
    x, y = always.next_batch()
    assert (y != IGNORE_INDEX).all()  # every window is an opening: all targets scored
    plain = WindowSampler(bach, "train", 32, 64, seed=3)
    mixed = WindowSampler(bach, "train", 32, 64, seed=3, openings=0.25, burn_in=8)
    starts, base = mixed.window_starts(0), plain.window_starts(0)
    moved = starts != base  # a quarter or so moved to their piece's start, the rest as drawn
    assert 0 < moved.sum() < 64 and set(starts[moved].tolist()) <= offsets
    _, y = mixed.next_batch()
    cold = ~np.isin(starts, list(offsets))
    assert (y[torch.from_numpy(cold), :8] == IGNORE_INDEX).all()
    assert (y[:, 8:] != IGNORE_INDEX).all() and (y[torch.from_numpy(~cold)] != IGNORE_INDEX).all()
