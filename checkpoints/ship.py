"""Ship a trained run as the package's model NAME: copy its best checkpoint into
``checkpoints/NAME`` (weights, checkpoint.json, training state) and ``checkpoint.json`` into
``composer/model/shipped/NAME`` (the weights there link to ``checkpoints/NAME``), with the
corpus recorded as folders of this repository so that ``composer evaluate --checkpoint
NAME`` finds it from any working folder, and its guards measured again from that corpus by
the code training uses now (a run trained before keys were measured gets them).

Usage::

    python checkpoints/ship.py RUN NAME --sources bach=datasets/bach-chorales,... \\
        [--programs-from-corpus]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a training folder (its best/ is shipped)")
    ap.add_argument("name")
    ap.add_argument("--sources", required=True,
                    help="style=folder,... (folders relative to the repository)")
    args = ap.parse_args()
    from composer.corpus.cache import CorpusConfig
    from composer.corpus.sources import corpus_record, open_or_prepare
    from composer.model.checkpoint import load_checkpoint

    best = args.run / "best"
    meta = json.loads((best / "checkpoint.json").read_text())
    data = meta["data"]
    ev = load_checkpoint(best).events  # its corpus, prepared again if its cache changed
    corpus = open_or_prepare(data["source"], CorpusConfig(
        vocabulary=ev.kind, **{"notes" if ev.is_notes else "events": ev.config},
        **data["splits"]))
    ids = np.asarray(corpus.tokens)
    programs, drums = corpus.events.instrument_ids()
    if len(programs):  # what an instrument-aware model's corpus held
        held = ids[(ids >= programs.start) & (ids < programs.stop)] - programs.start
        data["programs"] = sorted({int(p) for p in held})
        data["drums"] = bool(((ids >= drums.start) & (ids < drums.stop)).any())
    data["guards"] = corpus_record(corpus)["guards"]
    data["sources"] = dict(s.split("=", 1) for s in args.sources.split(","))
    data["corpus"] = data["source"] = None  # this machine's paths: not shipped
    out, packaged = ROOT / "checkpoints" / args.name, ROOT / "composer/model/shipped" / args.name
    out.mkdir(parents=True, exist_ok=True)
    packaged.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "train_state.pt"):
        shutil.copyfile(best / f, out / f)
    (out / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
    meta["files"].pop("train_state.pt", None)
    (packaged / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
    link = packaged / "model.safetensors"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(Path("../../../../checkpoints") / args.name / "model.safetensors")
    print(f"shipped {best} as {args.name}: step {meta['step']}, programs {data.get('programs')}")


if __name__ == "__main__":
    main()
