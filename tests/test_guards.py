"""Sampling guards (both vocabularies) on hand-made token sequences and on models forced to
break them; the corpus's measured guards; the auto vocabulary choice; a beat-vocabulary
model end to end."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from composer.cli.main import main
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.facts import Guards, combine, file_stats, sounding_at_onsets
from composer.corpus.prepare import prepare
from composer.generation.config import SampleConfig
from composer.generation.loop import generate
from composer.generation.output import to_notes
from composer.generation.processors import is_legacy, make_processors, max_note_seconds
from composer.generation.track import Track, make_tracker, replay
from composer.midi.io import load
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens import beats as beat
from composer.tokens import performance as perf
from composer.tokens.beats import Clock, NoteEventConfig, grid_fraction
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, vocabulary_of
from composer.training.augment import augment_tokens

PERF = Events("performance", EventConfig())
NOTES = Events("notes", NoteEventConfig())


def write_file(path, notes, tempo=500_000, tpb=480):
    """A one-track MIDI file of (pitch, start tick, end tick) notes at ``tempo``."""
    msgs = [(s, 1, p) for p, s, _ in notes] + [(e, 0, p) for p, _, e in notes]
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    now = 0
    for t, on, p in sorted(msgs):
        track.append(mido.Message("note_on", note=p, velocity=80 * on, time=t - now))
        now = t
    mid = mido.MidiFile(ticks_per_beat=tpb)
    mid.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def tunes(folder, n=8, jitter=0, tempo=500_000, seed=0):
    """``n`` little two-voice pieces on a 1/8-beat grid (plus up to ``jitter`` ticks)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        notes = []
        for k in range(40):
            start = k * 240 + (int(rng.integers(1, jitter + 1)) if jitter else 0)
            notes.append((60 + (k * 5 + i) % 12, start, start + 240))
            notes.append((48 + (k * 3 + i) % 12, start, start + 240 - 60 * (k % 2)))
        write_file(folder / f"t{i}.mid", notes, tempo)
    return folder


def _rules(events, tokens, **limits):
    config = SampleConfig(**limits)
    longest = max_note_seconds(events, config, Clock(), Guards())
    tracker = make_tracker(events, max(1, round(longest * events.steps_per_second(Clock()))),
                           torch.device("cpu"))
    processors = make_processors(tracker, config, Clock(), Guards())
    track = replay(tracker, torch.tensor(tokens, dtype=torch.long))
    scores = processors(torch.zeros(1, events.size), track)
    return is_legacy(config, Guards()), torch.isinf(scores)[0].numpy()


# ------------------------------------------------------------- hand-made token sequences


def test_performance_rules_on_hand_made_sequences():
    r = PERF.vocab.ranges
    on, off, shift = r[perf.NOTE_ON], r[perf.NOTE_OFF], r[perf.TIME_SHIFT]
    _, ban = _rules(PERF, [on[60]], max_note_seconds=0.5, max_polyphony=2)
    assert ban[on[60]] and not ban[on[61]]  # no re-strike of a sounding pitch
    assert ban[off[61]] and ban[off[60]]  # NOTE_OFF only of sounding pitches, not at once
    _, ban = _rules(PERF, [on[60], shift[0]], max_note_seconds=0.5, max_polyphony=2)
    assert not ban[off[60]] and ban[off[61]]
    assert not ban[shift[48]] and ban[shift[49]]  # 1 + 49 steps = 0.5 s: the note's limit
    _, ban = _rules(PERF, [on[60], on[64]], max_polyphony=2)
    assert ban[on.start : on.stop].all()  # polyphony reached: no note starts
    _, ban = _rules(PERF, [on[60], on[64], off[64]], max_polyphony=2)
    assert not ban[on[64]] and ban[on[60]]
    _, ban = _rules(PERF, [on[60], on[64], shift[9], shift[39]], max_note_seconds=0.5)
    allowed = np.flatnonzero(~ban)
    assert list(allowed) == [off[60], off[64]]  # overdue notes must be closed first


