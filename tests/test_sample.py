"""Tests of composer.sample: seeding sets the state, the fast paths match the plain one,
batches match single runs, sampling filters, guards, decoding, files, and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
import torch
from click.testing import CliRunner
from helpers import BACH as BACH_DIR

import composer.generation.loop as generate_mod
import composer.model.checkpoint as checkpoint_mod
from composer.cli.main import main
from composer.core.messages import GenerateError
from composer.generation.config import MAX_EVENTS_PER_SECOND, GenerateRequest, SampleConfig
from composer.generation.loop import CHUNK, generate, start_tokens
from composer.generation.noise import Sampler, gumbel_noise
from composer.generation.output import compose, to_notes
from composer.generation.processors import Processors, sampling
from composer.generation.seeds import seed_from_midi, seed_from_pitches
from composer.midi.io import NOTE_DTYPE, load
from composer.midi.io import save as save_midi
from composer.model.checkpoint import find_checkpoint, save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.model.steppers import (
    ONEDNN_FROM,
    STEP_SEED_UNDER,
    FusedStepper,
    PlainStepper,
    prime,
    step_logits,
)
from composer.tokens.performance import (
    NOTE_OFF,
    NOTE_ON,
    TIME_SHIFT,
    VELOCITY,
    Event,
    EventConfig,
    Vocabulary,
    decode,
    quantise,
)

EC = EventConfig()
VOCAB = Vocabulary(EC)
V = VOCAB.size
R = VOCAB.ranges
BACH = sorted(BACH_DIR.glob("*.mid"))


def tiny(seed: int = 0, sharpen: float = 1.0) -> ComposerLSTM:
    """A tiny random model; ``sharpen`` scales the output layer (peakier distributions)."""
    torch.manual_seed(seed)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=V)).eval()
    with torch.no_grad():
        model.head.weight.mul_(sharpen)
    return model


def tok(kind: str, value: int) -> int:
    return VOCAB.encode_event(Event(kind, value))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> ComposerLSTM:
    return tiny(sharpen=4.0)


@pytest.fixture(scope="module")
def bach_seed() -> np.ndarray:
    return seed_from_midi(BACH[0], 3.0, EC)


# ------------------------------------------------------------------ state and the paths


@pytest.mark.parametrize("engine", ["plain", "fused"])
def test_seed_sets_state_and_prefix_runs_once(model, bach_seed, engine, monkeypatch):
    features, long_calls = ComposerLSTM.features, []

    def counting(self, tokens, state=None, controls=None):
        if tokens.shape[1] > 1:
            long_calls.append(tokens.shape)
        return features(self, tokens, state, controls)

    monkeypatch.setattr(ComposerLSTM, "features", counting)
    gen = generate(model, EC, bach_seed, 3, SampleConfig(events=40), rng_seed=1,
                   engine=engine, keep_logits=True)
    assert long_calls == [(1, len(bach_seed))]  # the seed, once, never again
    monkeypatch.undo()
    full = torch.as_tensor(np.stack(gen.tokens))  # (3, seed + 40)
    with torch.no_grad():
        ref = model(full)[0][:, gen.seed_len - 1 : -1]  # logits before each drawn event
    assert torch.allclose(gen.logits[:, :40], ref, atol=1e-5)


def test_a_short_seed_skips_onednn_and_reads_the_same(model, bach_seed):
    """prime() reads a seed under ONEDNN_FROM tokens through torch's plain kernel (oneDNN's
    set-up costs more than such a seed takes), a longer one as the model's forward does;
    both give the forward's logits and state, and oneDNN is as it was afterwards."""
    was, seen = torch.backends.mkldnn.enabled, []
    hook = model.lstm.register_forward_pre_hook(
        lambda *_: seen.append(torch.backends.mkldnn.enabled))
    try:
        for n in (1, ONEDNN_FROM - 1, ONEDNN_FROM, 3 * ONEDNN_FROM):
            tokens = torch.as_tensor(bach_seed[None, :n])
            with torch.no_grad():
                ref, (h0, c0) = model(tokens)
                logits, (h, c), _ = prime(model, tokens)
            assert seen[-1] == (was and n >= ONEDNN_FROM)
            assert torch.backends.mkldnn.enabled == was
            assert torch.allclose(logits, ref, atol=1e-5) and torch.allclose(h, h0, atol=1e-5)
            assert torch.allclose(c, c0, atol=1e-5)
    finally:
        hook.remove()


