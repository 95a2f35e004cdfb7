"""The music statistics that find hanging notes and rhythms off the grid, on hand-made notes
whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import write_tune

from composer.cli.main import main
from composer.cli.report import music_table
from composer.core.messages import MetricsError
from composer.evaluation.musicstats import (
    beyond_reference,
    compare_sets,
    long_note_share,
    longest_run,
    max_polyphony,
    piece_features,
    restrike_share,
)
from composer.midi.io import Note, as_note_array, load, save
from composer.midi.timing import BEAT_DTYPE


def notes_of(*rows) -> np.ndarray:
    """Notes from (pitch, start, end) rows."""
    return as_note_array([Note(p, 80, s, e) for p, s, e in rows])


# 60: held 0-1, re-struck at 0.5 (sounding) up to 2, again at 2 (abutting: not a re-strike),
# 10 ms later (joined into the run), 20 ms later (a new run). 62: two notes struck together.
DRONE = notes_of((60, 0.0, 1.0), (60, 0.5, 2.0), (60, 2.0, 3.0), (60, 3.005, 4.0),
                 (60, 4.02, 5.0), (62, 0.0, 1.0), (62, 0.0, 0.5), (64, 6.0, 6.25))


def test_restrike_share_counts_notes_starting_on_a_sounding_pitch():
    # Re-struck: 60 at 0.5 (60 sounds until 1.0) and the second 62 at 0.0 (the one ending
    # at 0.5 comes first in (start, end) order). Not: 60 at 2.0 (the run ends at 2.0).
    assert restrike_share(DRONE) == pytest.approx(2 / 8)
    assert restrike_share(notes_of((60, 0.0, 1.0), (62, 0.5, 1.0), (60, 1.0, 2.0))) == 0.0
    assert restrike_share(notes_of()) == 0.0
    assert piece_features(DRONE)["restrike_share"] == pytest.approx(0.25)


def test_longest_run_joins_one_pitch_across_overlaps_and_small_gaps():
    assert longest_run(DRONE) == pytest.approx(4.0)  # 60 from 0 to 4 (5 ms gap joined)
    assert longest_run(DRONE, gap=0.0) == pytest.approx(3.0)  # 0 to 3
    assert longest_run(DRONE, gap=0.05) == pytest.approx(5.0)  # the 20 ms gap joined too
    assert longest_run(notes_of((60, 0.0, 0.5), (62, 0.5, 1.0), (60, 1.0, 1.25))) == 0.5
    assert longest_run(notes_of()) == 0.0
    assert piece_features(DRONE)["longest_run"] == pytest.approx(4.0)


def test_long_note_share_and_max_polyphony():
    # Lengths: 1, 1.5, 1, 0.995, 0.98, 1, 0.5, 0.25.
    assert long_note_share(DRONE, 1.0) == pytest.approx(1 / 8)
    assert long_note_share(DRONE, 0.9) == pytest.approx(6 / 8)
    assert long_note_share(DRONE, 2.0) == 0.0 and long_note_share(notes_of(), 0.0) == 0.0
    # 3 before 0.5 (60, 62, 62) and after (60, 60, 62): the 62 ending at 0.5 makes room.
    assert max_polyphony(DRONE) == 3
    chord_then_note = notes_of((60, 0, 1), (64, 0, 1), (67, 0, 1), (72, 1, 2))
    assert max_polyphony(chord_then_note) == 3  # the note at 1.0 starts as the chord ends
    assert piece_features(chord_then_note)["max_polyphony"] == 3
    assert max_polyphony(notes_of()) == 0


def test_grid_share_from_given_beats_and_drums_left_out():
    notes = notes_of(*[(60 + i, i, i + 0.5) for i in range(6)])
    beats = np.zeros(6, BEAT_DTYPE)
    # On a 1/12-beat grid (tolerance 1 tick of 480 = 1/480 beat): 0, 1/3, 1/4, 1/12 + 1/480;
    # off: 0.1 and 1/12 + 2/480.
    beats["start"] = [0.0, 1 / 3, 0.25, 0.1, 1 / 12 + 1 / 480, 1 / 12 + 2 / 480]
    beats["end"] = beats["start"] + 1.0
    assert piece_features(notes, beats)["grid_share"] == pytest.approx(4 / 6)
    drums = notes.copy()
    drums["is_drum"][[3, 5]] = True  # the two notes off the grid are drums: left out
    assert piece_features(drums, beats)["grid_share"] == 1.0
    with pytest.raises(MetricsError, match="5 beat rows for 6 notes"):
        piece_features(notes, beats[:5])


def test_grid_share_of_a_midi_file_uses_its_ticks(tmp_path):
    # 480 ticks per quarter, grid step 40 ticks: onsets 0, 41, 82, 123 are 0, 1, 2, 3 ticks off.
    piece = load(write_tune(tmp_path / "t.mid", [60, 62, 64, 65], step=41))
    assert piece_features(piece)["grid_share"] == pytest.approx(2 / 4)
    # A bare note array is read at 120 bpm: 41 ticks at 120 bpm / 480 tpq is 42.7 ms.
    assert piece_features(piece.notes)["grid_share"] == pytest.approx(2 / 4)


def test_beyond_reference_compares_with_the_references_longest_note_and_run():
    reference = [notes_of((60, 0, 2), (62, 2, 3)), notes_of((60, 0, 1), (60, 1, 2.5))]
    generated = [notes_of((60, 0, 3), (64, 0, 1)), notes_of((60, 0, 1), (62, 1, 1.5))]
    out = beyond_reference(generated, reference)
    assert out["longest_note"] == {"generated": 3.0, "reference": 2.0}
    assert out["longest_run"] == {"generated": 3.0, "reference": 2.5}  # 60 from 0 to 2.5
    assert out["longer_notes_share"] == pytest.approx(1 / 4)  # the 3 s note of 4 notes
    assert out["longer_runs_share"] == pytest.approx(1 / 2)  # the first piece
    assert beyond_reference([], reference)["longer_notes_share"] == 0.0
    itself = compare_sets(reference, reference)["beyond_reference"]
    assert itself["longer_notes_share"] == 0.0 and itself["longer_runs_share"] == 0.0
    table = music_table(compare_sets(generated, reference))
    assert "restrike_share" in table and "grid_share" in table
    assert "longest same-pitch run (s)" in table and "25.0%" in table


def test_cli_evaluate_generated_shows_the_new_statistics(tmp_path):
    for name, pieces in (("gen", [DRONE, DRONE[:4]]),
                         ("ref", [notes_of((60, 0, 0.5), (64, 0.5, 1)),
                                  notes_of((67, 0, 0.25), (60, 0.25, 1.5))])):
        for i, notes in enumerate(pieces):
            (tmp_path / name).mkdir(exist_ok=True)
            save(notes, tmp_path / name / f"{i}.mid")
    out = CliRunner().invoke(main, ["evaluate", "--generated", str(tmp_path / "gen"),
                                    "--reference", str(tmp_path / "ref"), "-q",
                                    "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    for text in ("restrike_share", "longest_run", "grid_share", "max_polyphony",
                 "notes longer than its longest"):
        assert text in out.output
    saved = json.loads((tmp_path / "r.json").read_text())["music"]
    assert saved["beyond_reference"]["longest_run"]["generated"] == pytest.approx(4.0, abs=0.01)
    assert saved["features"]["restrike_share"]["generated"]["mean"] == pytest.approx(
        (2 / 8 + 1 / 4) / 2)
