"""Ensembles and drums: the instrument-aware vocabularies, save/load of parts, instrument
lists, restricted generation, and old models unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.cli.main import main
from composer.core.messages import ComposerError
from composer.corpus.cache import Corpus
from composer.corpus.facts import Guards
from composer.generation.config import GenerateRequest, SampleConfig
from composer.generation.ensemble import REST_SECONDS, ensemble_processors
from composer.generation.loop import generate, start_tokens
from composer.generation.output import to_piece
from composer.generation.seeds import restrict_seed, seed_from_midi, seed_instruments
from composer.generation.session import choose_instruments, generate_music
from composer.generation.track import Track
from composer.midi.instruments import Ensemble, InstrumentError, parse_instruments, program_name
from composer.midi.io import NOTE_DTYPE, LoadConfig, Note, load, save
from composer.model.checkpoint import load_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens.beats import NoteEventConfig, NoteVocabulary, clock_of
from composer.tokens.performance import DRUM, NOTE_ON, PROGRAM, EventConfig, Vocabulary
from composer.tokens.vocab import NOTES, PERFORMANCE, Events, vocabulary_of
from composer.training.augment import augment_tokens
from composer.training.config import TrainRequest
from composer.training.recipe import train_model

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = ROOT / "datasets" / "ensemble"
PERF = Events(PERFORMANCE, EventConfig(instruments=True))
BEAT = Events(NOTES, NoteEventConfig(instruments=True))
pytestmark = pytest.mark.usefixtures("one_thread")

TRIO = [Note(60, 80, 0.0, 1.0, 40), Note(64, 80, 0.0, 0.5, 41), Note(36, 100, 0.0, 0.05, 0, True),
        Note(60, 90, 0.5, 1.5, 41), Note(38, 70, 0.5, 0.6, 25, True)]


# ------------------------------------------------------------------------ range tables


def test_range_tables_are_pinned():
    perf = Vocabulary(EventConfig(instruments=True))
    assert perf.size == 644 and perf.ranges[PROGRAM] == range(388, 516)
    assert perf.ranges[DRUM] == range(516, 644)
    beat = NoteVocabulary(NoteEventConfig(instruments=True))
    assert beat.size == 520 and beat.ranges[PROGRAM] == range(264, 392)
    assert beat.ranges[DRUM] == range(392, 520)
    assert perf.token_str(388 + 40) == "PROGRAM_40" and perf.token_str(516 + 36) == "DRUM_36"
    assert beat.token_str(264 + 42) == "PROGRAM_42" and beat.token_str(392 + 38) == "DRUM_38"
    # the plain vocabularies: the same ids, and dicts without the new key
    assert Vocabulary(EventConfig()).size == 388 and NoteVocabulary().size == 264
    assert "instruments" not in EventConfig().to_dict()
    assert "instruments" not in Events(NOTES, NoteEventConfig()).to_dict()
    assert Events.from_dict(PERF.to_dict()) == PERF and Events.from_dict(BEAT.to_dict()) == BEAT
    assert PERF.instrument_ids() == (range(388, 516), range(516, 644))
    assert Events(PERFORMANCE, EventConfig()).instrument_ids() == (range(388, 388),) * 2


def test_hand_made_trio_with_drums_encodes_to_pinned_tokens():
    words = [PERF.vocab.token_str(int(t)) for t in PERF.encode(TRIO)]
    assert words == ["PROGRAM_40", "VELOCITY_19", "NOTE_ON_60", "PROGRAM_41", "NOTE_ON_64",
                     "VELOCITY_24", "DRUM_36", "TIME_SHIFT_500ms", "NOTE_OFF_64", "VELOCITY_22",
                     "NOTE_ON_60", "VELOCITY_17", "DRUM_38", "TIME_SHIFT_500ms", "NOTE_OFF_60",
                     "TIME_SHIFT_500ms", "NOTE_OFF_60"]
    words = [BEAT.vocab.token_str(int(t)) for t in BEAT.encode(TRIO)]
    assert words == ["PROGRAM_40", "VELOCITY_19", "PITCH_60", "DURATION_2", "PROGRAM_41",
                     "PITCH_64", "DURATION_1", "VELOCITY_24", "DRUM_36", "SHIFT_1", "VELOCITY_22",
                     "PITCH_60", "DURATION_2", "VELOCITY_17", "DRUM_38"]
    notes = PERF.decode(PERF.encode(TRIO)).notes
    assert sorted(zip(notes["program"].tolist(), notes["is_drum"].tolist(), strict=True)) == [
        (0, True), (0, True), (40, False), (41, False), (41, False)]


@st.composite
def ensembles(draw: st.DrawFn) -> np.ndarray:
    """Random notes of a few instruments and drums; narrow pitch ranges, so unisons and
    same-pitch overlaps across instruments happen."""
    low = draw(st.integers(30, 90))
    time = st.integers(0, 400).map(lambda k: k / 50)
    rows = draw(st.lists(st.tuples(
        st.integers(low, low + draw(st.sampled_from([0, 2, 12]))), st.integers(1, 127), time,
        st.integers(0, 150).map(lambda k: k / 50), st.sampled_from([0, 40, 41, 42, 73]),
        st.booleans()), max_size=30))
    return np.array([(p, v, s, s + d, g, r) for p, v, s, d, g, r in rows], dtype=NOTE_DTYPE)


@settings(max_examples=60, deadline=None)
@given(ensembles())
def test_decode_of_encode_is_quantise_for_both_vocabularies(notes):
    for events in (PERF, BEAT):
        got, want = events.decode(events.encode(notes)), events.quantise(notes)
        np.testing.assert_array_equal(got.notes, want.notes)
        if events.is_notes:
            np.testing.assert_array_equal(got.beats, want.beats)
        # every pitched note keeps its program; drums keep their key
        kept = notes[~notes["is_drum"]]
        assert sorted(got.notes["program"][~got.notes["is_drum"]].tolist()) == sorted(
            kept["program"].tolist())
        assert sorted(got.notes["pitch"][got.notes["is_drum"]].tolist()) == sorted(
            notes["pitch"][notes["is_drum"]].tolist())


@settings(max_examples=40, deadline=None)
@given(ensembles())
def test_pieces_encode_alike_alone_and_together(notes):
    for events in (PERF, BEAT):
        half = len(notes) // 2
        together = events.encode_many([notes[:half], notes[half:]])
        assert [t.tolist() for t in together] == [events.encode(notes[:half]).tolist(),
                                                  events.encode(notes[half:]).tolist()]


def ensemble_files(count: int) -> list[Path]:
    files = sorted(ENSEMBLE.glob("*.mid"))
    if not files:
        pytest.skip("datasets/ensemble is not built")
    return files[:: max(1, len(files) // count)][:count]


def test_ensemble_corpus_files_round_trip():
    for path in ensemble_files(4):
        piece = load(path, LoadConfig(keep_drums=True))
        assert len(set(piece.notes["program"].tolist())) >= 2, path.name
        for events in (PERF, BEAT):
            got, want = events.decode(events.encode(piece), clock_of(piece)), events.quantise(piece)
            np.testing.assert_array_equal(got.notes, want.notes)
            assert set(got.notes["program"].tolist()) == set(piece.notes["program"].tolist())


# ------------------------------------------------------------------------ augmentation


def test_transposition_moves_pitches_and_never_drums():
    tokens = PERF.encode(TRIO)
    moved = augment_tokens(tokens, PERF.vocab, transpose=2)
    drums, programs = PERF.instrument_ids()[1], PERF.instrument_ids()[0]
    fixed = np.isin(tokens, np.r_[drums, programs])
    assert np.array_equal(moved[fixed], tokens[fixed]) and fixed.sum() == 4
    on = PERF.vocab.ranges[NOTE_ON]
    assert ((moved - tokens.astype(int))[np.isin(tokens, on)] == 2).all()
    notes = PERF.decode(moved).notes
    assert sorted(notes["pitch"][notes["is_drum"]].tolist()) == [36, 38]
    beat = augment_tokens(BEAT.encode(TRIO), BEAT.vocab, transpose=-3)
    notes = BEAT.decode(beat).notes
    assert sorted(notes["pitch"][notes["is_drum"]].tolist()) == [36, 38]
    assert sorted(notes["pitch"][~notes["is_drum"]].tolist()) == [57, 57, 61]


# ------------------------------------------------------------------------ save and load


def test_save_writes_named_tracks_channels_and_drums_on_channel_10(tmp_path):
    path = tmp_path / "trio.mid"
    save(TRIO, path)
    mid = mido.MidiFile(path)
    tracks = {}
    for track in mid.tracks[1:]:
        name = next(m.name for m in track if m.type == "track_name")
        channels = {m.channel for m in track if m.type in ("note_on", "note_off")}
        programs = [m.program for m in track if m.type == "program_change"]
        tracks[name] = (channels, programs)
    assert tracks == {"Violin": ({0}, [40]), "Viola": ({1}, [41]), "Drums": ({9}, [])}
    back = load(path, LoadConfig(keep_drums=True)).notes
    assert sorted(zip(back["program"].tolist(), back["is_drum"].tolist(), strict=True)) == [
        (0, True), (0, True), (40, False), (41, False), (41, False)]
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    assert sorted((i.program, i.is_drum, i.name) for i in pm.instruments) == [
        (0, True, "Drums"), (40, False, "Violin"), (41, False, "Viola")]


def test_more_than_15_instruments_share_channels_and_load_back(tmp_path):
    notes = [Note(60 + i % 5, 80, i * 0.1, i * 0.1 + 0.5, i) for i in range(20)]
    save(notes, tmp_path / "many.mid")
    back = load(tmp_path / "many.mid").notes
    assert sorted(back["program"].tolist()) == list(range(20))
    channels = {m.channel for t in mido.MidiFile(tmp_path / "many.mid").tracks for m in t
                if m.type == "note_on"}
    assert channels == set(range(16)) - {9}


def test_music21_reads_the_parts_of_a_saved_ensemble(tmp_path):
    music21 = pytest.importorskip("music21")
    path = tmp_path / "quartet.mid"
    notes = [Note(76, 80, 0, 1, 40), Note(67, 80, 0, 1, 41), Note(48, 80, 0, 1, 42),
             Note(79, 80, 1, 2, 40), Note(64, 80, 1, 2, 41), Note(43, 80, 1, 2, 42),
             Note(36, 90, 0, 0.1, 0, True)]
    save(notes, path)
    score = music21.converter.parse(str(path))
    parts = {p.partName: {type(i).__name__ for i in p.recurse().getElementsByClass("Instrument")}
             for p in score.parts}
    assert parts == {"Violin": {"Violin"}, "Viola": {"Viola"}, "Cello": {"Violoncello"},
                     "Drums": {"Instrument"}}
    assert [len(p.flatten().notes) for p in score.parts] == [2, 2, 2, 1]


def test_program_changes_mid_track_and_channels_without_one(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", note=60, velocity=80, channel=0, time=0))
    track.append(mido.Message("note_off", note=60, velocity=0, channel=0, time=480))
    track.append(mido.Message("program_change", program=73, channel=0, time=0))
    track.append(mido.Message("note_on", note=62, velocity=80, channel=0, time=0))
    track.append(mido.Message("note_on", note=40, velocity=80, channel=3, time=0))
    track.append(mido.Message("note_on", note=42, velocity=90, channel=9, time=0))
    track.append(mido.Message("note_off", note=62, velocity=0, channel=0, time=480))
    track.append(mido.Message("note_off", note=40, velocity=0, channel=3, time=0))
    track.append(mido.Message("note_off", note=42, velocity=0, channel=9, time=0))
    mid.tracks.append(track)
    mid.save(tmp_path / "changes.mid")
    notes = load(tmp_path / "changes.mid", LoadConfig(keep_drums=True)).notes
    got = sorted(zip(notes["pitch"].tolist(), notes["program"].tolist(),
                     notes["is_drum"].tolist(), strict=True))
    # before the change: piano (0); after it: flute (73); channel 4 never changed: piano
    assert got == [(40, 0, False), (42, 0, True), (60, 0, False), (62, 73, False)]
    words = [PERF.vocab.token_str(int(t)) for t in PERF.encode(notes)]
    assert words[:3] == ["PROGRAM_0", "VELOCITY_19", "NOTE_ON_60"]
    assert "PROGRAM_73" in words and "DRUM_42" in words


# ------------------------------------------------------------------------ instrument lists


def test_instrument_lists():
    assert parse_instruments("violin, viola,cello") == Ensemble((40, 41, 42), False)
    assert parse_instruments("French Horn,drums,73") == Ensemble((60, 73), True)
    assert parse_instruments("brass").programs == tuple(range(56, 64))
    assert parse_instruments("piano").programs == (0,)
    assert parse_instruments("Acoustic Guitar (nylon)").programs == (24,)
    assert program_name(42) == "Cello"
    with pytest.raises(InstrumentError, match=r"unknown instrument 'violn'; did you mean "
                                              r"violin.*e\.g\. violin"):
        parse_instruments("violin,violn")
    for bad, message in (("", "empty"), ("200", "outside"), ("kazoo", "unknown instrument")):
        with pytest.raises(InstrumentError, match=message):
            parse_instruments(bad)


def test_cli_instrument_list_errors_are_usage_errors(tmp_path):
    result = CliRunner().invoke(main, ["generate", "--instruments", "violn", "--out",
                                       str(tmp_path)])
    assert result.exit_code == 2 and "unknown instrument 'violn'" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------ generation


def tiny(events: Events, seed: int = 0) -> ComposerLSTM:
    torch.manual_seed(seed)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=events.size)).eval()
    with torch.no_grad():
        model.head.weight.mul_(3.0)
    return model


@pytest.mark.parametrize("events", [PERF, BEAT], ids=["performance", "notes"])
def test_generation_restricted_to_chosen_instruments(events):
    model = tiny(events)
    seed = restrict_seed(start_tokens(events), events, (40, 42))
    played = {}
    for chosen in (None, (40, 42)):
        config = SampleConfig(events=400, instruments=chosen, drums=chosen is None)
        gen = generate(model, events, seed, 3, config, rng_seed=5)
        programs, drums = set(), 0
        for row in gen.tokens:
            notes = to_piece(row, events, program=40).notes
            programs |= set(notes["program"][~notes["is_drum"]].tolist())
            drums += int(notes["is_drum"].sum())
        played[chosen] = programs, drums
    assert played[(40, 42)][0] <= {40, 42} and played[(40, 42)][0]
    assert played[(40, 42)][1] == 0
    assert played[None][0] - {40, 42}, "unrestricted, the random model plays others too"


def test_choose_instruments_rules(tmp_path):
    plain = Events(PERFORMANCE, EventConfig())
    assert choose_instruments(plain, None, None) is None
    with pytest.raises(ComposerError, match="trained without instruments"):
        choose_instruments(plain, Ensemble((40,), False), None)
    with pytest.raises(ComposerError, match="at least one pitched"):
        choose_instruments(PERF, Ensemble((), True), None)
    save(TRIO, tmp_path / "seed.mid")
    said = []
    seeded = seed_instruments(str(tmp_path / "seed.mid"))
    assert choose_instruments(PERF, None, seeded, said.append) == Ensemble((40, 41), True)
    assert said == ["instruments: Violin, Viola, Drums (from the seed)"]
    tokens = seed_from_midi(tmp_path / "seed.mid", None, PERF)
    assert (np.isin(tokens, PERF.instrument_ids()[1])).sum() == 2  # the seed keeps its drums
    assert restrict_seed(tokens, PERF, (41,)).tolist() == tokens.tolist()  # ends on viola
    assert restrict_seed(tokens, PERF, (42,))[-1] == 388 + 42


def test_prepare_train_generate_an_ensemble_end_to_end(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        notes = [Note(int(rng.integers(lo, lo + 12)), 80, t * 0.25, t * 0.25 + 0.25, prog)
                 for t in range(32) for lo, prog in ((72, 40), (60, 41), (43, 42))]
        notes += [Note(36, 100, t * 0.5, t * 0.5 + 0.1, 0, True) for t in range(16)]
        save(notes, midi / f"q{k}.mid")
    result = CliRunner().invoke(main, ["prepare", str(midi), "--out", str(tmp_path / "cache"),
                                       "--workers", "1", "--instruments", "-q"])
    assert result.exit_code == 0, result.output
    assert Corpus.open(tmp_path / "cache").events.instruments
    run = train_model(TrainRequest(str(tmp_path / "cache"), str(tmp_path / "run"), steps=3,
                                   preset="tiny", device="cpu", config=_fast()))
    ckpt = load_checkpoint(tmp_path / "run" / "best")
    assert vocabulary_of(ckpt.event_config).instruments and run.step == 3
    done = generate_music(GenerateRequest(
        checkpoint=str(tmp_path / "run"), seed=str(midi / "q0.mid"), seed_seconds=2.0,
        sample=SampleConfig(events=200), out=str(tmp_path / "out"), num=2, rng_seed=1,
        device="cpu", copy_warn=0, instruments=None))
    for output in done.outputs:
        notes = load(output.path, LoadConfig(keep_drums=True)).notes
        assert set(notes["program"][~notes["is_drum"]].tolist()) <= {40, 41, 42}


def _fast():
    from composer.training.config import TrainConfig

    return TrainConfig(batch_size=4, seq_len=16, eval_seq_len=32, eval_every=3,
                       warmup_steps=1, eval_max_batches=2, log_every=1)


# ------------------------------------------------------------------------ old models


def test_shipped_model_generates_exactly_as_before():
    """Tokens drawn by the (then) shipped model, pinned before instruments existed."""
    ckpt = load_checkpoint(ROOT / "checkpoints" / "bach-performance-2x256")
    events = vocabulary_of(ckpt.event_config)
    assert not events.instruments and events.size == 388
    seed = seed_from_midi(ROOT / "datasets/bach-chorales/bwv1.6.mid", 2.0, events)
    gen = generate(ckpt.model, events, seed, num=2, config=SampleConfig(events=160),
                   rng_seed=11, engine="plain", guards=Guards.from_dict(ckpt.data.get("guards")))
    digest = hashlib.sha256(b"".join(t.astype(np.int64).tobytes() for t in gen.tokens))
    assert digest.hexdigest() == ("7f446e982009d431e50ddce715e1754e8a819938a7231091b77d6e2cd5"
                                  "06f6ba")


@pytest.mark.parametrize("events", [PERF, BEAT], ids=["performance", "notes"])
def test_every_asked_instrument_enters(events):
    """A model that never switches instruments (PROGRAM and DRUM scores far down) is made
    to by the coverage feedback: each asked instrument and the drums enter every piece."""
    model = tiny(events, seed=2)
    programs, drums = events.instrument_ids()
    with torch.no_grad():
        model.head.bias[programs.start : programs.stop] -= 8.0
        model.head.bias[drums.start : drums.stop] -= 8.0

    def heard(gain: float) -> list[tuple[set, bool]]:
        config = SampleConfig(seconds=20, instruments=(40, 42, 73), drums=True,
                              instrument_gain=gain)
        gen = generate(model, events, None, 3, config, rng_seed=1)
        out = []
        for row in gen.tokens:
            notes = to_piece(row[gen.seed_len:], events, program=40).notes
            out.append((set(notes["program"][~notes["is_drum"]].tolist()),
                        bool(notes["is_drum"].any())))
        return out

    assert all(p == {40, 42, 73} and d for p, d in heard(SampleConfig.instrument_gain))
    assert not any(p == {40, 42, 73} and d for p, d in heard(0.0))


def test_coverage_feedback_grows_until_heard_and_after_a_rest():
    events = BEAT
    programs, _ = events.instrument_ids()
    pitch = events.note_start_ids()[20]
    config = SampleConfig(instruments=(40, 42), drums=False, instrument_gain=1.0)
    seed = np.array([programs[42], pitch])  # the seed plays the viola already
    (cov,) = ensemble_processors(events, config, seed, 2, sps=10.0, now0=5, device="cpu")
    assert cov.heard.tolist() == [[False, True], [False, True]]

    def at(*now: int) -> Track:
        return Track(torch.tensor(now), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2))

    scores = cov(torch.zeros(2, events.size), at(5, 35))
    assert scores[:, programs[42]].tolist() == [0.0, 0.0]  # heard 0 or 3 s ago: resting
    assert scores[:, programs[40]].tolist() == pytest.approx([0.0, 3.0])  # 3 s unheard
    # a switch, no note
    cov.observe(torch.tensor([programs[40], programs[40]]), torch.tensor([35, 35]))
    assert cov.heard.tolist() == [[False, True], [False, True]]
    # a note at 3.5 s in row 0; a velocity in row 1
    cov.observe(torch.tensor([pitch, int(events.start_tokens()[0])]), torch.tensor([40, 40]))
    assert cov.heard.tolist() == [[True, True], [False, True]]
    rest = REST_SECONDS * 10
    scores = cov(torch.zeros(2, events.size), at(40 + rest + 20, 5 + rest + 30))
    # row 0: the violin played 2 s past its rest ago, the viola (seed) 2 s + 3.5 s past it
    assert scores[0, programs[40]].item() == pytest.approx(2.0)
    assert scores[0, programs[42]].item() == pytest.approx(5.5)
    assert scores[1, programs[42]].item() == pytest.approx(3.0)  # silent 3 s past its rest
    single = SampleConfig(instruments=(40,), drums=False)
    assert ensemble_processors(events, single, seed, 2, 10.0, 0, "cpu") == []