@pytest.mark.parametrize("n", [1, STEP_SEED_UNDER // 3, STEP_SEED_UNDER // 3 + 1])
def test_a_short_seed_is_read_by_the_stepper(model, bach_seed, n, monkeypatch):
    """On CPU a seed whose rows x tokens are under STEP_SEED_UNDER is read by the fused
    stepper, every row at once, with no forward of the model (whose fp32 weights cost more
    to read than the steps take); a longer one by one forward. Either way the first draw's
    logits are the forward's, and the plain path always reads it by the forward."""
    features, calls = ComposerLSTM.features, []

    def counting(self, tokens, state=None, controls=None):
        if tokens.shape[0] == 1:  # the seed's read (steps are of all 3 rows)
            calls.append(tuple(tokens.shape))
        return features(self, tokens, state, controls)

    seed = bach_seed[:n]
    with torch.no_grad():
        ref = model(torch.as_tensor(seed[None]))[0][0, -1]  # (V,)
    monkeypatch.setattr(ComposerLSTM, "features", counting)
    for engine in ("fused", "plain"):
        calls.clear()
        gen = generate(model, EC, seed, 3, SampleConfig(events=16), rng_seed=1,
                       engine=engine, keep_logits=True)
        stepped = engine == "fused" and 3 * n < STEP_SEED_UNDER
        assert calls == ([] if stepped else [(1, n)])
        assert torch.allclose(gen.logits[:, 0], ref.expand(3, -1), atol=1e-5)


def test_fused_equals_plain(model, bach_seed):
    tokens = torch.as_tensor(bach_seed[None, :60]).repeat(2, 1)
    tokens[1] = tokens[1].roll(7)
    plain = step_logits(model, PlainStepper(model), tokens)
    fused = step_logits(model, FusedStepper(model), tokens)
    assert torch.allclose(plain, fused, atol=1e-5)
    config = SampleConfig(events=100, top_p=0.95)
    a = generate(model, EC, bach_seed, 4, config, rng_seed=5, engine="plain")
    b = generate(model, EC, bach_seed, 4, config, rng_seed=5, engine="fused")
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))


def test_int8_distributions_stay_close_to_fp32(model, bach_seed):
    tokens = torch.as_tensor(bach_seed[None, :80])
    ref = model(tokens)[0].detach().log_softmax(-1)  # (1, T, V)
    q8 = step_logits(model, FusedStepper(model, int8=True), tokens).log_softmax(-1)
    kl = (q8.exp() * (q8 - ref)).sum(-1)  # (1, T) KL(int8 || fp32)
    assert kl.mean() < 1e-3 and kl.max() < 1e-2
    # Same noise, close distributions: the first draws agree almost everywhere.
    a = generate(model, EC, bach_seed, 64, SampleConfig(events=1), rng_seed=0, engine="int8")
    b = generate(model, EC, bach_seed, 64, SampleConfig(events=1), rng_seed=0, engine="fused")
    same = np.mean([x[-1] == y[-1] for x, y in zip(a.tokens, b.tokens, strict=True)])
    assert same >= 0.9


@pytest.mark.parametrize("engine", ["plain", "fused"])
def test_batch_equals_separate_runs(model, bach_seed, engine):
    config = SampleConfig(seconds=2.0)  # rows stop at different event counts
    batch = generate(model, EC, bach_seed, 4, config, rng_seed=10, engine=engine)
    for i, row in enumerate(batch.tokens):
        alone = generate(model, EC, bach_seed, 1, config, rng_seed=10 + i, engine=engine)
        assert np.array_equal(alone.tokens[0], row)
    assert len({len(t) for t in batch.tokens}) > 1


def test_reproducible_with_rng_seed(model):
    config = SampleConfig(events=3 * CHUNK + 5)
    a, b, c = (generate(model, EC, None, 2, config, rng_seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))
    assert not np.array_equal(a.tokens[0], c.tokens[0])
    assert [len(t) for t in a.tokens] == [1 + 3 * CHUNK + 5] * 2  # start token + events
    assert generate(model, EC, None, 1, config).rng_seed >= 0  # picked at random


