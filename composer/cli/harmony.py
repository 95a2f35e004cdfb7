"""The harmonizer's commands (registered on :func:`composer.cli.main.main`):
``composer harmonize MELODY``, ``composer infill PIECE --from BAR --to BAR`` and
``composer train-harmonizer MIDI_DIR``. They parse, call :mod:`composer.harmony`, print.

Training has its own command rather than ``composer train --task harmonize``: it reads
pieces with parts (not a prepared event corpus), writes another kind of checkpoint and
shares none of ``train``'s corpus, event and control options.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from composer.cli.report import errors_as_messages
from composer.harmony.config import HarmonyModelConfig, HarmonySampleConfig, HarmonyTrainConfig

SAMPLE, MODEL, TRAIN = HarmonySampleConfig(), HarmonyModelConfig(), HarmonyTrainConfig()


def sampling(f):
    """The options harmonize and infill share."""
    options = [
        click.option("--checkpoint", type=click.Path(exists=True, path_type=Path),
                     help="Harmonizer folder [default: the shipped chorale harmonizer]."),
        click.option("--voices", help="Comma-separated voices to write [default: all the "
                     "others / all]."),
        click.option("--num", type=click.IntRange(1, 32), default=1, show_default=True,
                     help="How many versions to write."),
        click.option("--rng-seed", type=click.IntRange(0, 2**63 - 1),
                     help="Seed for reproducible output [default: random]."),
        click.option("--temperature", type=click.FloatRange(0, 10, min_open=True),
                     default=SAMPLE.temperature, show_default=True,
                     help="Softmax temperature of every draw."),
        click.option("--passes", type=click.IntRange(1, 10000), default=SAMPLE.passes,
                     show_default=True, help="Gibbs-like resampling passes."),
        click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                     help="MIDI file to write (OUT-1.mid... with --num > 1)."),
        click.option("--musicxml", is_flag=True, help="Also write MusicXML (needs music21: "
                     "pip install 'composer[score]')."),
        click.option("--force", is_flag=True, help="Replace existing output files."),
        click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="CPU threads."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def voice_list(text: str | None) -> list[str] | None:
    """``"alto, bass"`` -> ["alto", "bass"]; None stays None."""
    return [v for v in (w.strip() for w in text.split(",")) if v] if text else None


def load(checkpoint: Path | None, threads: int):
    """The harmonizer model, on ``threads`` CPU threads."""
    import torch

    from composer.harmony.store import load_harmonizer

    torch.set_num_threads(threads)
    return load_harmonizer(checkpoint)[0]


def report(paths: list[Path], start: float) -> None:
    """One line per written file and the time taken."""
    for path in paths:
        click.echo(f"Wrote {path}")
    click.echo(f"in {time.perf_counter() - start:.1f} s")


@click.command()
@click.argument("melody")
@click.option("--part", help="The MIDI part that is the melody [default: the top line].")
@click.option("--melody-voice", help="The voice that sings the melody [default: the highest "
              "whose range holds it].")
@click.option("--key", help="Key for the score, e.g. G, Em, F#m [default: inferred].")
@click.option("--meter", default="4/4", show_default=True,
              help="Time signature of a melody line (a MIDI file's own is used).")
@click.option("--bpm", type=click.FloatRange(20, 400), default=90, show_default=True,
              help="Tempo of a melody line (a MIDI file's own is used).")
@click.option("--transpose", type=click.IntRange(-48, 48), default=0, show_default=True,
              help="Shift the melody by this many semitones first.")
@sampling
@errors_as_messages
def harmonize(melody: str, part: str | None, melody_voice: str | None, key: str | None,
              meter: str, bpm: float, transpose: int, checkpoint: Path | None,
              voices: str | None, num: int, rng_seed: int | None, temperature: float,
              passes: int, out: Path | None, musicxml: bool, force: bool, threads: int
              ) -> None:
    """Write voices under MELODY: a MIDI file or a line like "G4:1 A4:1 B4:2".

    The melody is kept as it is; the added voices (by default alto, tenor and bass under a
    soprano) are written on the model's beat grid, one named track each.
    """
    from composer.harmony.config import HarmonyError
    from composer.harmony.melody import read_melody
    from composer.harmony.session import harmonize as run
    from composer.harmony.session import write_scores

    start = time.perf_counter()
    notes, score = read_melody(melody, part)
    if score.parts:
        signature, tempo = score.meter, score.tempo
    else:
        try:
            top, bottom = (int(x) for x in meter.split("/"))
        except ValueError:
            raise HarmonyError(f"--meter {meter!r} is not a time signature like 3/4") from None
        if top < 1 or bottom not in (1, 2, 4, 8, 16, 32):
            raise HarmonyError(f"--meter {meter!r} is not a time signature like 3/4")
        signature, tempo = (top, bottom), round(60e6 / bpm)
    model = load(checkpoint, threads)
    config = HarmonySampleConfig(passes=passes, temperature=temperature, rng_seed=rng_seed)
    scores = run(model, notes, config, num=num, voices=voice_list(voices),
                 melody_name=melody_voice, key=key, transpose=transpose, meter=signature,
                 tempo=tempo)
    source = Path(melody) if score.parts else None
    out = out or Path(f"{source.stem if source else 'melody'}-harmonized.mid")
    report(write_scores(scores, out, musicxml=musicxml, force=force,
                        inputs=[source] if source else []), start)


@click.command()
@click.argument("piece", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "first", type=int, required=True, help="First bar to rewrite (1-based).")
@click.option("--to", "last", type=int, required=True, help="Last bar to rewrite (inclusive).")
@sampling
@errors_as_messages
def infill(piece: Path, first: int, last: int, checkpoint: Path | None, voices: str | None,
           num: int, rng_seed: int | None, temperature: float, passes: int, out: Path | None,
           musicxml: bool, force: bool, threads: int) -> None:
    """Rewrite bars FROM..TO of PIECE (a MIDI file with one part per voice) so that they
    join what comes before and after; every note outside the span is kept exactly."""
    from composer.harmony.session import infill as run
    from composer.harmony.session import write_scores
    from composer.midi.parts import load_parts

    start = time.perf_counter()
    score = load_parts(piece)
    model = load(checkpoint, threads)
    config = HarmonySampleConfig(passes=passes, temperature=temperature, rng_seed=rng_seed)
    scores = run(model, score, first, last, config, num=num, voices=voice_list(voices))
    out = out or piece.with_name(f"{piece.stem}-infill.mid")
    report(write_scores(scores, out, musicxml=musicxml, force=force, inputs=[piece]), start)


@click.command("train-harmonizer")
@click.argument("midi_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("checkpoints/harmonizer"), show_default=True,
              help="Harmonizer folder to write (the best by validation loss).")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=TRAIN.minutes,
              show_default=True, help="Wall-clock budget.")
@click.option("--steps", type=click.IntRange(min=0), default=TRAIN.steps, show_default=True,
              help="Stop after this many updates too (0: the budget only).")
@click.option("--hidden", type=click.IntRange(min=1), default=MODEL.hidden, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=MODEL.layers, show_default=True)
@click.option("--embed", type=click.IntRange(min=1), default=MODEL.embed, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=MODEL.dropout,
              show_default=True)
@click.option("--steps-per-beat", type=click.IntRange(1, 48), default=MODEL.steps_per_beat,
              show_default=True, help="Grid subdivision of a beat.")
@click.option("--batch-size", type=click.IntRange(min=1), default=TRAIN.batch_size,
              show_default=True)
@click.option("--window-beats", type=click.IntRange(min=1), default=TRAIN.window_beats,
              show_default=True, help="Length of the training crops.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=TRAIN.lr,
              show_default=True)
@click.option("--eval-every", type=click.IntRange(min=1), default=TRAIN.eval_every,
              show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=TRAIN.seed,
              show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=TRAIN.threads,
              show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing harmonizer at --out.")
@errors_as_messages
def train_harmonizer(midi_dir: Path, out: Path, minutes: float, steps: int, hidden: int,
                     layers: int, embed: int, dropout: float, steps_per_beat: int,
                     batch_size: int, window_beats: int, lr: float, eval_every: int,
                     seed: int, threads: int, force: bool) -> None:
    """Train a harmonizer on the pieces with parts in MIDI_DIR (one voice per track, e.g.
    the bundled chorales' Soprano/Alto/Tenor/Bass); the test split is never trained on."""
    from composer.harmony.config import HarmonyError
    from composer.harmony.corpus import load_grid_corpus
    from composer.harmony.train import train_harmonizer as run

    if out.exists() and not force:
        raise HarmonyError(f"{out}: exists; pass --force to replace it")
    corpus = load_grid_corpus(midi_dir, steps_per_beat)
    for line in corpus.skipped[:5]:
        click.echo(f"Note: skipped {line}", err=True)
    model = HarmonyModelConfig(voices=corpus.voices, ranges=corpus.ranges(),
                               steps_per_beat=steps_per_beat, embed=embed, hidden=hidden,
                               layers=layers, dropout=dropout)
    config = HarmonyTrainConfig(minutes=minutes, steps=steps, batch_size=batch_size,
                                window_beats=window_beats, lr=lr, eval_every=eval_every,
                                seed=seed, threads=threads)
    metrics = run(corpus, out, model, config, log=click.echo)
    click.echo(f"Wrote {out} (valid loss {metrics.get('valid_loss')} at step "
               f"{metrics.get('step')})")