def test_note_rules_on_hand_made_sequences():
    v = NOTES.vocab
    r = v.ranges
    pitch, dur, shift = r[beat.PITCH], r[beat.DURATION], r[beat.SHIFT]
    twelve = int(np.flatnonzero(v.steps == 12)[0])  # a quarter note
    _, ban = _rules(NOTES, [pitch[60]], max_note_seconds=1.0)  # 1 s = 2 beats at 120 bpm
    allowed = np.flatnonzero(~ban)
    assert set(allowed) <= set(dur) and len(allowed) > 0  # only a DURATION after a PITCH
    assert v.steps[np.array(allowed) - dur.start].max() == 24
    _, ban = _rules(NOTES, [pitch[60], dur[twelve]], max_polyphony=2)
    assert ban[pitch[60]] and not ban[pitch[62]] and ban[dur.start : dur.stop].all()
    _, ban = _rules(NOTES, [pitch[60], dur[twelve], pitch[62], dur[twelve]], max_polyphony=2)
    assert ban[pitch.start : pitch.stop].all() and not ban[shift[0]]
    _, ban = _rules(NOTES, [pitch[60], dur[twelve], shift[twelve]], max_polyphony=2)
    assert not ban[pitch[60]]  # the note has ended: the pitch may sound again


def _account(events: Events, tokens: list[int], max_note: int) -> tuple:
    """One row's track after ``tokens`` in plain Python, event by event: now, until per
    pitch, aux (performance: sounding per pitch; beat: the pitch waiting for a DURATION),
    notes started."""
    r, steps = events.vocab.ranges, events.token_steps()
    starts = events.note_start_ids()
    now, until, notes, waiting = 0, [0] * len(starts), 0, -1
    sounding = [False] * len(starts)
    for t in tokens:
        if events.is_notes and t in r[beat.DURATION] and waiting >= 0:
            until[waiting] = now + int(events.vocab.steps[t - r[beat.DURATION].start])
        if not events.is_notes and t in r[perf.NOTE_OFF]:
            p = t - r[perf.NOTE_OFF].start
            until[p], sounding[p] = min(until[p], now), False
        if t in starts:
            p = t - starts.start
            if not events.is_notes:
                until[p], sounding[p] = now + max_note, True
            notes += 1
        waiting = t - starts.start if t in starts else -1
        now += int(steps[t])
    return now, until, waiting if events.is_notes else sounding, notes


@pytest.mark.parametrize("events", [PERF, NOTES], ids=["performance", "notes"])
def test_batched_tracks_match_a_plain_account_of_each_row(events):
    tokens = np.random.default_rng(0).integers(0, events.size, (4, 400))  # (B, T)
    for sounding in (True, False):
        tracker = make_tracker(events, 7, torch.device("cpu"), sounding)
        track = Track(*(t.expand(4, *t.shape[1:]).contiguous() for t in tracker.start()))
        for column in torch.as_tensor(tokens).T:
            track = tracker.update(track, column)
        for b, row in enumerate(tokens.tolist()):
            now, until, aux, notes = _account(events, row, 7)
            if not (sounding or events.is_notes):  # not kept: nothing reads it
                aux = [False] * len(until)
            assert (track.now[b], track.notes[b]) == (now, notes)
            assert track.until[b].tolist() == until and track.aux[b].tolist() == aux


# ------------------------------------------------------------- models that want to break them


def _forced_model(events, prefer):
    """A tiny model whose every step strongly prefers the token ids ``prefer`` (logit +8)."""
    torch.manual_seed(0)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=events.size))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        for ids, boost in prefer:
            model.head.bias[ids.start : ids.stop] = boost
    return model


@pytest.mark.parametrize("engine", ["plain", "fused"])
def test_performance_sampling_never_restrikes_or_exceeds_limits(engine):
    r = PERF.vocab.ranges
    model = _forced_model(PERF, [(r[perf.NOTE_ON], 8.0), (r[perf.NOTE_OFF], -8.0),
                                 (r[perf.TIME_SHIFT], 2.0)])
    config = SampleConfig(events=600, max_polyphony=3, max_note_seconds=0.4)
    gen = generate(model, PERF.config, num=3, config=config, rng_seed=5, engine=engine)
    for row in gen.tokens:
        sounding: dict[int, int] = {}  # pitch -> start step
        now, ons = 0, 0
        for tok in row[gen.seed_len :]:
            ev = PERF.vocab.decode_event(int(tok))
            if ev.kind == perf.NOTE_ON:
                assert ev.value not in sounding  # never re-struck while sounding
                sounding[ev.value] = now
                ons += 1
                assert len(sounding) <= 3
            elif ev.kind == perf.NOTE_OFF:
                assert ev.value in sounding
                del sounding[ev.value]
            elif ev.kind == perf.TIME_SHIFT:
                now += ev.value
                assert all(now - s <= 40 for s in sounding.values())  # 0.4 s at 10 ms
        assert ons > 20  # it did play (the model wants to)
        notes = to_notes(row, PERF.config, max_note_seconds=gen.max_note_seconds)
        assert sounding_at_onsets(notes["start"], notes["end"]).max() <= 3  # as decoded
        assert (notes["end"] - notes["start"]).max() <= 0.4 + 1e-9