def test_graph_runner_logic_on_cpu(model, bach_seed, monkeypatch):
    """The CUDA-graph runner's static buffers, in-place updates and replays, with an eager
    stand-in for the capture (which also runs the warm-up and restore)."""
    calls = []

    def eager_graph(fn, buffers):
        before = [t.clone() for t in buffers]
        fn()  # a warm-up run, then the buffers are restored as in the real capture
        for dst, src in zip(buffers, before, strict=True):
            dst.copy_(src)
        calls.append(len(buffers))
        return fn

    config = SampleConfig(seconds=3.0, top_k=50)
    eager = generate(model, EC, bach_seed, 3, config, rng_seed=9, engine="fused",
                     keep_logits=True)
    monkeypatch.setattr(generate_mod, "cuda_graph", eager_graph)
    graph = generate(model, EC, bach_seed, 3, config, rng_seed=9, engine="fused",
                     cuda_graph=True, keep_logits=True)
    assert calls and graph.engine == "fused+cuda-graph"
    assert torch.equal(graph.logits, eager.logits)
    assert all(np.array_equal(x, y) for x, y in zip(graph.tokens, eager.tokens, strict=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_cuda_graph_without_cuda_falls_back(model):
    with pytest.warns(UserWarning, match="CUDA graph capture failed"):
        gen = generate(model, EC, None, 1, SampleConfig(events=8), rng_seed=0, engine="fused",
                       cuda_graph=True)
    assert gen.engine == "fused" and len(gen.tokens[0]) == 9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_matches_eager(bach_seed):
    model = tiny(sharpen=4.0).cuda()
    config = SampleConfig(events=64)
    graph = generate(model, EC, bach_seed, 8, config, rng_seed=3, cuda_graph=True,
                     keep_logits=True)
    eager = generate(model, EC, bach_seed, 8, config, rng_seed=3, cuda_graph=False,
                     keep_logits=True)
    assert graph.engine == "fused+cuda-graph" and eager.engine == "fused"
    assert torch.allclose(graph.logits, eager.logits, atol=1e-4)
    assert all(np.array_equal(x, y) for x, y in zip(graph.tokens, eager.tokens, strict=True))


def test_a_model_that_never_moves_time_stops_at_the_event_cap():
    stuck = tiny()
    with torch.no_grad():
        stuck.head.bias[R[VELOCITY].start :] += 50.0  # only VELOCITY tokens: time stands still
    gen = generate(stuck, EC, None, 2, SampleConfig(seconds=1.0), rng_seed=0)
    assert [len(t) - gen.seed_len for t in gen.tokens] == [MAX_EVENTS_PER_SECOND + CHUNK] * 2


# ---------------------------------------------------------------------------- sampling


def test_low_temperature_and_top_k_1_are_argmax():
    torch.manual_seed(0)
    logits = torch.randn(16, V) * 3  # (B, V)
    keys = torch.arange(16)
    for step in range(20):
        noise = gumbel_noise(keys, step, 1, V)[:, 0]
        for config in (SampleConfig(temperature=1e-4), SampleConfig(top_k=1),
                       SampleConfig(temperature=0)):
            processors = Processors(sampling(config), greedy=config.temperature == 0)
            drawn = Sampler(keys, processors.greedy)(processors(logits), noise)
            assert torch.equal(drawn, logits.argmax(1))


def test_greedy_generation_ignores_the_rng(model):
    config = SampleConfig(temperature=0, events=30)
    a, b = (generate(model, EC, None, 1, config, rng_seed=s) for s in (1, 2))
    assert np.array_equal(a.tokens[0], b.tokens[0])


def test_top_p_and_top_k_filter_a_hand_made_distribution():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    def filter_logits(logits, config, banned=None):
        logits = logits if banned is None else logits.masked_fill(banned, -torch.inf)
        return Processors(sampling(config), greedy=False)(logits)

    kept = {p: torch.isfinite(filter_logits(logits, SampleConfig(top_p=p)))[0].tolist()
            for p in (0.4, 0.75, 0.85, 1.0)}
    assert kept[0.4] == [True, False, False, False]
    assert kept[0.75] == [True, True, False, False]
    assert kept[0.85] == [True, True, True, False]
    assert kept[1.0] == [True] * 4
    top2 = filter_logits(logits, SampleConfig(top_k=2))
    assert torch.isfinite(top2)[0].tolist() == [True, True, False, False]
    assert torch.equal(top2[0, :2], logits[0, :2])  # kept logits are unchanged
    banned = torch.tensor([[True, False, False, False]])
    assert filter_logits(logits, SampleConfig(top_k=1), banned).argmax().item() == 1


def test_gumbel_max_draws_follow_the_distribution():
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.07, 0.03])
    logits = probs.log()[None]
    n = 20_000
    across_rows = (logits + gumbel_noise(torch.arange(n), 0, 1, 6)[:, 0]).argmax(1)
    across_steps = (logits + gumbel_noise(torch.tensor([123]), 0, n, 6)[0]).argmax(1)
    for drawn in (across_rows, across_steps):
        freq = torch.bincount(drawn, minlength=6).float() / n
        assert ((freq - probs).abs() < 4 * (probs * (1 - probs) / n).sqrt() + 1e-3).all()
    # consecutive steps are independent: joint frequencies ~ products
    joint = torch.zeros(6, 6)
    joint.index_put_((across_steps[:-1], across_steps[1:]), torch.ones(n - 1), accumulate=True)
    assert ((joint / (n - 1) - probs[:, None] * probs[None]).abs() < 0.01).all()


