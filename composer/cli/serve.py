"""The ``composer serve`` command (registered on :func:`composer.cli.main.main`): parses, calls
:func:`composer.serve.app.serve`."""

from __future__ import annotations

from pathlib import Path

import click

from composer.cli.report import check_checkpoint, default, errors_as_messages
from composer.core.bounds import available_cpus
from composer.serve.api import ServeConfig


def check_checkpoints(ctx: click.Context, param: click.Parameter, values: tuple[Path, ...]
                      ) -> tuple[Path, ...]:
    """Each ``--checkpoint`` typed must exist (:func:`composer.cli.report.check_checkpoint`)."""
    return tuple(check_checkpoint(ctx, param, v) for v in values)


@click.command()
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(path_type=Path),
              callback=check_checkpoints,
              help="Also serve this model (a folder; repeatable); every shipped model is "
                   "always offered, by name.")
@click.option("--host", default=default(ServeConfig, "host"), show_default=True,
              help="Address to listen on; anything but loopback lets other machines in.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests naming this Host (repeatable), e.g. a name this "
                   "machine has on the network; others than its own names and addresses "
                   "are refused (421), against DNS rebinding.")
@click.option("--port", type=click.IntRange(0, 65535), default=default(ServeConfig, "port"),
              show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(1, max(available_cpus(), 2)),
              default=default(ServeConfig, "workers"),
              show_default=True,
              help="Generations at once (each on one CPU thread); others queue.")
@errors_as_messages
def serve(checkpoints: tuple[Path, ...], host: str, allow_hosts: tuple[str, ...], port: int,
          workers: int) -> None:
    """Serve a page to seed, generate, see and hear music in a web browser.

    One page and a small JSON API on http://HOST:PORT/: choose a model and a seed (pitches,
    a bundled opening, an uploaded MIDI file, or a result to continue), generate, then
    see each piece's piano roll, play it, and download it as MIDI.
    """
    from composer.serve.app import serve as run

    run(checkpoints, ServeConfig(host=host, port=port, workers=workers,
                                 allow_hosts=allow_hosts), echo=click.echo)
