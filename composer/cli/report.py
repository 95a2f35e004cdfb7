"""The terminal side of the CLI: option defaults, errors, notes, progress, the tables of
results and their JSON, and words for what the library reports.

Errors: a :class:`composer.ComposerError` is ``Error: ...`` (exit 1); click's usage errors
exit 2; :class:`Guarded` (the command group) turns Ctrl-C into exit 130 and any other
exception into one ``Error: internal error: ...`` line (``COMPOSER_DEBUG=1`` shows the
traceback instead).

Used only by :mod:`composer.cli.main` (and :mod:`composer.cli.evaluate`); the library returns
plain dicts and dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from composer.core.bounds import Bound
from composer.core.files import atomic_write_text, check_output
from composer.core.messages import ComposerError
from composer.training.config import AUTO_BASE, NO_BASE


def default(config: type, name: str) -> Any:
    """The default of field ``name`` of a config dataclass, so that options restate no default
    of their own (the configs live in torch-free modules: ``--help`` stays light)."""
    f = next(f for f in dataclasses.fields(config) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def errors_as_messages(fn: Callable) -> Callable:
    """A click command that shows a ComposerError as ``Error: ...`` (exit 1, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ComposerError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def note(text: str) -> None:
    """A ``Note: ...`` line on stderr."""
    click.echo(f"Note: {text}", err=True)


def prepared_line(report: Any) -> None:
    """The one line on stderr about a MIDI folder just prepared (a ``PrepareReport``)."""
    click.echo(f"Corpus: {report.files_loaded:,} files, {report.events:,} events "
               f"({len(report.skipped):,} skipped) cached in {report.cache_dir}; events: "
               f"{report.why}", err=True)


INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT), the shell convention
DEBUG_ENV = "COMPOSER_DEBUG"  # set to 1: unexpected errors show their traceback