def gaps(notes: np.ndarray) -> list[float]:
    """Lengths of the silences between time 0 and the last note's end."""
    out, reach = [], 0.0
    for start, end in sorted(zip(notes["start"].tolist(), notes["end"].tolist(), strict=True)):
        out.append(max(0.0, start - reach))
        reach = max(reach, end)
    return out


def test_max_silence_guard_forbids_long_silences():
    lazy = tiny()
    with torch.no_grad():
        lazy.head.bias[R[TIME_SHIFT].start : R[TIME_SHIFT].stop] += 8.0  # loves to wait
    def longest(max_silence: float) -> tuple[float, int]:
        config = SampleConfig(seconds=20, max_silence_seconds=max_silence, max_note_seconds=1,
                              max_opening_seconds=1000)  # the opening: tested below
        gen = generate(lazy, EC, None, 4, config, rng_seed=0)
        notes = [to_notes(t, EC, max_note_seconds=1) for t in gen.tokens]
        return max(max(gaps(n), default=20.0) for n in notes), min(map(len, notes))
    unguarded, _ = longest(1000.0)
    guarded, n_notes = longest(0.5)
    assert unguarded > 3.0
    assert guarded <= 0.5 + 1e-6 and n_notes > 5


def test_an_unseeded_piece_opens_within_max_opening_seconds():
    lazy = tiny()
    with torch.no_grad():
        lazy.head.bias[R[TIME_SHIFT].start : R[TIME_SHIFT].stop] += 8.0  # loves to wait

    def first_notes(**settings) -> list[float]:
        config = SampleConfig(seconds=10, max_note_seconds=1, **settings)
        gen = generate(lazy, EC, None, 8, config, rng_seed=0)
        return [float(n["start"].min()) if len(n) else 10.0
                for n in (to_notes(t, EC, max_note_seconds=1) for t in gen.tokens)]

    assert max(first_notes()) <= 0.5 + 1e-6  # the default: 0.5 s
    assert max(first_notes(max_opening_seconds=0.2)) <= 0.2 + 1e-6
    assert min(first_notes(max_opening_seconds=1000, max_silence_seconds=1000)) > 1.0
    seeded = generate(lazy, EC, [tok(VELOCITY, 20), tok(NOTE_ON, 60)], 2,
                      SampleConfig(seconds=5, max_note_seconds=1), rng_seed=0)
    assert seeded.tokens  # a seed with a note: no opening guard (the silence guard holds)


# ---------------------------------------------------------------------------- decoding


def test_hanging_notes_are_closed_and_notes_bounded():
    second = tok(TIME_SHIFT, 100)
    tokens = [tok(VELOCITY, 20), tok(NOTE_ON, 60), tok(NOTE_ON, 64), *[second] * 7,
              tok(NOTE_OFF, 64), tok(NOTE_OFF, 70), tok(NOTE_ON, 62), tok(TIME_SHIFT, 50),
              tok(NOTE_OFF, 62)]
    notes = to_notes(tokens, EC, max_note_seconds=2.0)
    rows = sorted(zip(*(notes[k].tolist() for k in ("pitch", "start", "end")), strict=True))
    assert rows == [(60, 0.0, 2.0), (62, 7.0, 7.5), (64, 0.0, 2.0)]  # no note for pitch 70
    default = to_notes(tokens, EC)  # max_note_seconds 5
    assert sorted(default["end"].tolist()) == [5.0, 5.0, 7.5]