def test_beat_sampling_keeps_grammar_and_limits():
    v = NOTES.vocab
    r = v.ranges
    model = _forced_model(NOTES, [(r[beat.PITCH], 8.0), (r[beat.DURATION], -4.0)])
    with torch.no_grad():  # and the longest durations above all
        model.head.bias[r[beat.DURATION].stop - 5 : r[beat.DURATION].stop] = 12.0
    config = SampleConfig(events=500, max_polyphony=4, max_note_seconds=1.0)  # 24 steps
    gen = generate(model, NOTES, num=2, config=config, rng_seed=1, engine="plain")
    for row in gen.tokens:
        until = np.zeros(128, np.int64)
        now, prev = 0, None
        for tok in row[gen.seed_len :]:
            ev = v.decode_event(int(tok))
            assert (ev.kind == beat.DURATION) == (prev is not None and prev.kind == beat.PITCH)
            if ev.kind == beat.PITCH:
                assert until[ev.value] <= now  # not sounding
                assert (until > now).sum() < 4  # room under the polyphony limit
            elif ev.kind == beat.DURATION:
                assert v.steps[ev.value] <= 24
                until[prev.value] = now + v.steps[ev.value]
            elif ev.kind == beat.SHIFT:
                now += v.steps[ev.value]
            prev = ev
        piece = NOTES.decode(row)
        assert len(piece.notes) > 30 and grid_fraction(piece) == 1.0


def test_old_models_sample_under_the_old_rules_unless_a_limit_is_given():
    """No measured guards and no limit given (a model trained before guards existed): the
    old rules, the silence guard only; any limit, measured or given, turns the guards on."""
    assert vocabulary_of(EventConfig().to_dict()) == PERF  # no "kind": performance events
    on = PERF.vocab.ranges[perf.NOTE_ON]
    legacy, ban = _rules(PERF, [on[60]])
    assert legacy and not ban.any()  # re-striking 60 is what the old rules allowed
    assert not _rules(PERF, [on[60]], max_polyphony=8)[0]
    assert _rules(PERF, [on[60]], max_note_seconds=5.0)[1][on[60]]
    torch.manual_seed(3)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=PERF.size))
    a = generate(model, EventConfig(), num=2, config=SampleConfig(events=64), rng_seed=2)
    c = generate(model, EventConfig(), num=2, config=SampleConfig(events=64), rng_seed=2,
                 guards=Guards(max_polyphony=1))
    assert any((x != y).any() for x, y in zip(a.tokens, c.tokens, strict=True))


# ------------------------------------------------------------- measured on the corpus


def test_guards_are_measured_from_histograms(tmp_path):
    notes = np.zeros(4, [("start", float), ("end", float)])
    notes["start"], notes["end"] = [0, 0, 0.5, 1.0], [1.0, 0.5, 1.0, 1.2]
    assert list(sounding_at_onsets(notes["start"], notes["end"])) == [2, 2, 2, 1]
    piece = load(write_file(tmp_path / "a.mid", [(60, 0, 480), (64, 0, 240), (67, 0, 960)]))
    stats = file_stats(piece)
    assert stats["poly"] == [3, 3]  # from bin 3: a chord, each of its onsets hears all three
    g = combine([stats, stats])
    assert g.max_polyphony == 3
    assert 2.0 <= g.max_note_beats < 2.4 and 1.0 <= g.max_note_seconds < 1.2


def test_auto_picks_notes_for_quantised_and_performance_for_jittered(tmp_path):
    report = prepare(tunes(tmp_path / "q"), tmp_path / "cq", CorpusConfig(vocabulary="auto"))
    assert report.vocabulary == "notes" and report.why.startswith("notes (100.00% of onsets")
    corpus = Corpus.open(tmp_path / "cq")
    assert corpus.events.is_notes and corpus.guards.max_polyphony == 2
    assert corpus.index["on_grid"].sum() == corpus.index["onsets"].sum() == 8 * 80
    played = tunes(tmp_path / "p", jitter=17, seed=4)
    report = prepare(played, tmp_path / "cp", CorpusConfig(vocabulary="auto"))
    assert report.vocabulary == "performance" and "below 90%" in report.why
    assert not Corpus.open(tmp_path / "cp").events.is_notes
    again = prepare(played, tmp_path / "cp", CorpusConfig(vocabulary="auto"))
    assert again.files_parsed == 0 and again.vocabulary == "performance"  # remembered
    forced = prepare(played, tmp_path / "cp2", CorpusConfig(vocabulary="notes"))
    assert forced.vocabulary == "notes" and forced.why == "notes (as asked)"


