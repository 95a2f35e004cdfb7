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


if __name__ == "__main__":
    main()