def test_generated_notes_respect_the_note_bound(model, bach_seed):
    config = SampleConfig(seconds=8, max_note_seconds=0.7)
    gen = generate(model, EC, bach_seed, 4, config, rng_seed=2)
    for tokens in gen.tokens:
        notes = to_notes(tokens, EC, max_note_seconds=0.7)
        assert len(notes) and (notes["end"] - notes["start"] <= 0.7 + 1e-9).all()


def test_include_seed_or_not(model):
    seed = seed_from_pitches("60,64,67", "chord", EC)
    gen = generate(model, EC, seed, 1, SampleConfig(seconds=3), rng_seed=4)
    full = to_notes(gen.tokens[0], EC, seed_len=gen.seed_len)
    cont = to_notes(gen.tokens[0], EC, seed_len=gen.seed_len, include_seed=False)
    assert sorted(full["pitch"][full["start"] == 0].tolist())[:3] == [60, 64, 67]
    later = full[full["start"] >= 0.5]
    assert np.allclose(np.sort(cont["start"]), np.sort(later["start"]) - 0.5)
    assert len(cont) == len(later)


def test_outputs_are_valid_midi_and_never_overwritten(model, tmp_path):
    seed = seed_from_pitches("60,62,64", "arpeggio", EC)
    config = SampleConfig(seconds=4)
    job = GenerateRequest(out=str(tmp_path), num=2, sample=config, rng_seed=1)
    outputs, gen = compose(model, EC, seed, replace(job, program=40))
    assert [o.path.name for o in outputs] == ["composer-001.mid", "composer-002.mid"]
    for o, tokens in zip(outputs, gen.tokens, strict=True):
        pm = pretty_midi.PrettyMIDI(str(o.path))
        assert sum(len(i.notes) for i in pm.instruments) == o.notes > 0
        assert all(i.program == 40 for i in pm.instruments)
        assert abs(pm.get_end_time() - o.seconds) < 0.01
        assert len(mido.MidiFile(o.path).tracks) >= 2
        assert len(load(o.path).notes) == o.notes
        assert 0 <= o.silence <= 1 and o.tokens == len(tokens) - gen.seed_len
        assert o.seed_seconds == pytest.approx(0.75)
    before = outputs[0].path.read_bytes()
    more, _ = compose(model, EC, seed, job)
    assert [o.path.name for o in more] == ["composer-003.mid", "composer-004.mid"]
    assert outputs[0].path.read_bytes() == before
    again, _ = compose(model, EC, seed, replace(job, program=40, force=True))
    assert again[0].path.read_bytes() == before  # same rng seed, same file
    with pytest.raises(GenerateError, match="plain file name"):
        compose(model, EC, seed, replace(job, num=1, prefix="a/b"))


# ------------------------------------------------------------------------------- seeds


def test_seed_from_pitches_chord_and_arpeggio():
    chord = decode(seed_from_pitches("60, 64,67", "chord", EC), EC)
    assert chord["pitch"].tolist() == [60, 64, 67]
    assert chord["start"].tolist() == [0.0] * 3 and chord["end"].tolist() == [0.5] * 3
    arp = decode(seed_from_pitches([60, 64, 67], "arpeggio", EC), EC)
    assert arp["start"].tolist() == [0.0, 0.25, 0.5] and arp["end"].tolist() == [0.25, 0.5, 0.75]
    assert set(arp["velocity"].tolist()) == {int(quantise(_note(60, 80), EC)["velocity"][0])}


def _note(pitch: int, velocity: int) -> np.ndarray:
    n = np.zeros(1, NOTE_DTYPE)
    n["pitch"], n["velocity"], n["end"] = pitch, velocity, 1.0
    return n


@pytest.mark.parametrize("spec, message", [
    ("", "pitch list is empty"), ("60,x", "'x' is not a note name or MIDI pitch"),
    ("60,128", "pitch 128, outside MIDI's 0..127"), ("-1", "pitch -1, outside"),
    ("C4,H4", "'H4' is not a note name"), ("G#9", "pitch 128, outside"),
])
def test_seed_from_pitches_errors(spec, message):
    with pytest.raises(GenerateError, match=message):
        seed_from_pitches(spec, "chord", EC)
    with pytest.raises(GenerateError, match="pitch 20 is outside the model's pitch range 21"):
        seed_from_pitches("20", "chord", EventConfig(min_pitch=21, max_pitch=108))
    with pytest.raises(GenerateError, match="chord or arpeggio"):
        seed_from_pitches("60", "glissando", EC)