def test_beat_vocabulary_augmentation_transposes_pitches_only(tmp_path):
    tokens = NOTES.encode(load(write_file(tmp_path / "b.mid", [(60, 0, 480), (64, 480, 960)])))
    up = augment_tokens(tokens, NOTES.vocab, transpose=2)
    assert list(NOTES.decode(up).notes["pitch"]) == [62, 66]
    assert (NOTES.decode(up).beats == NOTES.decode(tokens).beats).all()
    with pytest.raises(Exception, match="not time-stretched"):
        augment_tokens(tokens, NOTES.vocab, stretch=1.05)


# ------------------------------------------------------------- end to end


def test_notes_model_end_to_end_writes_grid_notes_at_the_seed_tempo(tmp_path):
    midi = tunes(tmp_path / "midi", n=10, tempo=600_000)
    runner = CliRunner()
    result = runner.invoke(main, ["prepare", str(midi), "--out", str(tmp_path / "c"), "-q",
                                  "--valid", "0.2", "--test", "0"])
    assert result.exit_code == 0, result.output
    assert "events: notes (100.00% of onsets on the 1/12-beat grid)" in result.output
    result = runner.invoke(main, ["train", str(tmp_path / "c"), "--out", str(tmp_path / "m"),
                                  "--preset", "tiny", "--steps", "3", "--eval-every", "3",
                                  "--seq-len", "32", "--batch-size", "4", "--device", "cpu",
                                  "-q"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "m" / "best" / "checkpoint.json").read_text())
    assert meta["events"]["kind"] == "notes"
    assert meta["data"]["guards"]["max_polyphony"] == 2 and meta["data"]["tempo"] == 600_000
    seed = write_file(tmp_path / "seed.mid", [(60, 0, 480), (64, 480, 960)], tempo=400_000)
    result = runner.invoke(main, ["generate", "--checkpoint", str(tmp_path / "m" / "best"),
                                  "--seed", str(seed), "--length", "6", "--rng-seed", "0",
                                  "--out", str(tmp_path / "g"), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = mido.MidiFile(tmp_path / "g" / "composer-001.mid")
    tempos = [m.tempo for t in out.tracks for m in t if m.type == "set_tempo"]
    assert tempos == [400_000]  # the seed's tempo
    ticks = []
    for track in out.tracks:
        now = 0
        for m in track:
            now += m.time
            if m.type in ("note_on", "note_off"):
                ticks.append(now)
    assert len(ticks) > 4 and all(t % (out.ticks_per_beat // 12) == 0 for t in ticks)
    result = runner.invoke(main, ["generate", "--checkpoint", str(tmp_path / "m" / "best"),
                                  "--length", "4", "--rng-seed", "0", "--max-polyphony", "1",
                                  "--out", str(tmp_path / "g"), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    piece = load(tmp_path / "g" / "composer-002.mid")
    assert piece.tempos["us_per_quarter"][0] == 600_000  # the corpus's median tempo
    assert (sounding_at_onsets(piece.notes["start"], piece.notes["end"]) <= 1).all()


def test_generate_takes_guards_from_the_checkpoint_and_flags_override_them(tmp_path):
    import shutil

    ckpt = tmp_path / "m"  # a performance-vocabulary model: guards in seconds
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints"
                    / "bach-performance-2x256", ckpt)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["data"]["guards"] = {"max_polyphony": 1, "max_note_seconds": 0.3}
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    args = ["generate", "--checkpoint", str(ckpt), "--length", "6", "--rng-seed", "0", "-q",
            "--out", str(tmp_path / "g"), "--copy-warn", "0", "--device", "cpu"]
    assert CliRunner().invoke(main, args).exit_code == 0
    notes = load(tmp_path / "g" / "composer-001.mid").notes
    assert len(notes) > 5 and (notes["end"] - notes["start"]).max() <= 0.3 + 2e-3
    assert (sounding_at_onsets(notes["start"], notes["end"]) == 1).all()
    result = CliRunner().invoke(main, [*args, "--max-polyphony", "3", "--max-note", "1.5"])
    assert result.exit_code == 0, result.output
    notes = load(tmp_path / "g" / "composer-002.mid").notes
    assert sounding_at_onsets(notes["start"], notes["end"]).max() <= 3
    assert 0.3 < (notes["end"] - notes["start"]).max() <= 1.5 + 2e-3
