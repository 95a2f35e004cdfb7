"""Truncated backprop through time (issue 24): the stream sampler reads each piece from its
start in consecutive windows, marks where a row starts a piece, transposes a whole visit
alike, resumes exactly, and the carried state is zeroed only in the rows that start anew."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import copy_chorales

from composer.controls.features import ControlSpec, corpus_controls
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.model.lstm import IGNORE_INDEX
from composer.training.config import AugmentConfig, DataError
from composer.training.streams import StreamSampler, carry


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("streams")
    copy_chorales(root / "midi", 6)
    prepare(root / "midi", root / "cache", CorpusConfig(vocabulary="notes", valid_fraction=0,
                                                        test_fraction=0))
    return Corpus.open(root / "cache")


def test_rows_read_their_pieces_in_order_and_whole(corpus):
    T, B = 50, 3
    s = StreamSampler(corpus, "train", T, B, seed=4)
    offsets = corpus.index["offset"][corpus.files("train")]
    ends = offsets + corpus.index["length"][corpus.files("train")]
    read: list[list[int]] = [[] for _ in range(B)]
    for _ in range(40):
        piece, pos = s.piece.copy(), s.pos.copy()
        x, y, fresh = s.next_batch()
        assert x.shape == y.shape == (B, T) and fresh.dtype == torch.bool
        for b in range(B):
            o, e = offsets[piece[b]], ends[piece[b]]
            assert bool(fresh[b]) == (pos[b] == o)
            real = y[b][y[b] != IGNORE_INDEX].tolist()
            n = min(T, e - pos[b] - 1)  # targets left in the piece
            assert real == corpus.tokens[pos[b] + 1 : pos[b] + 1 + n].tolist()
            assert (y[b][n:] == IGNORE_INDEX).all() and (x[b][n + 1 :] == 0).all()
            read[b] = real if fresh[b] else read[b] + real
            if pos[b] + T + 1 >= e:  # the piece is read whole, first token aside
                assert read[b] == corpus.tokens[o + 1 : e].tolist()
    assert s.state_dict()["visits"] != [1] * B  # every row went on to other pieces


def test_a_visit_is_transposed_alike_and_resume_is_exact(corpus):
    spec = ControlSpec(names=("pitch-classes",), dropout=0.0)
    table = corpus_controls(corpus.tokens, corpus.index, corpus.paths, corpus.events, spec)
    make = lambda: StreamSampler(corpus, "train", 32, 4, AugmentConfig(transpose=5),  # noqa: E731
                                 seed=9, controls=(table, spec))
    a = make()
    for _ in range(7):
        a.next_batch()
    saved = a.state_dict()
    ahead = [a.next_batch() for _ in range(5)]
    b = make()
    b.load_state_dict(saved)
    again = [b.next_batch() for _ in range(5)]
    for u, v in zip(ahead, again, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(u, v, strict=True))
    assert set(np.abs(a.shift)) - {0}  # some visits are transposed
    with pytest.raises(DataError, match="other settings"):
        StreamSampler(corpus, "train", 16, 4, seed=9).load_state_dict(saved)


def test_carry_zeroes_only_the_fresh_rows():
    h, c = torch.ones(2, 3, 4, requires_grad=True), torch.full((2, 3, 4), 2.0)
    nh, nc = carry((h, c), torch.tensor([False, True, False]))
    assert not nh.requires_grad
    assert nh[:, 1].eq(0).all() and nh[:, [0, 2]].eq(1).all() and nc[:, 0].eq(2).all()
    assert carry(None, torch.tensor([True])) is None