def test_seed_from_midi_cuts_at_seconds():
    piece = load(BACH[0]).notes
    tokens = seed_from_midi(BACH[0], 2.0, EC)
    cut = piece[piece["start"] < 2.0].copy()
    cut["end"] = np.minimum(cut["end"], 2.0)
    assert np.array_equal(decode(tokens, EC), quantise(cut, EC))
    assert len(seed_from_midi(BACH[0], None, EC)) > len(tokens)


def test_seed_from_midi_errors(tmp_path):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"not midi at all")
    empty = tmp_path / "empty.mid"
    save_midi(np.zeros(0, NOTE_DTYPE), empty)
    low, late = tmp_path / "low.mid", tmp_path / "late.mid"
    save_midi(_note(10, 80), low)
    note = _note(60, 80)
    note["start"], note["end"] = 1.0, 2.0
    save_midi(note, late)
    cases = [(tmp_path / "missing.mid", None, EC, "missing.mid: cannot read"),
             (junk, None, EC, "junk.mid: "), (empty, None, EC, "has no notes"),
             (late, 0.5, EC, "no notes in its first 0.5 s"),
             (low, None, EventConfig(min_pitch=21, max_pitch=108), "pitch range 21..108"),
             (BACH[0], 0.0, EC, "must be > 0")]
    for path, seconds, config, message in cases:
        with pytest.raises(GenerateError, match=message):
            seed_from_midi(path, seconds, config)


def test_start_context_is_a_mid_velocity():
    (token,) = start_tokens(EC)
    assert token in R[VELOCITY] and len(decode([token], EC)) == 0


# ------------------------------------------------------------------ configs and errors


def test_sample_config_round_trip_and_validation():
    config = SampleConfig(temperature=0.8, top_k=20, top_p=0.9, events=100)
    assert SampleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    bad = [{"temperature": -1}, {"top_k": -1}, {"top_p": 0}, {"top_p": 1.5},
           {"max_silence_seconds": 0}, {"seconds": math.inf}, {"events": 0}, {"top_k": 1.5}]
    for kwargs in bad:
        with pytest.raises(GenerateError, match=next(iter(kwargs))):
            SampleConfig(**kwargs)
    with pytest.raises(GenerateError, match="unknown keys temp"):
        SampleConfig.from_dict({"temp": 1})


def test_generate_rejects_what_does_not_fit(model):
    small = EventConfig(min_pitch=21, max_pitch=108)
    with pytest.raises(GenerateError, match="vocabulary mismatch: the event config has 308"):
        generate(model, small, None)
    with pytest.raises(GenerateError, match=f"seed token id {V} is outside"):
        generate(model, EC, [1, 2, V])
    with pytest.raises(GenerateError, match="the seed is empty"):
        generate(model, EC, [])
    with pytest.raises(GenerateError, match="num must be"):
        generate(model, EC, None, 0)
    with pytest.raises(GenerateError, match="unknown engine"):
        generate(model, EC, None, engine="turbo")


def test_find_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPOSER_CHECKPOINT", raising=False)
    assert find_checkpoint(tmp_path) == tmp_path
    packaged = tmp_path / "composer" / "models" / "default"
    monkeypatch.setattr(checkpoint_mod, "default_checkpoint", lambda: packaged)
    with pytest.raises(GenerateError, match="no default model is installed"):
        find_checkpoint()
    packaged.mkdir(parents=True)
    (packaged / "checkpoint.json").write_text("{}")
    assert find_checkpoint() == packaged
    monkeypatch.setenv("COMPOSER_CHECKPOINT", "/somewhere")
    assert find_checkpoint() == Path("/somewhere")


# ----------------------------------------------------------------------------------- CLI


@pytest.fixture
def ckpt(tmp_path) -> Path:
    model = tiny(sharpen=4.0)
    return save_checkpoint(tmp_path / "ckpt", model, model.config, EC.to_dict(),
                           train_config={}, step=0, metrics={}, data={})


def run(*args: str):
    return CliRunner().invoke(main, ["generate", *args])


