"""Command line: parses arguments, calls the library, prints. Nothing else.

Every library error is a :class:`composer.ComposerError`, shown as ``Error: ...`` with exit
code 1 and no traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from composer import ComposerError, __version__


def _errors_as_messages(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ComposerError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


class _Progress:
    """A tqdm bar on stderr fed by ``(done, total)`` callbacks; silent when ``quiet``."""

    def __init__(self, desc: str, unit: str, quiet: bool):
        self.desc, self.unit, self.quiet, self.bar = desc, unit, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: workers are forked
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="composer")
def main() -> None:
    """composer: learn music from MIDI files and compose new music."""


@main.command()
@click.argument("midi_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cache folder [default: ~/.cache/composer/corpora/NAME-HASH].")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes [default: all cores].")
@click.option("--valid", "valid_fraction", type=click.FloatRange(0, 1), default=0.05,
              show_default=True, help="Share of files in the validation split.")
@click.option("--test", "test_fraction", type=click.FloatRange(0, 1), default=0.05,
              show_default=True, help="Share of files in the test split.")
@click.option("--keep-drums", is_flag=True, help="Keep drum notes (left out by default).")
@click.option("--no-sustain", is_flag=True, help="Ignore the sustain pedal (CC64).")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=4 * 3600.0,
              show_default=True, help="Skip pieces longer than this.")
@click.option("--max-notes", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Skip files with more notes than this.")
@click.option("--max-file-mb", type=click.FloatRange(min=0, min_open=True), default=64.0,
              show_default=True, help="Skip files larger than this (MiB), unread.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Skip a file whose parse takes longer than this many seconds.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_errors_as_messages
def prepare(midi_dir: Path, cache_dir: Path | None, workers: int | None, valid_fraction: float,
            test_fraction: float, keep_drums: bool, no_sustain: bool, max_seconds: float,
            max_notes: int, max_file_mb: float, timeout: float, quiet: bool) -> None:
    """Ingest every MIDI file below MIDI_DIR into a cached corpus of performance events.

    Unreadable files are skipped with a one-line reason (listed in CACHE/skipped.tsv); a
    second run only parses new or changed files.
    """
    from composer.corpus import CorpusConfig
    from composer.corpus import prepare as run_prepare
    from composer.midi import LoadConfig

    load = LoadConfig(keep_drums=keep_drums, sustain=not no_sustain, max_seconds=max_seconds,
                      max_notes=max_notes, max_file_bytes=int(max_file_mb * 2**20))
    config = CorpusConfig(load=load, valid_fraction=valid_fraction, test_fraction=test_fraction,
                          timeout_seconds=timeout)
    bar = _Progress("ingest", "file", quiet)
    try:
        report = run_prepare(midi_dir, cache_dir, config, workers, bar)
    finally:
        bar.close()
    reused = report.files_found - report.files_parsed
    click.echo(f"Corpus: {report.cache_dir}")
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


def _load_folder(folder: Path) -> tuple[list[str], list]:
    """Names and note arrays of the MIDI files below ``folder``; unreadable ones are noted."""
    from composer.corpus import load_folder

    names, pieces, skipped = load_folder(folder)
    for name, reason in skipped:
        click.echo(f"Note: skipped {folder / name}: {reason}", err=True)
    return names, pieces


def _open_or_prepare(source: Path, quiet: bool, workers: int | None):
    """A prepared corpus folder is opened; a MIDI folder is prepared (cached) first."""
    from composer.corpus import Corpus
    from composer.corpus import prepare as run_prepare

    if (source / "corpus.json").is_file():
        return Corpus.open(source)
    bar = _Progress("ingest", "file", quiet)
    try:
        report = run_prepare(source, workers=workers, progress=bar)
    finally:
        bar.close()
    if not quiet:
        click.echo(f"Corpus: {report.files_loaded:,} files, {report.events:,} events "
                   f"({len(report.skipped):,} skipped) cached in {report.cache_dir}", err=True)
    return Corpus.open(report.cache_dir)


@main.command()
@click.argument("midi_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoint folder [default: checkpoints/NAME of MIDI_DIR].")
@click.option("--preset", type=click.Choice(["auto", "default", "small", "tiny"]), default="auto",
              show_default=True, help="Model size: default 3x512, small 2x256, tiny for tests; "
                                      "auto: default on a GPU, small on a CPU.")
@click.option("--layers", type=click.IntRange(min=1), help="LSTM layers (overrides preset).")
@click.option("--hidden", type=click.IntRange(min=1), help="LSTM units (overrides preset).")
@click.option("--embed", type=click.IntRange(min=1), help="Embedding size (overrides preset).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              help="Dropout between layers (overrides preset).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps [default: 20000].")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True),
              help="Train for this many passes over the train split instead of --steps.")
@click.option("--eval-every", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=10, show_default=True,
              help="Stop after this many evaluations without improvement (0: never).")
@click.option("--no-augment", is_flag=True, help="No transposition / time-stretch.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--resume", is_flag=True, help="Continue OUT/latest where it stopped.")
@click.option("--force", is_flag=True,
              help="Start over in an OUT that holds a run (the old run moves to OUT/previous-N).")
@click.option("--init-from", type=click.Path(exists=True, path_type=Path),
              help="Fine-tune from this checkpoint's weights.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Ingest worker processes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_errors_as_messages
def train(midi_dir: Path, out: Path | None, preset: str, layers: int | None,
          hidden: int | None, embed: int | None, dropout: float | None, batch_size: int,
          seq_len: int, lr: float, steps: int | None, epochs: float | None, eval_every: int,
          patience: int, no_augment: bool, device: str, resume: bool, force: bool,
          init_from: Path | None, seed: int, workers: int | None, quiet: bool) -> None:
    """Train the stacked LSTM on MIDI_DIR (a MIDI folder, or a corpus from `prepare`)."""
    import dataclasses

    from composer.data import AugmentConfig
    from composer.events import Vocabulary
    from composer.model import ModelConfig
    from composer.train import TrainConfig, resolve_device
    from composer.train import train as run_train

    if steps and epochs:
        raise click.UsageError("give --steps or --epochs, not both")
    corpus = _open_or_prepare(midi_dir, quiet, workers)
    if len(corpus.paths) and not len(corpus.files("valid")):
        click.echo("Note: no file fell in the validation split; validating on the train split "
                   "(`composer prepare --valid` sets the share)", err=True)
    out = out or Path("checkpoints") / midi_dir.resolve().name
    model_config = None
    if init_from is None and not resume:
        sizes = {k: v for k, v in [("layers", layers), ("hidden", hidden),
                                   ("embed_dim", embed), ("dropout", dropout)] if v is not None}
        if preset == "auto":
            preset = "default" if resolve_device(device).type == "cuda" else "small"
        base = ModelConfig.preset(preset, vocab_size=Vocabulary(corpus.config.events).size)
        model_config = dataclasses.replace(base, **sizes)
    if epochs:
        train_events = int(corpus.index["length"][corpus.files("train")].sum())
        steps = max(1, round(epochs * train_events / (batch_size * seq_len)))
    augment = AugmentConfig(0, 0.0) if no_augment else AugmentConfig()
    config = TrainConfig(steps=steps or 20_000, batch_size=batch_size, seq_len=seq_len, lr=lr,
                         eval_every=eval_every, patience=patience, seed=seed, augment=augment)
    bar = None

    def progress(step: int, total: int, info: dict) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=step - 1, desc="train", unit="step",
                       file=sys.stderr, dynamic_ncols=True)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{info['loss']:.3f}", tok_s=f"{info['tokens_per_s']:,.0f}",
                        refresh=False)

    try:
        result = run_train(corpus, out, model_config, config, device=device, resume=resume,
                           force=force, init_from=init_from, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    click.echo(f"Stopped ({result.stopped}) at step {result.step:,}; best validation loss "
               f"{result.best_valid_loss:.4f} nats/event; {result.skipped_steps} steps "
               f"skipped as non-finite.")
    click.echo(f"Checkpoints: {out / 'best'} (best), {out / 'latest'} (latest)")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Checkpoint folder [default: $COMPOSER_CHECKPOINT, else the shipped "
                   "checkpoints/default].")
@click.option("--seed", "seed_spec", metavar="MIDI|PITCHES",
              help="A MIDI file to continue, or pitches like 60,64,67 [default: none, the "
                   "model's start context].")
@click.option("--seed-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Use only the first S seconds of a MIDI seed [default: all of it].")
@click.option("--seed-style", type=click.Choice(["chord", "arpeggio"]), default="chord",
              show_default=True, help="How a pitch-list seed is played.")
@click.option("--length", type=click.FloatRange(min=0, min_open=True),
              help="Seconds of music per continuation [default: 30].")
@click.option("--events", type=click.IntRange(min=1),
              help="Events per continuation (instead of --length).")
@click.option("--num", type=click.IntRange(min=1), default=1, show_default=True,
              help="Continuations, drawn in one batch, one file each.")
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Sampling temperature (0: always the most likely event).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Draw only among the K most likely events (0: off).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="Draw only among the most likely events holding P of "
                                      "the probability (1: off).")
@click.option("--max-silence", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Longest silence (seconds) a continuation may hold.")
@click.option("--rng-seed", type=click.IntRange(min=0),
              help="Same seed, same files; file k uses seed+k-1 [default: random, shown].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the .mid files.")
@click.option("--prefix", default="composer", show_default=True,
              help="Files are named PREFIX-001.mid, PREFIX-002.mid, ...")
@click.option("--include-seed/--no-include-seed", default=True, show_default=True,
              help="Whether the files start with the seed.")
@click.option("--program", type=click.IntRange(0, 127), default=0, show_default=True,
              help="General MIDI program (instrument) of the output.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads (more are often slower at small batches).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--render", "render_audio", is_flag=True,
              help="Also render each file to .wav (FluidSynth, else sine waves).")
@click.option("--plot", "plot_roll", is_flag=True, help="Also draw each file's piano roll (.png).")
@click.option("--copy-warn", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Warn when an output repeats this many seconds of the training corpus "
                   "(0: no check; needs the corpus or its MIDI folder).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_errors_as_messages
def generate(checkpoint: Path | None, seed_spec: str | None, seed_seconds: float | None,
             seed_style: str, length: float | None, events: int | None, num: int,
             temperature: float, top_k: int, top_p: float, max_silence: float,
             rng_seed: int | None, out: Path, prefix: str, include_seed: bool, program: int,
             device: str, threads: int, force: bool, render_audio: bool, plot_roll: bool,
             copy_warn: float, quiet: bool) -> None:
    """Continue a seed into new MIDI files, one per continuation.

    Prints one line per file: path, duration, notes, share of time that is silence.
    """
    from composer.checkpoint import load_checkpoint
    from composer.events import EventConfig
    from composer.sample import SampleConfig, compose, find_checkpoint, resolve_seed
    from composer.train import resolve_device

    if length is not None and events is not None:
        raise click.UsageError("give --length or --events, not both")
    if seed_seconds is not None and seed_spec is None:
        raise click.UsageError("--seed-seconds needs --seed")
    config = SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p,
                          max_silence_seconds=max_silence,
                          seconds=30.0 if length is None else length, events=events)
    dev = resolve_device(device)
    ckpt = load_checkpoint(find_checkpoint(checkpoint), map_location=dev)
    event_config = EventConfig.from_dict(ckpt.event_config)
    seed = resolve_seed(seed_spec, event_config, seed_seconds, seed_style)
    bar = _Progress("generate", "event" if events else "s", quiet)
    try:
        outputs, gen = compose(ckpt.model, event_config, out, seed, num, config,
                               rng_seed=rng_seed, prefix=prefix, include_seed=include_seed,
                               program=program, force=force, threads=threads, progress=bar)
    finally:
        bar.close()
    if not quiet:
        click.echo(f"rng seed {gen.rng_seed}, {gen.engine} path", err=True)
    for o in outputs:
        click.echo(f"{o.path}  {o.seconds:7.1f} s  {o.notes:6,} notes  "
                   f"{o.silence:6.1%} silence")
    _after_generate(ckpt, event_config, outputs, gen, render_audio, plot_roll, copy_warn,
                    include_seed)


def _after_generate(ckpt, event_config, outputs: list, gen, render_audio: bool,
                    plot_roll: bool, copy_warn: float, include_seed: bool) -> None:
    """Render, plot and copy-check generated files, as asked."""
    from composer.metrics import CopyConfig, copy_warning, training_copy_index

    for o in outputs:
        if render_audio:
            from composer.render import render as render_file

            result = render_file(o.path, o.path.with_suffix(".wav"))
            click.echo(f"{result.wav_path}  ({result.seconds:.1f} s of audio)")
            if result.notice:
                click.echo(f"Note: {result.notice}", err=True)
        if plot_roll:
            from composer.render import plot_piano_roll

            shade = o.seed_seconds if include_seed and o.seed_seconds else None
            click.echo(plot_piano_roll(o.path, o.path.with_suffix(".png"), shade))
    if copy_warn <= 0:
        return
    config = CopyConfig(warn_seconds=copy_warn)
    index = training_copy_index(ckpt.data, event_config, config)
    if index is None:
        return
    for o, tokens in zip(outputs, gen.tokens, strict=True):
        warning = copy_warning(index.longest_copy(tokens, o.seed_seconds), config)
        if warning:
            click.echo(f"Warning: {o.path.name} {warning}", err=True)


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@_errors_as_messages
def info(checkpoint: Path) -> None:
    """Show a checkpoint's configuration, size, training and data."""
    from composer.checkpoint import read_info

    meta = read_info(checkpoint)
    metrics = meta.get("metrics", {})
    click.echo(f"Checkpoint: {meta['path']} (format {meta['format_version']}, "
               f"composer {meta['composer_version']}, saved {meta['created']})")
    click.echo(f"  model       {meta['model']}")
    click.echo(f"  parameters  {meta['parameters']:,}")
    click.echo(f"  events      {meta['events']}")
    click.echo(f"  steps       {meta['step']:,}")
    if "loss" in metrics:
        click.echo(f"  valid loss  {metrics['loss']:.4f} nats/event (perplexity "
                   f"{metrics.get('perplexity', float('nan')):.2f}, accuracy "
                   f"{metrics.get('accuracy', float('nan')):.3f})")
    click.echo(f"  data        {meta.get('data', {})}")
    click.echo(f"  training    {meta.get('train', {})}")
    click.echo(f"  resumable   {'yes' if meta.get('has_train_state') else 'no'}")


