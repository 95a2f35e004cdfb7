"""Harmonize a melody and infill a passage: stacked bidirectional LSTMs over a grid of voices
(grid, model, train, sample, session), trained by hiding cells Coconet/DeepBach style."""
