"""The ``composer render`` and ``composer plot`` commands (registered on
:func:`composer.cli.main.main`): a MIDI file to a WAV or a piano-roll PNG, through
:mod:`composer.midi.render`. Both follow the one rule for outputs
(:func:`composer.core.files.check_output`): never the input, an existing file only with
``--force``."""

from __future__ import annotations

from pathlib import Path

import click

from composer.cli.report import bounded, default, errors_as_messages, force_option
from composer.core import bounds
from composer.midi.render import RenderConfig


@click.command()
@click.argument("midi_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="WAV file to write [default: MIDI_FILE with .wav].")
@click.option("--soundfont", type=click.Path(dir_okay=False, path_type=Path),
              help="General MIDI soundfont (.sf2/.sf3) [default: $COMPOSER_SOUNDFONT, else the "
                   "first found of /usr/share/sounds/sf2/FluidR3_GM.sf2, default-GM.sf2, "
                   "/usr/share/soundfonts/FluidR3_GM.sf2, default.sf2, ..., else the one "
                   "pretty_midi ships].")
@click.option("--max-length", type=bounded(bounds.RENDER_SECONDS),
              default=default(RenderConfig, "seconds"), show_default=True,
              help="Seconds of audio at most: a longer piece renders its first part.")
@force_option
@errors_as_messages
def render(midi_file: Path, out: Path | None, soundfont: Path | None, max_length: float,
           force: bool) -> None:
    """Render MIDI_FILE to a 44.1 kHz WAV with FluidSynth and a General MIDI soundfont.

    Without FluidSynth or a soundfont (apt-get install fluidsynth fluid-soundfont-gm), or if
    FluidSynth fails, a one-line note says so and simple sine waves are rendered instead.
    """
    from composer.midi.render import RenderConfig
    from composer.midi.render import render as render_file

    result = render_file(midi_file, out or midi_file.with_suffix(".wav"), soundfont,
                         RenderConfig(seconds=max_length), force=force)
    if result.notice:
        click.echo(f"Note: {result.notice}", err=True)
    how = f"FluidSynth, {result.soundfont}" if result.soundfont else "sine waves"
    click.echo(f"Wrote {result.wav_path} ({result.seconds:.1f} s of audio, {how}) in "
               f"{result.elapsed:.1f} s")


@click.command()
@click.argument("midi_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file to write [default: MIDI_FILE with .png].")
@click.option("--seed-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Shade the first S seconds as the seed the rest continues.")
@click.option("--title", help="Title [default: the file name].")
@force_option
@errors_as_messages
def plot(midi_file: Path, out: Path | None, seed_seconds: float | None,
         title: str | None, force: bool) -> None:
    """Draw MIDI_FILE as a piano roll: time x pitch, velocity as colour."""
    from composer.midi.render import plot_piano_roll

    path = plot_piano_roll(midi_file, out or midi_file.with_suffix(".png"), seed_seconds, title,
                           force)
    click.echo(f"Wrote {path}")