@main.command()
@click.argument("midi_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="WAV file to write [default: MIDI_FILE with .wav].")
@click.option("--soundfont", type=click.Path(dir_okay=False, path_type=Path),
              help="General MIDI soundfont (.sf2/.sf3) [default: $COMPOSER_SOUNDFONT, else the "
                   "first found of /usr/share/sounds/sf2/FluidR3_GM.sf2, default-GM.sf2, "
                   "/usr/share/soundfonts/FluidR3_GM.sf2, default.sf2, ...].")
@_errors_as_messages
def render(midi_file: Path, out: Path | None, soundfont: Path | None) -> None:
    """Render MIDI_FILE to a 44.1 kHz WAV with FluidSynth and a General MIDI soundfont.

    Without FluidSynth or a soundfont (apt-get install fluidsynth fluid-soundfont-gm), or if
    FluidSynth fails, a one-line note says so and simple sine waves are rendered instead.
    """
    from composer.render import render as render_file

    result = render_file(midi_file, out or midi_file.with_suffix(".wav"), soundfont)
    if result.notice:
        click.echo(f"Note: {result.notice}", err=True)
    how = f"FluidSynth, {result.soundfont}" if result.soundfont else "sine waves"
    click.echo(f"Wrote {result.wav_path} ({result.seconds:.1f} s of audio, {how}) in "
               f"{result.elapsed:.1f} s")


@main.command()
@click.argument("midi_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file to write [default: MIDI_FILE with .png].")
@click.option("--seed-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Shade the first S seconds as the seed the rest continues.")
@click.option("--title", help="Title [default: the file name].")
@_errors_as_messages
def plot(midi_file: Path, out: Path | None, seed_seconds: float | None,
         title: str | None) -> None:
    """Draw MIDI_FILE as a piano roll: time x pitch, velocity as colour."""
    from composer.render import plot_piano_roll

    path = plot_piano_roll(midi_file, out or midi_file.with_suffix(".png"), seed_seconds, title)
    click.echo(f"Wrote {path}")


@main.command()
@click.argument("midi_dir", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path),
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
@click.option("--order", type=click.IntRange(min=1), default=5, show_default=True,
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
@click.option("--warn-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Mode 2: flag copied runs at least this long.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write all results as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_errors_as_messages
def evaluate(midi_dir: Path | None, checkpoint: Path | None, corpus: Path | None, split: str,
             train_corpus: Path | None, order: int, device: str, generated: Path | None,
             reference: Path | None, figure: Path | None, seed_seconds: float,
             warn_seconds: float, json_path: Path | None, quiet: bool) -> None:
    """Judge a model or generated music. Two modes:

    \b
    1. composer evaluate --checkpoint CKPT [MIDI_DIR | --corpus CACHE [--split test]]
       NLL (nats/event), perplexity and next-event accuracy of the LSTM, and of a unigram
       and a Kneser-Ney 5-gram fitted on the train split of the corpus the model trained
       on, all scored on the same events. MIDI_DIR: every file in it (prepared into its
       default cache). Neither: the --split of the corpus the model trained on.
    2. composer evaluate --generated DIR [--reference MIDI_DIR] [--corpus CACHE]
       --reference: music statistics of both sets after Yang & Lerch (2018), with the
       overlap and KL divergence of their distance distributions (--figure draws them).
       --corpus: copy check, the longest run of each piece's events (transposition-
       invariant) found in the corpus's train split; runs over --warn-seconds are flagged.
    """
    from composer.render import save_json

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
                                 warn_seconds, quiet)
    if json_path:
        click.echo(f"Results: {save_json(result, json_path)}")


def _evaluate_model(checkpoint: Path, source: Path | None, split: str,
                    train_corpus: Path | None, order: int, device: str, quiet: bool) -> dict:
    from composer.metrics import EvalConfig, evaluate_model
    from composer.render import model_table

    bars: dict[str, _Progress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        unit = "batch" if stage == "evaluate" else "file"
        bars.setdefault(stage, _Progress(stage, unit, quiet))(done, total)

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
                    quiet: bool) -> dict:
    from composer.events import encode
    from composer.metrics import CopyConfig, CopyIndex, compare_sets, copy_warning
    from composer.render import copy_table, music_table, plot_distributions

    names, pieces = _load_folder(generated)
    if not pieces:
        raise click.ClickException(f"no readable MIDI files in {generated}")
    result: dict = {"generated": str(generated), "files": names}
    if reference:
        same = reference.resolve() == generated.resolve()
        ref = pieces if same else _load_folder(reference)[1]
        stats = compare_sets(pieces, ref)
        click.echo(music_table(stats))
        if figure:
            click.echo(f"Figure: {plot_distributions(stats, figure)}")
        result["music"] = {"reference": str(reference), **stats}
    if corpus:
        data = _open_or_prepare(corpus, quiet, None)
        config = CopyConfig(warn_seconds=warn_seconds)
        index = CopyIndex.from_corpus(data, ("train",), config)
        matches = [index.longest_copy(encode(p, data.config.events), seed_seconds)
                   for p in pieces]
        warnings = [copy_warning(m, config) for m in matches]
        if reference:
            click.echo()
        click.echo(f"Copy check against the train split of {data.cache_dir} (runs of "
                   f"{config.ngram}+ events; COPY: {warn_seconds:g} s or longer)")
        click.echo(copy_table(names, matches, warnings))
        result["copies"] = [{"file": n, **vars(m), "fraction": m.fraction, "warning": w}
                            for n, m, w in zip(names, matches, warnings, strict=True)]
    return result


if __name__ == "__main__":
    main()