class Guarded(click.Group):
    """The command group: Ctrl-C in any command exits 130 after one line; an unexpected
    exception (a bug) becomes one ``Error: internal error: ...`` line with exit 1, unless
    ``$COMPOSER_DEBUG`` is set, which lets the traceback through."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            ctx.exit(INTERRUPTED)
        except Exception as e:
            if os.environ.get(DEBUG_ENV):
                raise
            what = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            kind = "out of memory" if isinstance(e, MemoryError) else "internal error"
            raise click.ClickException(f"{kind}: {type(e).__name__}" + (f": {what}" if what
                                       else "") + f" (rerun with {DEBUG_ENV}=1 for the "
                                       "traceback)") from None


class Progress:
    """Progress on stderr fed by ``(done, total)`` callbacks, silent when ``quiet``: a tqdm
    bar on a terminal; elsewhere (a log file, a pipe) one plain line at most every
    ``interval`` seconds, and the last. ``postfix``: a few words after the count."""

    def __init__(self, desc: str, unit: str, quiet: bool, interval: float = 5.0):
        self.desc, self.unit, self.quiet, self.interval = desc, unit, quiet, interval
        self.bar, self.tty, self.last, self.shown = None, None, -math.inf, None

    def __call__(self, done: int, total: int, postfix: str = "") -> None:
        if self.quiet:
            return
        if self.tty is None:
            self.tty = sys.stderr.isatty()
        if not self.tty:
            now = time.monotonic()
            if (now - self.last >= self.interval or done >= total) and done != self.shown:
                share = f" ({done / total:.0%})" if total else ""
                click.echo(f"{self.desc}: {done:,}/{total:,} {self.unit}{share}"
                           + (f", {postfix}" if postfix else ""), err=True)
                self.last, self.shown = now, done
            return
        if self.bar is None:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: workers are forked
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False, initial=done)
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train_count(step: int, total: int, info: dict[str, Any]) -> tuple[str, int, int]:
    """(unit, done, total) of a training run's progress: seconds of its time budget, or
    steps when it has none or they will end it first."""
    budget = info.get("budget_seconds")
    if budget and step / total < info["fraction"] - 1e-9:
        return "s", round(info["fraction"] * budget), round(budget)
    return "step", step, total


def train_postfix(step: int, info: dict[str, Any]) -> str:
    """The words after a training run's count: step, training loss, last and best validation
    loss, time left in the budget, speed."""
    words = [f"step {step:,}", f"loss {info['loss']:.3f}"]
    if info.get("valid_loss") is not None:
        words.append(f"valid {info['valid_loss']:.3f} (best {info['best']:.3f})")
    if info.get("seconds_left") is not None:
        left = round(info["seconds_left"])
        words.append(f"{left // 60}:{left % 60:02d} left")
    words.append(f"{info['tokens_per_s']:,.0f} events/s")
    return ", ".join(words)


ENGINE_WORDS = {"int8": "fast CPU mode (8-bit weights)", "fused": "full-precision mode",
                "plain": "reference mode"}


def engine_words(engine: str) -> str:
    """How a generation path (``Generation.engine``, e.g. ``int8``, ``fused+cuda-graph``)
    reads to a musician."""
    name, _, graph = engine.partition("+")
    return ENGINE_WORDS.get(name, f"{name} mode") + (" on the GPU" if graph else "")


def checkpoint_summary(meta: dict[str, Any], resumable: str) -> str:
    """The readable summary of :func:`composer.model.checkpoint.read_info`'s result for
    ``composer info``; ``resumable``: "yes" or "no (why)"."""
    m, ev, tr = meta.get("model", {}), meta.get("events", {}), meta.get("train", {})
    metrics, data = meta.get("metrics", {}), meta.get("data", {})
    saved = str(meta.get("created", "?"))[:16].replace("T", " ")
    lines = [f"Checkpoint: {meta['path']} (saved {saved}, "
             f"composer {meta.get('composer_version', '?')})",
             f"  model        {m.get('layers')} LSTM layers x {m.get('hidden')} units, "
             f"embedding {m.get('embed_dim')}, {meta['parameters']:,} parameters",
             f"  vocabulary   {m.get('vocab_size')} events: pitches {ev.get('min_pitch')}.."
             f"{ev.get('max_pitch')}, {ev.get('velocity_bins')} loudness levels, "
             + (f"notes with durations, time in 1/{ev.get('steps_per_quarter')} beats"
                if ev.get("kind") == "notes" else
                f"time in steps of {1000 / ev.get('steps_per_second', 100):g} ms")]
    controls = m.get("controls") or {}
    if controls.get("names"):  # a model trained with controls (composer.controls.features)
        styles = controls.get("styles") or []
        lines.append(f"  controls     {', '.join(controls['names'])}"
                     + (f" (styles: {', '.join(styles)})" if styles else ""))
    if tr.get("minutes"):
        planned = f" (a {tr['minutes']:g}-minute budget)"
    else:
        planned = f" of {tr['steps']:,} planned" if isinstance(tr.get("steps"), int) else ""
    base = f", fine-tuned from {data['base']}" if data.get("base") else ""
    seeds = metrics.get("soup") or []
    if len(seeds) > 1:  # composer.training.soup
        base += f"; the average of the runs of seeds {', '.join(map(str, seeds))}"
    elif seeds:
        base += f"; the run of seed {seeds[0]}"
    lines.append(f"  trained      {meta.get('step', 0):,} steps{planned}{base}")
    if "loss" in metrics:
        lines.append(f"  valid loss   {metrics['loss']:.4f} nats/event (perplexity "
                     f"{metrics.get('perplexity', math.nan):.2f}, next event right "
                     f"{metrics.get('accuracy', math.nan):.1%} of the time)")
    else:
        lines.append("  valid loss   not evaluated yet")
    recall = m.get("recall") or {}
    if recall.get("share"):  # fitted after training (composer.model.recall)
        with_it = metrics.get("recall_loss")
        lines.append(f"  recall       share {recall['share']:g}, sharpness "
                     f"{recall.get('sharpness', 0):g}"
                     + (f": valid loss {with_it:.4f} nats/event with it" if with_it else "")
                     + " (generate --no-recall: the model alone)")
    where = data.get("corpus") or data.get("source") or "not recorded"
    files = data.get("files") or {}
    counts = ", ".join(f"{n:,} {s}" for s, n in files.items())
    lines.append(f"  corpus       {where}" + (f" ({counts} files)" if counts else ""))
    if data.get("train_events"):
        lines.append(f"  train data   {data['train_events']:,} events")
    lines.append(f"  resumable    {resumable}")
    return "\n".join(lines)


def echo_outputs(outputs: list) -> None:
    """One line per written file: path, duration, notes, share of silence; a file without
    notes (the model drew only rests) is a result too, and says so."""
    for o in outputs:
        click.echo(f"{o.path}  {o.seconds:7.1f} s  {o.notes:6,} notes  "
                   f"{o.silence:6.1%} silence" + ("  (no notes: the model drew only rests; "
                                                  "try a longer --length or another "
                                                  "--rng-seed)" if o.notes == 0 else ""))


def bounded(bound: Bound) -> click.ParamType:
    """The click type of a :class:`~composer.core.bounds.Bound`: out of range is a usage error
    naming the range, the same range the library and the server keep."""
    if bound.integer:
        return click.IntRange(int(bound.lo), int(bound.hi))
    return click.FloatRange(bound.lo, bound.hi, min_open=bound.lo_open)


force_option = click.option(  # every command that writes files: the one rule (check_output)
    "--force", is_flag=True, help="Replace existing output files (never the input).")


def not_with(other: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A flag's callback: a usage error when it is given together with the flag ``other``
    (whichever of the two click reads second says so)."""
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value and ctx.params.get(other):
            raise click.BadOptionUsage(param.name or "", f"--{param.name} and --{other} "
                                       "contradict each other: give one of them")
        return value
    return check


