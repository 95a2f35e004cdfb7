"""Command line: parses arguments, calls the library, prints. Nothing else.

Every library error is a :class:`composer.ComposerError`, shown as ``Error: ...`` with exit
code 1 and no traceback.
"""

from __future__ import annotations

import functools
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
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Skip a file whose parse takes longer than this many seconds.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_errors_as_messages
def prepare(midi_dir: Path, cache_dir: Path | None, workers: int | None, valid_fraction: float,
            test_fraction: float, keep_drums: bool, no_sustain: bool, max_seconds: float,
            max_notes: int, timeout: float, quiet: bool) -> None:
    """Ingest every MIDI file below MIDI_DIR into a cached corpus of performance events.

    Unreadable files are skipped with a one-line reason (listed in CACHE/skipped.tsv); a
    second run only parses new or changed files.
    """
    from composer.corpus import CorpusConfig
    from composer.corpus import prepare as run_prepare
    from composer.midi import LoadConfig

    load = LoadConfig(keep_drums=keep_drums, sustain=not no_sustain, max_seconds=max_seconds,
                      max_notes=max_notes)
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
@click.option("--preset", type=click.Choice(["default", "small", "tiny"]), default="small",
              show_default=True, help="Model size: default 3x512, small 2x256, tiny for tests.")
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
@click.option("--init-from", type=click.Path(exists=True, path_type=Path),
              help="Fine-tune from this checkpoint's weights.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Ingest worker processes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_errors_as_messages
def train(midi_dir: Path, out: Path | None, preset: str, layers: int | None,
          hidden: int | None, embed: int | None, dropout: float | None, batch_size: int,
          seq_len: int, lr: float, steps: int | None, epochs: float | None, eval_every: int,
          patience: int, no_augment: bool, device: str, resume: bool, init_from: Path | None,
          seed: int, workers: int | None, quiet: bool) -> None:
    """Train the stacked LSTM on MIDI_DIR (a MIDI folder, or a corpus from `prepare`)."""
    import dataclasses

    from composer.data import AugmentConfig
    from composer.events import Vocabulary
    from composer.model import ModelConfig
    from composer.train import TrainConfig
    from composer.train import train as run_train

    if steps and epochs:
        raise click.UsageError("give --steps or --epochs, not both")
    corpus = _open_or_prepare(midi_dir, quiet, workers)
    out = out or Path("checkpoints") / midi_dir.resolve().name
    model_config = None
    if init_from is None and not resume:
        sizes = {k: v for k, v in [("layers", layers), ("hidden", hidden),
                                   ("embed_dim", embed), ("dropout", dropout)] if v is not None}
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
                           init_from=init_from, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"Stopped ({result.stopped}) at step {result.step:,}; best validation loss "
               f"{result.best_valid_loss:.4f} nats/event; {result.skipped_steps} steps "
               f"skipped as non-finite.")
    click.echo(f"Checkpoints: {out / 'best'} (best), {out / 'latest'} (latest)")


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


if __name__ == "__main__":
    main()