def test_cli_writes_reproducible_files(ckpt, tmp_path):
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), "--seed", str(BACH[0]), "--seed-seconds", "2",
            "--events", "48", "--num", "2", "--rng-seed", "3", "--out", str(out), "-q"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(out / "composer-001.mid"))
    assert "notes" in lines[0] and "silence" in lines[0]
    first = (out / "composer-002.mid").read_bytes()
    again = run(*args)  # earlier files are kept: the next free numbers are used
    assert again.exit_code == 0 and again.output.startswith(str(out / "composer-003.mid"))
    assert (out / "composer-002.mid").read_bytes() == first
    forced = run(*args, "--force")
    assert forced.exit_code == 0 and (out / "composer-002.mid").read_bytes() == first
    pitches = run("--checkpoint", str(ckpt), "--seed", "60,64,67", "--length", "2", "--out",
                  str(out), "--prefix", "chord", "--no-include-seed", "-q")
    assert pitches.exit_code == 0 and (out / "chord-001.mid").is_file()


def test_cli_plots_and_renders_each_output(ckpt, tmp_path):
    out = tmp_path / "out"
    result = run("--checkpoint", str(ckpt), "--seed", str(BACH[0]), "--seed-seconds", "2",
                 "--length", "3", "--num", "2", "--rng-seed", "1", "--out", str(out), "--plot",
                 "--render", "-q")
    assert result.exit_code == 0, result.output
    for k in (1, 2):
        png, wav = out / f"composer-00{k}.png", out / f"composer-00{k}.wav"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and wav.stat().st_size > 44


def test_cli_bad_inputs(ckpt, tmp_path, monkeypatch):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"MThd garbage")
    empty = tmp_path / "empty.mid"
    save_midi(np.zeros(0, NOTE_DTYPE), empty)
    mismatched = tmp_path / "mismatched"
    meta_file = mismatched / "checkpoint.json"
    save_checkpoint(mismatched, tiny(), tiny().config, EC.to_dict(), train_config={}, step=0,
                    metrics={}, data={})
    meta = json.loads(meta_file.read_text())
    meta["events"]["min_pitch"] = 21  # vocabulary no longer fits the model
    meta_file.write_text(json.dumps(meta))
    monkeypatch.delenv("COMPOSER_CHECKPOINT", raising=False)
    monkeypatch.setattr(checkpoint_mod, "default_checkpoint", lambda: tmp_path / "nowhere")
    cases = [
        ([], "no default model is installed"),
        (["--checkpoint", str(ckpt), "--seed", str(junk)], "junk.mid"),
        (["--checkpoint", str(ckpt), "--seed", str(empty)], "has no notes"),
        (["--checkpoint", str(mismatched)], "388 token ids, the event vocabulary 346"),
    ]
    for args, message in cases:
        result = run(*args, "--events", "8", "--out", str(tmp_path), "-q")
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("Error: ") and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    both = run("--checkpoint", str(ckpt), "--length", "3", "--events", "8")
    assert both.exit_code == 2 and "not both" in both.output


def test_a_seed_in_the_beat_vocabulary_ends_where_its_notes_end():
    from composer.tokens.beats import NoteEventConfig
    from composer.tokens.vocab import vocabulary_of

    beats = vocabulary_of(NoteEventConfig())
    chord = seed_from_pitches("C4 E4 G4", "chord", beats)  # 0.5 s = one beat at 120 bpm
    assert beats.seconds_of(chord) == pytest.approx(0.5)
    assert str(beats.vocab.decode_event(int(chord[-1]))) == "SHIFT_1"
    arpeggio = seed_from_pitches("C4 E4 G4", "arpeggio", beats)
    assert beats.seconds_of(arpeggio) == pytest.approx(0.75)


def test_a_midi_seed_is_loaded_once_for_tokens_clock_and_instruments(tmp_path, monkeypatch):
    from composer.generation import seeds
    from composer.generation.session import generate_music

    chorale = sorted(BACH_DIR.glob("*.mid"))[0]
    loads, real = [], seeds.load
    monkeypatch.setattr(seeds, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    done = generate_music(GenerateRequest(seed=str(chorale), seed_seconds=2.0, out=str(tmp_path),
                                          sample=SampleConfig(events=8), copy_warn=0,
                                          rng_seed=1))
    assert len(done.outputs) == 1 and len(loads) == 1  # three loads before
    facts = seeds.read_seed(str(chorale), seeds.DEFAULT_CONFIG, 2.0)  # the same facts as
    # the three separate readers give
    assert facts.clock == seeds.seed_clock(str(chorale))
    assert np.array_equal(facts.tokens, seeds.seed_from_midi(chorale, 2.0))
