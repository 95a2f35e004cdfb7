"""Keys learnt from the corpus (issue 23 items 5 and 6): each piece's key, the corpus's keys
and openings saved with a trained model, and the key hold and opening range that keep an
unasked piece in a key of the corpus's and open on the corpus's pitches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_chorales

from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.facts import Guards
from composer.corpus.keys import Keys, best_keys, corpus_keys, key_name
from composer.generation.config import SampleConfig
from composer.generation.keyhold import key_penalties, keys_of_rows
from composer.generation.loop import generate
from composer.model.checkpoint import load_checkpoint
from composer.training.config import TrainConfig, TrainRequest
from composer.training.recipe import train_model

C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71]


def test_each_histogram_gets_the_key_it_is_in():
    def hist(pitches: list[int], weights: list[float]) -> np.ndarray:
        h = np.zeros(12)
        for p, w in zip(pitches, weights, strict=True):
            h[p % 12] += w
        return h

    tonic_heavy = [3, 1, 2, 1, 2, 1, 1]
    rows = np.stack([hist(C_MAJOR_SCALE, tonic_heavy),
                     hist([p + 2 for p in C_MAJOR_SCALE], tonic_heavy),  # D major
                     hist([57, 59, 60, 62, 64, 65, 68], tonic_heavy)])  # A harmonic minor
    assert [key_name(k) for k in best_keys(rows)] == ["C major", "D major", "A minor"]


def test_keys_round_trip_and_draw_by_their_shares():
    shares = np.zeros(24)
    shares[[7, 2, 21]] = [0.5, 0.25, 0.25]  # G major, D major, A minor
    flat = tuple([0.125] * 4 + [0.0625] * 8)
    keys = Keys(tuple(shares), (flat, flat), (55, 79))
    d = keys.to_dict()
    assert d["shares"] == {"D major": 0.25, "G major": 0.5, "A minor": 0.25}
    assert Keys.from_dict(json.loads(json.dumps(d))) == keys
    assert Keys.from_dict(None) is None and Guards.from_dict({}).keys is None
    drawn = keys_of_rows(keys, np.array([], np.int64), 400, 0)  # unseeded: by the shares
    assert set(drawn) == {7, 2, 21} and 0.4 < drawn.count(7) / 400 < 0.6
    assert np.array_equal(keys.posterior(np.array([], np.int64)), shares)


def test_a_seed_leans_toward_the_keys_it_fits_and_a_long_one_settles_its_own():
    major = np.array([9, .1, 5, .1, 6, 4, .5, 8, .1, 5, .2, 3])
    minor = np.array([9, .1, 5, 6, .1, 4, .5, 8, 4, .1, 4, .5])
    shares = np.zeros(24)
    shares[[7, 2, 21]] = [0.5, 0.25, 0.25]  # G major, D major, A minor
    keys = Keys(tuple(shares), (tuple(major / major.sum()), tuple(minor / minor.sum())),
                (55, 79))
    few = keys.posterior(np.array([62, 66, 69]))  # D, F#, A: D major's triad
    assert few[2] > 0.5 > shares[2] and few[[7, 2, 21]].sum() > 0.9  # still the corpus's keys
    c_major = np.array(C_MAJOR_SCALE * 2 + [60, 64, 67] * 16)  # a key the corpus never plays
    assert keys.posterior(c_major)[0] > 0.99 and keys_of_rows(keys, c_major, 3, 0) == [0, 0, 0]


def test_penalties_spare_the_seven_most_played_classes():
    profile = np.array([9, .1, 5, .1, 6, 4, .5, 8, .1, 5, .2, 3]) / 41.1  # C major, F# some
    keys = Keys(tuple([1.0] + [0.0] * 23), (tuple(profile), tuple(profile)), (60, 72))
    pen = key_penalties(keys, 2)  # D major: the profile moved up a tone
    assert (pen[[2, 4, 6, 7, 9, 11, 1]] == 0).all()
    assert pen[8] == pytest.approx(np.log(0.5 / 3)) and pen[3] < pen[8] < 0  # G# rarer
    assert keys_of_rows(keys, np.array([], np.int64), 2, 0) == [0, 0]  # its only key


@pytest.fixture(scope="module")
def chorale_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    copy_chorales(root / "midi", 12)
    train_model(TrainRequest(str(root / "midi"), str(root / "run"), config=TrainConfig(
        batch_size=4, seq_len=32, eval_every=2, eval_max_batches=1), steps=3, preset="tiny",
        device="cpu", corpus=CorpusConfig(vocabulary="notes", valid_fraction=0.2,
                                          test_fraction=0.2), controls="none"))
    return root / "run" / "best"


def test_a_trained_model_keeps_its_corpus_keys(chorale_model):
    ck = load_checkpoint(chorale_model)
    keys = Guards.from_dict(ck.data["guards"]).keys
    corpus = Path(ck.data["corpus"])
    c = Corpus.open(corpus)
    assert keys == corpus_keys(c.tokens, c.index, c.events, c.files("train"))
    assert abs(sum(keys.shares) - 1) < 1e-4 and 30 <= keys.opening[0] <= keys.opening[1] <= 90


def _pieces(ck, keys: Keys | None, **sample) -> list[np.ndarray]:
    guards = Guards.from_dict(ck.data["guards"])
    guards = Guards(guards.max_polyphony, None, guards.max_note_beats, keys)
    gen = generate(ck.model, ck.events, None, 8, SampleConfig(seconds=6, **sample), 11,
                   guards=guards)
    return [ck.events.decode(r[gen.seed_len:]).notes for r in gen.tokens]


def test_the_hold_keeps_an_unseeded_piece_in_a_key_of_the_corpus(chorale_model):
    """A barely trained model plays every pitch class; held to a corpus whose only key is
    F# major, its notes fall in F# major's scale far more often, and open in range."""
    ck = load_checkpoint(chorale_model)
    c_major = np.zeros(12)
    c_major[[0, 2, 4, 5, 7, 9, 11]] = [3, 1, 2, 1, 2, 1, 1]
    shares = np.zeros(24)
    shares[6] = 1.0  # F# major
    keys = Keys(tuple(shares), (tuple(c_major / 11), tuple(c_major / 11)), (66, 70))
    scale = np.zeros(12, bool)
    scale[[(6 + k) % 12 for k in (0, 2, 4, 5, 7, 9, 11)]] = True

    def in_scale(**sample) -> float:
        return float(np.mean([scale[n["pitch"] % 12].mean() for n in
                              _pieces(ck, keys, **sample) if len(n)]))

    assert in_scale() > 0.9 > in_scale(key_hold=0.0) + 0.2
    firsts = [int(n["pitch"][np.argmin(n["start"])]) for n in _pieces(ck, keys) if len(n)]
    assert firsts and all(66 <= p <= 70 for p in firsts)
    # a model whose checkpoint measured no keys samples as before
    plain = _pieces(ck, None)
    assert any(not 66 <= int(n["pitch"][np.argmin(n["start"])]) <= 70 for n in plain if len(n))


def test_an_asked_style_holds_to_its_own_keys():
    """A checkpoint of a corpus in style subfolders keeps each style's keys; a piece asked
    in a style holds to that style's, one asked in none to the whole corpus's."""
    from composer.controls.features import ControlSpec
    from composer.controls.plan import make_plan
    from composer.generation.keyhold import keys_for

    def one(key: int) -> Keys:
        shares = [0.0] * 24
        shares[key] = 1.0
        flat = tuple([0.125] * 4 + [0.0625] * 8)
        return Keys(tuple(shares), (flat, flat), (60, 72))

    guards = Guards.from_dict(Guards(4, None, 4.0, one(0), {"folk": one(2), "bach": one(7)})
                              .to_dict())
    assert guards.style_keys == {"folk": one(2), "bach": one(7)}
    spec = ControlSpec(names=("density", "style"), styles=("bach", "folk"))
    assert keys_for(guards, make_plan(spec, {"style": "folk"}), spec) == one(2)
    assert keys_for(guards, make_plan(spec, {"density": 2}), spec) == one(0)
    assert keys_for(guards, None, spec) == one(0)
