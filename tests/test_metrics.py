"""Music and model metrics on hand-made inputs whose answers are known."""

from __future__ import annotations

import pytest

from composer.metrics import silence_fraction
from composer.midi import Note


def test_silence_fraction_counts_gaps_between_and_before_notes():
    notes = [Note(60, 80, 1.0, 2.0), Note(62, 80, 1.5, 3.0), Note(64, 80, 4.0, 5.0)]
    assert silence_fraction(notes) == pytest.approx(2 / 5)  # silent 0-1 and 3-4
    assert silence_fraction(notes, duration=10.0) == pytest.approx(7 / 10)
    assert silence_fraction([]) == 1.0
    assert silence_fraction([Note(60, 80, 0.0, 2.0), Note(64, 80, 0.5, 1.0)]) == 0.0
