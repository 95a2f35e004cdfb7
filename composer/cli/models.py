"""The ``composer models`` command (registered on :func:`composer.cli.main.main`; ``composer
info`` with no argument shows the same): the shipped models and the local ones under the
current folder or the folders given, with what each takes (from
:func:`composer.model.catalog.describe`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from composer.cli.report import errors_as_messages


def takes_lines(takes: dict[str, Any]) -> list[str]:
    """The lines under a model's name: what it takes."""
    if "problem" in takes:
        return [f"  unreadable   {takes['problem']}"]
    names = ["key" if n == "pitch-classes" else n for n in takes["controls"]]
    controls = ", ".join(names) or "none"
    if takes["styles"]:
        controls += f" (styles: {', '.join(takes['styles'])})"
    if takes["instruments"]:
        programs = takes["programs"]
        instruments = "any General MIDI instrument and drums" if not programs else \
            f"GM programs {', '.join(map(str, programs))} and drums"
    else:
        instruments = "one part, no drums (--program sets the output's instrument)"
    return [f"  vocabulary   {takes['vocabulary']}", f"  controls     {controls}",
            f"  instruments  {instruments}", f"  size         {takes['size']}",
            f"  corpus       {takes['corpus']}"]


def list_models(folders: tuple[Path, ...] = (), as_json: bool = False) -> None:
    """Print the shipped models and the local ones below ``folders`` (default: here)."""
    from composer.model.catalog import local_models, shipped_models

    shipped, local = shipped_models(), local_models(folders or (Path("."),))
    if as_json:
        click.echo(json.dumps([{"name": e.name, "path": str(e.path), "shipped": e.shipped,
                                **e.takes} for e in shipped + local], indent=1))
        return
    click.echo("Shipped models (--checkpoint NAME):")
    for e in shipped:
        click.echo(e.name)
        click.echo("\n".join(takes_lines(e.takes)))
    where = ", ".join(map(str, folders)) or "the current folder"
    if not local:
        click.echo(f"No local models under {where} (training output or checkpoint folders; "
                   "`composer models FOLDER` looks elsewhere).")
        return
    click.echo(f"Local models under {where} (--checkpoint PATH):")
    for e in local:
        click.echo(e.name)
        click.echo("\n".join(takes_lines(e.takes)))


@click.command()
@click.argument("folders", nargs=-1,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@errors_as_messages
def models(folders: tuple[Path, ...], as_json: bool) -> None:
    """List the shipped models and the local ones (training output and checkpoint folders
    below FOLDERS [default: the current folder, 3 levels down]) with what each takes:
    vocabulary, controls and styles, instruments and drums, size, corpus."""
    list_models(folders, as_json)