def check_checkpoint(ctx: click.Context, param: click.Parameter, value: Path | None
                     ) -> Path | None:
    """A checkpoint path typed, or the name of a model shipped in the package: a usage error
    when nothing is there (not even the copy an interrupted save leaves, which the library
    reads instead)."""
    if value is None or Path(value).exists():
        return value
    from composer.model.checkpoint import find_checkpoint, read_info, shipped_names

    if find_checkpoint(value).exists():  # a shipped model's name, resolved as generate does
        return value
    try:
        read_info(value)  # finds the copy an interrupted save left, if any
    except ComposerError:
        raise click.BadParameter(f"checkpoint folder {value} does not exist (models shipped "
                                 f"by name: {', '.join(shipped_names())})") from None
    return value


def check_base(ctx: click.Context, param: click.Parameter, value: Path | None
               ) -> Path | None:
    """``--init-from``: ``auto``, ``none`` or a checkpoint (:func:`check_checkpoint`)."""
    return value if str(value) in (AUTO_BASE, NO_BASE) else check_checkpoint(ctx, param, value)


def check_seed_spec(ctx: click.Context, param: click.Parameter, value: str | None
                    ) -> str | None:
    """``--seed``: an existing MIDI file, or pitches; anything else (empty, a folder, a
    missing file, a word that is no pitch, too many pitches) is a usage error naming it."""
    if value is None:
        return value
    from composer.generation import seeds

    try:
        seeds.check_seed_spec(value)
    except ComposerError as e:
        raise click.BadParameter(str(e)) from None
    return value


def model_table(result: dict[str, Any]) -> str:
    """The terminal table of :func:`composer.evaluation.likelihood.evaluate_model`'s result."""
    lstm = result["models"]["LSTM"]
    lines = [f"Split {result['split']!r} of {result['corpus']}: {result['files']:,} files, "
             f"{lstm['events']:,} events, {result['notes']:,} notes, "
             f"{result['seconds']:,.0f} s; baselines fitted on {result['train_events']:,} "
             f"train events of {result['train_corpus']}",
             "NLL in nats per event, per note and per second of music (the last two compare "
             "across vocabularies)",
             f"{'model':<12} {'NLL/event':>10} {'NLL/note':>9} {'NLL/s':>8} {'perplexity':>11} "
             f"{'accuracy':>9}   LSTM ahead by"]
    for name, r in result["models"].items():
        a = result["ahead"].get(name)
        gap = (f"{a['nll_per_note']:.3f} nats/note, perplexity x{a['perplexity_ratio']:.2f}, "
               f"accuracy {a['accuracy']:+.3f}" if a else "-")
        lines.append(f"{name:<12} {r['loss']:>10.4f} {r['nll_per_note']:>9.3f} "
                     f"{r['nll_per_second']:>8.2f} {r['perplexity']:>11.2f} "
                     f"{r['accuracy']:>9.3f}   {gap}")
    return "\n".join(lines)


