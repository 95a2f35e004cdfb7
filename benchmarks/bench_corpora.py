"""Test NLL of a model with styles on each of its corpora, next to that corpus's baselines.

Usage::

    python benchmarks/bench_corpora.py CHECKPOINT STYLES_DIR [--styles bach,irish,...]

STYLES_DIR holds one subfolder per style (``python datasets/link_styles.py STYLES_DIR``).
Each style is scored on its own: a folder whose only subfolder is that style (links) is
prepared in the model's vocabulary, its test split scored by
:func:`composer.evaluation.likelihood.evaluate_model` (2,048-event windows), and the
Kneser-Ney 5-gram and unigram fitted on its train split in the same run. Prints a table of
nats/event and nats/note and the LSTM's ratio to the 5-gram (the shipped default's model
card figures); the LSTM as generation uses it (with its recall, when it has one), and the
model alone beside it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from composer.corpus.cache import CorpusConfig
from composer.corpus.prepare import prepare
from composer.evaluation.likelihood import evaluate_model
from composer.model.checkpoint import find_checkpoint, load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("styles_dir", type=Path)
    ap.add_argument("--styles", help="comma list [default: the model's styles]")
    args = ap.parse_args()
    path = find_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(path)
    ev = ckpt.events
    styles = args.styles.split(",") if args.styles else list(ckpt.model_config.controls.styles)
    key = "notes" if ev.is_notes else "events"
    config = CorpusConfig(vocabulary=ev.kind, **{key: ev.config}, **ckpt.data.get("splits", {}))
    print("| corpus (style) | test files (notes) | LSTM nats/event | LSTM nats/note | "
          "model alone nats/note | 5-gram nats/note | unigram nats/note | LSTM / 5-gram |\n"
          "|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for style in styles:
            folder = Path(tmp) / style / style
            folder.mkdir(parents=True)
            for f in sorted((args.styles_dir / style).glob("*.mid")):
                (folder / f.name).symlink_to(f.resolve())
            cache = prepare(folder.parent, Path(tmp) / f"{style}-cache", config).cache_dir
            r = evaluate_model(path, cache, "test", train_corpus=cache, device="cpu")
            m = r["models"]
            lstm, ngram, uni = m["LSTM"], m["5-gram KN"], m["unigram"]
            alone = m.get("LSTM alone", lstm)
            print(f"| {style} | {r['files']} ({r['notes']:,}) | {lstm['loss']:.4f} | "
                  f"**{lstm['nll_per_note']:.3f}** | {alone['nll_per_note']:.3f} | "
                  f"{ngram['nll_per_note']:.3f} | "
                  f"{uni['nll_per_note']:.3f} | "
                  f"{lstm['nll_per_note'] / ngram['nll_per_note']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
