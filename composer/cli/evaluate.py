"""The ``composer evaluate`` command (registered on :func:`composer.cli.main.main`): parses,
calls :func:`composer.evaluation.likelihood.evaluate_model` or
:func:`composer.evaluation.judge.judge_music`,
prints their tables."""

from __future__ import annotations

from pathlib import Path

import click

from composer.cli.report import (
    Progress,
    bounded,
    check_checkpoint,
    default,
    errors_as_messages,
    force_option,
    note,
)
from composer.core import bounds
from composer.core.files import check_output
from composer.evaluation.baselines import EvalConfig
from composer.evaluation.copycheck import CopyConfig


@click.command()
@click.argument("midi_dir", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), callback=check_checkpoint,
              help="Mode 1: score this model (with the baselines) on MIDI_DIR or --corpus.")
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A corpus from `prepare` (or a MIDI folder, prepared first). Mode 1: "
                   "score on its --split [default: the corpus the checkpoint trained on]. "
                   "Mode 2: the training corpus for the copy check.")
@click.option("--split", type=click.Choice(["train", "valid", "test", "all"]), default="test",
              show_default=True, help="Mode 1: split of --corpus to score.")
@click.option("--train-corpus", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Mode 1: fit the baselines on this corpus's train split [default: the "
                   "corpus the checkpoint trained on].")
@click.option("--order", type=bounded(bounds.NGRAM_ORDER),
              default=default(EvalConfig, "order"),
              show_default=True,
              help="Mode 1: order of the Kneser-Ney n-gram baseline.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Mode 1: where the LSTM runs.")
@click.option("--generated", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Mode 2: a folder of generated MIDI files to judge.")
@click.option("--reference", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Mode 2: compare music statistics with this MIDI folder.")
@click.option("--figure", type=click.Path(dir_okay=False, path_type=Path),
              help="Mode 2: write the distance densities of each statistic as this PNG.")
@click.option("--seed-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Mode 2: copy check ignores each file's first S seconds (its seed).")
@click.option("--warn-seconds", type=click.FloatRange(min=0, min_open=True),
              default=default(CopyConfig, "warn_seconds"),
              show_default=True, help="Mode 2: flag copied runs at least this long.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write all results as JSON.")
@force_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@errors_as_messages
def evaluate(midi_dir: Path | None, checkpoint: Path | None, corpus: Path | None, split: str,
             train_corpus: Path | None, order: int, device: str, generated: Path | None,
             reference: Path | None, figure: Path | None, seed_seconds: float,
             warn_seconds: float, json_path: Path | None, force: bool, quiet: bool) -> None:
    """Judge a model or generated music. Two modes:

    \b
    1. composer evaluate --checkpoint CKPT [MIDI_DIR | --corpus CACHE [--split test]]
       NLL (nats per event, per note and per second of music: the last two compare
       vocabularies), perplexity and next-event accuracy of the LSTM, and of a unigram
       and a Kneser-Ney 5-gram fitted on the train split of the corpus the model trained
       on, all scored on the same events. MIDI_DIR: every file in it (prepared into its
       default cache). Neither: the --split of the corpus the model trained on.
    2. composer evaluate --generated DIR [--reference MIDI_DIR] [--corpus CACHE]
       --reference: music statistics of both sets after Yang & Lerch (2018) (with re-
       struck notes, same-pitch runs, onsets on the beat grid), with the overlap and KL
       divergence of their distance distributions (--figure draws them), and the notes
       and runs longer than the reference's longest.
       --corpus: copy check, the longest run of each piece's events (transposition-
       invariant) found in the corpus's train split; runs over --warn-seconds are flagged.
    """
    from composer.cli.report import save_json

    if json_path:  # refused now, not after the work
        check_output(json_path, (), force)
    if (checkpoint is None) == (generated is None):
        raise click.UsageError("give --checkpoint (score a model) or --generated (judge music)")
    if checkpoint is not None:
        if midi_dir and corpus:
            raise click.UsageError("give MIDI_DIR or --corpus, not both")
        if generated or reference or figure:
            raise click.UsageError("--reference and --figure go with --generated")
        result = _evaluate_model(checkpoint, midi_dir or corpus, split, train_corpus, order,
                                 device, quiet)
    else:
        if midi_dir:
            raise click.UsageError("with --generated, give --reference MIDI_DIR and/or "
                                   "--corpus CACHE")
        if not (reference or corpus):
            raise click.UsageError("--generated needs --reference MIDI_DIR and/or --corpus")
        if figure and not reference:
            raise click.UsageError("--figure needs --reference")
        result = _evaluate_music(generated, reference, corpus, figure, seed_seconds,
                                 warn_seconds, quiet, force)
    if json_path:
        click.echo(f"Results: {save_json(result, json_path, force)}")


def _evaluate_model(checkpoint: Path, source: Path | None, split: str,
                    train_corpus: Path | None, order: int, device: str, quiet: bool) -> dict:
    from composer.cli.report import model_table
    from composer.evaluation.likelihood import evaluate_model
    from composer.model.checkpoint import resolve_checkpoint_path

    checkpoint, why = resolve_checkpoint_path(checkpoint)
    if why:
        note(why)
    bars: dict[str, Progress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        unit = "batch" if stage == "evaluate" else "file"
        bars.setdefault(stage, Progress(stage, unit, quiet))(done, total)

    try:
        result = evaluate_model(checkpoint, source, split, train_corpus=train_corpus,
                                config=EvalConfig(order=order), device=device,
                                progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(model_table(result))
    return result


def _evaluate_music(generated: Path, reference: Path | None, corpus: Path | None,
                    figure: Path | None, seed_seconds: float, warn_seconds: float,
                    quiet: bool, force: bool) -> dict:
    from composer.cli.report import copy_table, music_table
    from composer.evaluation.judge import judge_music

    bar = Progress("ingest", "file", quiet)
    try:
        done = judge_music(generated, reference, corpus, figure=figure,
                           seed_seconds=seed_seconds, copy=CopyConfig(warn_seconds=warn_seconds),
                           notify=note, ingest=bar, force=force)
    finally:
        bar.close()
    if done.music is not None:
        click.echo(music_table(done.music))
        if done.figure:
            click.echo(f"Figure: {done.figure}")
    if done.corpus is not None:
        if done.music is not None:
            click.echo()
        click.echo(f"Copy check against the train split of {done.corpus} (runs of "
                   f"{default(CopyConfig, 'ngram')}+ events; COPY: {warn_seconds:g} s or longer)")
        click.echo(copy_table(done.result["files"], done.matches, done.warnings))
    return done.result