def music_table(result: dict[str, Any]) -> str:
    """The terminal table of :func:`composer.evaluation.musicstats.compare_sets`' result."""
    lines = [f"{result['generated_files']} generated vs {result['reference_files']} reference "
             "pieces; mean ± std per piece. overlap, KL: of the reference's intra-set and the",
             "inter-set distance densities (1, 0: generated pieces lie as close to the "
             "reference as reference pieces lie to each other)",
             f"{'feature':<30} {'reference':>15} {'generated':>15} {'overlap':>8} {'KL':>7}"]
    for name, e in result["features"].items():
        digits = 3 if not e["shape"] and max(abs(e["reference"]["mean"]),
                                             abs(e["generated"]["mean"])) < 1 else 2
        cells = [f"{e[k]['mean']:.{digits}f} ± {e[k]['std']:.{digits}f}" if not e["shape"]
                 else "x".join(map(str, e["shape"])) + " hist." for k in ("reference",
                                                                          "generated")]
        lines.append(f"{name:<30} {cells[0]:>15} {cells[1]:>15} {e['overlap']:>8.3f} "
                     f"{e['kl']:>7.3f}")
    beyond = result.get("beyond_reference")
    if beyond:
        note, run = beyond["longest_note"], beyond["longest_run"]
        lines += ["Beyond the reference (all pieces of each set):",
                  f"{'longest note (s)':<30} {note['reference']:>15.2f} "
                  f"{note['generated']:>15.2f}",
                  f"{'longest same-pitch run (s)':<30} {run['reference']:>15.2f} "
                  f"{run['generated']:>15.2f}",
                  f"{'notes longer than its longest':<30} {0:>15.1%} "
                  f"{beyond['longer_notes_share']:>15.1%}",
                  f"{'pieces with a longer run':<30} {0:>15.1%} "
                  f"{beyond['longer_runs_share']:>15.1%}"]
    return "\n".join(lines)


def copy_table(names: Sequence[str], matches: Sequence[Any], warnings: Sequence[str | None]
               ) -> str:
    """The terminal table of copy-check results
    (:class:`composer.evaluation.copycheck.CopyMatch`)."""
    lines = [f"{'file':<32} {'events':>7} {'seconds':>8} {'share':>6}  source (at s, transposed)"]
    for name, m, warn in zip(names, matches, warnings, strict=True):
        src = f"{m.source} ({m.source_seconds:.1f} s, {m.transpose:+d})" if m.events else "-"
        lines.append(f"{name:<32} {m.events:>7} {m.seconds:>8.1f} {m.fraction:>6.0%}  {src}"
                     + ("  COPY" if warn else ""))
    return "\n".join(lines)


def save_json(result: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Write a result (dicts, lists, numbers, dataclasses' ``__dict__``) as JSON; NaN and
    infinities become null. An existing ``path`` is replaced only with ``force``."""
    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, (float, np.floating)):
            return float(x) if math.isfinite(x) else None
        return x.item() if isinstance(x, np.generic) else x

    check_output(path, (), force)
    return atomic_write_text(path, json.dumps(clean(result), indent=1) + "\n", replace=force)


def train_summary(result: Any) -> str:
    """What ``composer train`` prints when a run ends (``result``: its
    :class:`~composer.training.config.TrainResult`)."""
    lines = [f"Stopped ({result.stopped}) at step {result.step:,}; best validation loss "
             f"{result.best_valid_loss:.4f} nats/event; {result.skipped_steps} steps skipped "
             "as non-finite."]
    if result.soup:
        seeds = ", ".join(map(str, result.soup))
        what = (f"the average of the fine-tunes of seeds {seeds}" if len(result.soup) > 1
                else f"the fine-tune of seed {seeds}")
        lines.append(f"The best is {what} (the runs after the first: "
                     f"{result.out_dir / 'soup'}), {result.best_valid_loss:.4f} nats/event on "
                     "the validation split.")
    if result.recall.on:
        lines.append(f"Recall fitted on the validation split (share {result.recall.share:g}, "
                     f"sharpness {result.recall.sharpness:g}): {result.recall_loss:.4f} "
                     "nats/event with it.")
    lines.append(f"Checkpoints: {result.out_dir / 'best'} (best), "
                 f"{result.out_dir / 'latest'} (latest)")
    return "\n".join(lines)
