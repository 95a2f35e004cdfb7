"""Command line: parses arguments, calls one library function per command, prints.

Option defaults are read from the config dataclasses (:func:`composer.cli.report.default`);
``composer evaluate`` lives in :mod:`composer.cli.evaluate`, ``render`` and ``plot`` in
:mod:`composer.cli.media`, the instrument options in
:mod:`composer.cli.options`, the terminal helpers and tables in :mod:`composer.cli.report`.

Every library error is a :class:`composer.ComposerError`, shown as ``Error: ...`` with exit
code 1 and no traceback; a usage error (a bad option, a path typed that does not exist) is
click's ``Usage: ... Error: ...`` with exit 2; Ctrl-C exits 130 (partial pieces of a
generation are written first); anything unexpected is one ``Error: internal error`` line
(:class:`composer.cli.report.Guarded`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from composer import __version__
from composer.cli.evaluate import evaluate
from composer.cli.harmony import harmonize, infill, train_harmonizer
from composer.cli.media import plot, render
from composer.cli.models import list_models, models
from composer.cli.options import (
    control_request,
    corpus_config,
    events_option,
    generate_controls,
    instruments_flag,
    instruments_list,
    train_controls,
)
from composer.cli.report import (
    INTERRUPTED,
    Guarded,
    Progress,
    bounded,
    check_base,
    check_checkpoint,
    check_seed_spec,
    default,
    echo_outputs,
    engine_words,
    errors_as_messages,
    force_option,
    not_with,
    note,
    prepared_line,
    train_count,
    train_postfix,
    train_summary,
)
from composer.cli.serve import serve
from composer.core import bounds
from composer.core.files import check_output
from composer.corpus.cache import CorpusConfig
from composer.evaluation.copycheck import CopyConfig
from composer.generation.config import SampleConfig
from composer.midi.io import LoadConfig
from composer.model.config import PRESETS
from composer.training.config import (
    BASE_MODEL,
    BRIEF_CPU_MINUTES,
    AugmentConfig,
    TrainConfig,
    TrainRequest,
)

if TYPE_CHECKING:
    from composer.generation.config import GenerateRequest

# Read by name, so that parsing (and --help) does not import torch.
TRAIN, SAMPLE = TrainConfig, SampleConfig


@click.group(cls=Guarded, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="composer")
def main() -> None:
    """composer: learn music from MIDI files and compose new music."""


@main.command()
@click.argument("midi_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cache folder [default: ~/.cache/composer/corpora/NAME-HASH].")
@click.option("--workers", type=bounded(bounds.threads_bound("workers")),
              help="Worker processes [default: all cores].")
@click.option("--valid", "valid_fraction", type=click.FloatRange(0, 1),
              default=default(CorpusConfig, "valid_fraction"),
              show_default=True, help="Share of files in the validation split.")
@click.option("--test", "test_fraction", type=click.FloatRange(0, 1),
              default=default(CorpusConfig, "test_fraction"),
              show_default=True, help="Share of files in the test split.")
@click.option("--keep-drums", is_flag=True, help="Keep drum notes (left out by default).")
@click.option("--no-sustain", is_flag=True, help="Ignore the sustain pedal (CC64).")
@click.option("--max-seconds", type=click.FloatRange(min=1),
              default=default(LoadConfig, "max_seconds"),
              show_default=True, help="Skip pieces longer than this.")
@click.option("--max-notes", type=click.IntRange(min=1), default=default(LoadConfig, "max_notes"),
              show_default=True, help="Skip files with more notes than this.")
@click.option("--max-file-mb", type=click.FloatRange(min=0, min_open=True),
              default=default(LoadConfig, "max_file_bytes") / 2**20,
              show_default=True, help="Skip files larger than this (MiB), unread.")
@click.option("--timeout", type=click.FloatRange(min=0.1),
              default=default(CorpusConfig, "timeout_seconds"), show_default=True,
              help="Skip a file whose parse takes longer than this many seconds.")
@events_option()
@instruments_flag
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@errors_as_messages
def prepare(midi_dir: Path, cache_dir: Path | None, workers: int | None, valid_fraction: float,
            test_fraction: float, keep_drums: bool, no_sustain: bool, max_seconds: float,
            max_notes: int, max_file_mb: float, timeout: float, vocabulary: str,
            instruments: bool, quiet: bool) -> None:
    """Ingest every MIDI file below MIDI_DIR into a cached corpus of event tokens.

    Unreadable files are skipped with a one-line reason (listed in CACHE/skipped.tsv); a
    second run only parses new or changed files.
    """
    from composer.corpus.prepare import prepare as run_prepare
    from composer.midi.io import LoadConfig

    if cache_dir is not None:  # the cache is never the MIDI folder itself
        check_output(cache_dir, [midi_dir], force=True)
    load = LoadConfig(keep_drums=keep_drums, sustain=not no_sustain, max_seconds=max_seconds,
                      max_notes=max_notes, max_file_bytes=int(max_file_mb * 2**20))
    config = corpus_config(instruments, load=load, valid_fraction=valid_fraction,
                           test_fraction=test_fraction, timeout_seconds=timeout,
                           vocabulary=vocabulary)
    bar = Progress("ingest", "file", quiet)
    try:
        report = run_prepare(midi_dir, cache_dir, config, workers, bar)
    finally:
        bar.close()
    reused = report.files_found - report.files_parsed
    click.echo(f"Corpus: {report.cache_dir}")
    click.echo(f"  events: {report.why}")
    click.echo(f"  files found    {report.files_found:>10,}  ({report.files_parsed:,} parsed, "
               f"{reused:,} from cache)")
    click.echo(f"  files read     {report.files_loaded:>10,}")
    click.echo(f"  files skipped  {len(report.skipped):>10,}")
    for reason, count in report.skipped_by_reason().most_common():
        click.echo(f"    {count:>6,}  {reason}")
    click.echo(f"  notes          {report.notes:>10,}")
    click.echo(f"  events         {report.events:>10,}")
    click.echo(f"  hours of music {report.seconds / 3600:>10.2f}")
    splits = ", ".join(f"{k} {v:,}" for k, v in report.split_files.items())
    click.echo(f"  split (files)  {splits}")
    if report.skipped:
        click.echo(f"Skipped files and reasons: {report.cache_dir / 'skipped.tsv'}")


@main.command()
@click.argument("midi_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoint folder [default: checkpoints/NAME of MIDI_DIR].")
@click.option("--preset", type=click.Choice(["auto", *PRESETS]), default="auto",
              show_default=True,
              help="Model size: default 3x512, small 2x256, brief 2x192, tiny for tests; "
                   "auto: default on a GPU; on a CPU brief for a budget of "
                   f"{BRIEF_CPU_MINUTES:g} minutes or less, else small.")
@click.option("--layers", type=click.IntRange(min=1), help="LSTM layers (overrides preset).")
@click.option("--hidden", type=click.IntRange(min=1), help="LSTM units (overrides preset).")
@click.option("--embed", type=click.IntRange(min=1), help="Embedding size (overrides preset).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              help="Dropout between layers (overrides preset).")
@click.option("--batch-size", type=click.IntRange(min=1),
              default=default(TRAIN, "batch_size"), show_default=True)
@click.option("--seq-len", type=click.IntRange(min=1), default=default(TRAIN, "seq_len"),
              show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              default=default(TRAIN, "lr"), show_default=True)
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
              help="Train for this long (wall clock); the learning-rate schedule is laid over "
                   "it [default on a CPU: 30; on a GPU: --steps].")
@click.option("--steps", type=click.IntRange(min=1),
              help=f"Optimizer steps instead [GPU default: {default(TRAIN, 'steps')}].")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True),
              help="Passes over the train split instead.")
@click.option("--eval-every", type=click.IntRange(min=1),
              default=default(TRAIN, "eval_every"), show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=default(TRAIN, "patience"),
              show_default=True,
              help="Stop after this many evaluations without improvement (0: never).")
@click.option("--no-augment", is_flag=True, help="No transposition / time-stretch.")
@click.option("--carry-state/--windows", default=default(TRAIN, "carry_state"),
              show_default=True,
              help="Read whole pieces window after window with the LSTM state carried "
                   "(truncated backprop through time), or train on windows cut anywhere "
                   "from a zero state.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--resume", is_flag=True, callback=not_with("force"),
              help="Continue OUT/latest where it stopped.")
@click.option("--force", is_flag=True, callback=not_with("resume"),
              help="Start over in an OUT that holds a run (the old run moves to OUT/previous-N).")
@click.option("--init-from", type=click.Path(path_type=Path), callback=check_base,
              default=default(TrainRequest, "init_from"), show_default=True,
              help="Fine-tune from this checkpoint's weights (a folder, or a shipped model's "
                   "name); none: from scratch; auto: a CPU run with no model size given "
                   f"fine-tunes the shipped {BASE_MODEL!r} when its vocabulary fits the "
                   "corpus's (the beat vocabulary), else starts from scratch.")
@click.option("--seed", type=int, default=default(TRAIN, "seed"), show_default=True)
@click.option("--workers", type=bounded(bounds.threads_bound("workers")), help="Ingest processes.")
@click.option("--threads", type=bounded(bounds.threads_bound()),
              help="CPU threads for training [default: the cores that other work leaves "
                   "free, at least 1; a second thread on a busy core slows every step].")
@events_option(" Used when MIDI_DIR is a MIDI folder.")
@train_controls
@instruments_flag
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@errors_as_messages
def train(quiet: bool, **flags: Any) -> None:
    """Train the stacked LSTM on MIDI_DIR (a MIDI folder, or a corpus from `prepare`)."""
    from composer.training.recipe import TrainCallbacks, train_model

    request = train_request(flags)
    bar = Progress("train", "step", quiet)

    def progress(step: int, total: int, info: dict) -> None:
        bar.unit, done, total = train_count(step, total, info)
        bar(done, total, train_postfix(step, info))

    ingest = Progress("ingest", "file", quiet)
    try:
        result = train_model(request, TrainCallbacks(
            notify=note, plan=None if quiet else click.echo, ingest=ingest,
            prepared=None if quiet else prepared_line, progress=progress))
    finally:
        ingest.close()
        bar.close()
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        click.echo(train_summary(result))
    if result.stopped == "interrupted":
        raise click.exceptions.Exit(INTERRUPTED)


def train_request(flags: dict[str, Any]) -> TrainRequest:
    """The one place where ``composer train``'s flags become a
    :class:`~composer.training.config.TrainRequest` (its ``config``: a
    :class:`~composer.training.config.TrainConfig`); click usage errors for flags that do
    not go together."""
    f = flags
    if f["out"] is not None:  # the run's folder is never the MIDI folder (or corpus) itself
        check_output(f["out"], [f["midi_dir"]], force=True)
    given = [f"--{n}" for n in ("minutes", "steps", "epochs") if f[n] is not None]
    if len(given) > 1:
        raise click.UsageError(f"give one of {' / '.join(given)}, not both")
    augment = AugmentConfig(0, 0.0) if f["no_augment"] else AugmentConfig()
    config = TrainConfig(batch_size=f["batch_size"], seq_len=f["seq_len"], lr=f["lr"],
                         eval_every=f["eval_every"], patience=f["patience"], seed=f["seed"],
                         augment=augment, carry_state=f["carry_state"])
    sizes = {"layers": f["layers"], "hidden": f["hidden"], "embed_dim": f["embed"],
             "dropout": f["dropout"]}
    path = (lambda p: None if p is None else str(p))  # noqa: E731
    return TrainRequest(
        source=str(f["midi_dir"]), out=path(f["out"]), config=config, steps=f["steps"],
        epochs=f["epochs"], minutes=f["minutes"], preset=f["preset"],
        sizes={k: v for k, v in sizes.items() if v is not None}, device=f["device"],
        resume=f["resume"], force=f["force"], init_from=path(f["init_from"]),
        workers=f["workers"], threads=f["threads"], controls=f["controls"],
        corpus=corpus_config(f["instruments"], vocabulary=f["vocabulary"]))


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), callback=check_checkpoint,
              help="Checkpoint folder, training folder (its best), or a shipped model's "
                   "name [default: $COMPOSER_CHECKPOINT, else the shipped default].")
@click.option("--seed", "seed_spec", metavar="MIDI|PITCHES", callback=check_seed_spec,
              help="A MIDI file to continue, or pitches like 60,64,67 or C4,E4,G4 (C4 = 60, "
                   "F#3, Bb2) [default: none, the model's start context].")
@click.option("--seed-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Use only the first S seconds of a MIDI seed [default: all of it].")
@click.option("--seed-style", type=click.Choice(["chord", "arpeggio"]), default="chord",
              show_default=True, help="How a pitch-list seed is played.")
@click.option("--length", type=bounded(bounds.SECONDS),
              help="Seconds of music per continuation [default: "
                   f"{default(SAMPLE, 'seconds'):g}].")
@click.option("--events", type=click.IntRange(min=1),
              help="Events per continuation (instead of --length).")
@click.option("--num", type=click.IntRange(min=1), default=1, show_default=True,
              help="Continuations, drawn in one batch, one file each.")
@click.option("--max-num", type=bounded(bounds.MAX_NUM), default=default(SAMPLE, "max_num"),
              show_default=True, help="Refuse a --num above this (a guard; raise it on purpose).")
@click.option("--max-length", type=bounded(bounds.SECONDS),
              default=default(SAMPLE, "max_seconds"), show_default=True,
              help="Refuse a --length (seconds) above this, and --events above 300 per second "
                   "of it (a guard; raise it on purpose).")
@click.option("--temperature", type=bounded(bounds.TEMPERATURE),
              default=default(SAMPLE, "temperature"), show_default=True,
              help="Sampling temperature (0: always the most likely event).")
@click.option("--top-k", type=click.IntRange(min=0), default=default(SAMPLE, "top_k"),
              show_default=True, help="Draw only among the K most likely events (0: off).")
@click.option("--top-p", type=bounded(bounds.TOP_P), default=default(SAMPLE, "top_p"),
              show_default=True, help="Draw only among the most likely events holding P of "
                                      "the probability (1: off).")
@click.option("--recall/--no-recall", default=default(SAMPLE, "recall"), show_default=True,
              help="Mix in what the piece so far recalls (the events that followed its "
                   "moments most like this one), as the model was scored; models fitted "
                   "with recall only (`composer info` says); off when a density is asked.")
@click.option("--max-silence", type=bounded(bounds.SECONDS),
              default=default(SAMPLE, "max_silence_seconds"),
              show_default=True, help="Longest silence (seconds) a continuation may hold.")
@click.option("--max-polyphony", type=click.IntRange(min=1),
              help="Most notes sounding at once [default: the model's, measured on its "
                   "training corpus; none for older models].")
@click.option("--max-note", type=bounded(bounds.SECONDS),
              help="Longest note in seconds [default: the model's, measured on its training "
                   "corpus; 5 s for older models].")
@click.option("--rng-seed", type=int,
              help="Same seed, same files; file k uses seed+k-1 [default: random, shown].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the .mid files.")
@click.option("--prefix", default="composer", show_default=True,
              help="Files are named PREFIX-001.mid, PREFIX-002.mid, ...")
@click.option("--include-seed/--no-include-seed", default=True, show_default=True,
              help="Whether the files start with the seed.")
@click.option("--program", type=click.IntRange(0, 127), default=0, show_default=True,
              help="General MIDI program (instrument) of the output.")
@instruments_list
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--threads", type=bounded(bounds.threads_bound()), default=1, show_default=True,
              help="CPU threads (more are often slower at small batches).")
@force_option
@click.option("--render", "render_audio", is_flag=True,
              help="Also render each file to .wav (FluidSynth, else sine waves).")
@click.option("--plot", "plot_roll", is_flag=True, help="Also draw each file's piano roll (.png).")
@click.option("--copy-warn", type=click.FloatRange(min=0),
              default=default(CopyConfig, "warn_seconds"), show_default=True,
              help="Warn when an output repeats this many seconds of the training corpus "
                   "(0: no check). It needs that corpus or its MIDI folder: without them "
                   "the check is skipped, said only when --copy-warn is given.")
@generate_controls
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@errors_as_messages
@click.pass_context
def generate(ctx: click.Context, quiet: bool, **flags: Any) -> None:
    """Continue a seed into new MIDI files, one per continuation.

    Prints one line per file: path, duration, notes, share of time that is silence. Ctrl-C
    writes the continuations as far as they got (exit status 130).
    """
    from composer.generation.loop import GenerationInterrupted
    from composer.generation.session import generate_music

    request = generate_request(flags)
    bar = Progress("generate", "event" if request.sample.events else "s", quiet)
    try:
        done = generate_music(request, progress=bar, notify=note)
    except GenerationInterrupted as stop:
        bar.close()
        echo_outputs(stop.outputs)
        note(f"interrupted: the {len(stop.outputs)} file(s) above hold the music made so far"
             if stop.outputs else "interrupted before any music was made; nothing written")
        ctx.exit(INTERRUPTED)
    finally:
        bar.close()
    if not quiet:
        note(f"rng seed {done.generation.rng_seed} (--rng-seed {done.generation.rng_seed} "
             f"makes these files again), {engine_words(done.generation.engine)}")
    echo_outputs(done.outputs)
    for i in range(len(done.outputs)):
        if done.renders:
            r = done.renders[i]
            click.echo(f"{r.wav_path}  ({r.seconds:.1f} s of audio)")
            if r.notice:
                note(r.notice)
        if done.plots:
            click.echo(done.plots[i])
    if done.copy_check and ctx.get_parameter_source("copy_warn").name != "DEFAULT":
        note(done.copy_check)  # asked for: say why it did not run
    for o, warning in done.copies:
        click.echo(f"Warning: {o.path.name} {warning}", err=True)


def generate_request(flags: dict[str, Any]) -> GenerateRequest:
    """The one place where ``composer generate``'s flags become a
    :class:`~composer.generation.config.GenerateRequest` (its ``sample``: a
    :class:`~composer.generation.config.SampleConfig`); click usage errors for flags that
    do not go together."""
    from composer.generation.config import GenerateRequest, SampleConfig

    f = flags
    if f["length"] is not None and f["events"] is not None:
        raise click.UsageError("give --length or --events, not both")
    if f["seed_seconds"] is not None and f["seed_spec"] is None:
        raise click.UsageError("--seed-seconds needs --seed")
    sample = SampleConfig(temperature=f["temperature"], top_k=f["top_k"], top_p=f["top_p"],
                          max_silence_seconds=f["max_silence"], events=f["events"],
                          max_num=f["max_num"], max_seconds=f["max_length"],
                          max_polyphony=f["max_polyphony"], max_note_seconds=f["max_note"],
                          recall=f["recall"],
                          **({} if f["length"] is None else {"seconds": f["length"]}))
    path = (lambda p: None if p is None else str(p))  # noqa: E731
    control = control_request(f)
    return GenerateRequest(
        checkpoint=path(f["checkpoint"]), seed=f["seed_spec"], seed_seconds=f["seed_seconds"],
        seed_style=f["seed_style"], sample=sample, num=f["num"], rng_seed=f["rng_seed"],
        control_request=control or None, plan_file=path(f["plan"]),
        instruments=f["instruments"], out=str(f["out"]), prefix=f["prefix"],
        include_seed=f["include_seed"], program=f["program"], force=f["force"],
        device=f["device"], threads=f["threads"], render_audio=f["render_audio"],
        plot_roll=f["plot_roll"], copy_warn=f["copy_warn"])


@main.command()
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path),
                callback=check_checkpoint)
@click.option("--json", "as_json", is_flag=True, help="Print everything recorded, as JSON.")
@errors_as_messages
def info(checkpoint: Path | None, as_json: bool) -> None:
    """Show a checkpoint's model, vocabulary, training, data (CHECKPOINT: a checkpoint or
    training folder, or a shipped model's name). Without CHECKPOINT: the models there are
    and what each takes, as `composer models` lists them."""
    import json

    if checkpoint is None:
        list_models(as_json=as_json)
        return

    from composer.cli.report import checkpoint_summary
    from composer.model.checkpoint import find_checkpoint, read_info, resolve_checkpoint_path

    path, why = resolve_checkpoint_path(find_checkpoint(checkpoint))
    if why:
        note(why)
    meta = read_info(path)  # "resumable": the training state is there, intact and loadable
    if as_json:
        click.echo(json.dumps(meta, indent=1, default=str))
        return
    resumable = "yes" if meta["resumable"] else f"no ({meta.get('resume_problem')})"
    click.echo(checkpoint_summary(meta, resumable))


main.add_command(evaluate)
main.add_command(render)
main.add_command(plot)
main.add_command(serve)
main.add_command(models)
main.add_command(harmonize)
main.add_command(infill)
main.add_command(train_harmonizer)

if __name__ == "__main__":
    main()
