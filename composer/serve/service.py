"""What ``composer serve`` does for a request, without HTTP (:mod:`composer.serve.app` is the
HTTP side): the models loaded once, the bundled openings, seeds (MIDI files parsed by
:func:`composer.core.isolate.run_isolated` in a separate, memory-capped process with a time
limit, the loader ``prepare`` uses), generation and the stored results.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from composer.controls.plan import control_inputs, make_plan
from composer.core.isolate import run_isolated
from composer.core.messages import ComposerError
from composer.generation import config as generation
from composer.generation.config import SampleConfig
from composer.generation.seeds import read_seed, seed_from_pitches
from composer.generation.session import (
    LoadedModel,
    Seed,
    choose_instruments,
    generate_music,
    load_model,
)
from composer.midi.instruments import Ensemble, parse_instruments
from composer.midi.io import load
from composer.model.catalog import describe
from composer.model.checkpoint import shipped_model, shipped_names
from composer.serve.api import ApiError, Gate, GenerateRequest, Jobs, Results, ServeConfig

WEB = "web"  # package data folder of the page and the openings
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def web_file(name: str) -> Path:
    """A file of the page's package data (``composer/serve/web/NAME``)."""
    return Path(str(resources.files("composer.serve") / WEB / name))


def openings() -> dict[str, Path]:
    """The bundled openings: id (the file's stem) -> MIDI file."""
    folder = web_file("openings")
    return {p.stem: p for p in sorted(folder.glob("*.mid"))} if folder.is_dir() else {}


def opening_name(stem: str) -> str:
    """A bundled opening's display name, from its file stem."""
    return stem.replace("-", " ").capitalize()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- the work


def parse_seed_files(jobs: list[tuple[str, float | None]], events: Any,
                     max_notes: int) -> list[Any]:
    """``run_isolated`` worker: for each (MIDI path, seconds), its seed tokens and clock, or
    the one-line reason it cannot be a seed (naming no server path; more than ``max_notes``
    notes is one)."""
    out: list[Any] = []
    for path, seconds in jobs:
        try:
            tokens, clock, _ = read_seed(path, events, seconds, max_notes=max_notes)
            out.append((tokens, clock))
        except ComposerError as e:
            out.append(str(e).replace(f"seed {path}", "the seed file")
                       .replace(path, "the seed file"))
    return out


INSTRUMENTS = "instruments"
INSTRUMENTS_INPUT = {"name": INSTRUMENTS, "label": "Instruments", "text": True,
                     "placeholder": "violin, cello, drums"}


def ensemble_of(req: GenerateRequest) -> Ensemble | None:
    """The instruments a request asks for (InstrumentError for a word that is none)."""
    text = req.controls.get(INSTRUMENTS)
    if text is None or text == "":
        return None
    if not isinstance(text, str) or len(text) > 400:
        raise ApiError("instruments must be a comma list like \"violin, cello, drums\"")
    return parse_instruments(text)


def request_controls(req: GenerateRequest, work: Path) -> dict[str, Any]:
    """The control fields of a generation request (``control_request``, ``instruments``,
    ``plan_file``) for a page request: its flags, its instruments and its plan (written
    into ``work`` as the JSON file generate's ``--controls`` reads)."""
    flags = {k: v for k, v in req.controls.items() if k != INSTRUMENTS}
    plan_file = None
    if req.plan:
        plan_file = work / "plan.json"
        plan_file.write_text(json.dumps(req.plan))
    return {"control_request": flags or None, "instruments": ensemble_of(req),
            "plan_file": str(plan_file) if plan_file else None}


class Service:
    """The models, the result store, the bounds: what the routes share."""

    def __init__(self, models: dict[str, tuple[str, LoadedModel]], config: ServeConfig,
                 root: Path) -> None:
        self.models, self.config, self.root = models, config, root
        self.results = Results(root, config.max_results, config.max_bytes)
        self.openings = openings()
        self.jobs = Jobs()
        self.tasks: set[Any] = set()  # the background jobs' asyncio tasks
        self.gate: Gate | None = None  # made in the server's event loop (lifespan)
        self.parse_gate: Gate | None = None

    def controls(self) -> dict[str, list[dict[str, Any]]]:
        """Each model's generation controls as the page shows them (``[{"name": ..., "label":
        ..., "min"/"max"/"step" or "choices" or "text"}]``, from the model's
        :class:`~composer.controls.features.ControlSpec`, and ``instruments`` for an
        instrument-aware vocabulary; none for a model trained without)."""
        return {mid: control_inputs(m.ckpt.model_config.controls)
                + ([INSTRUMENTS_INPUT] if m.events.instruments else [])
                for mid, (_, m) in self.models.items()}

    def takes(self, mid: str) -> dict[str, Any]:
        """What a served model takes (:func:`composer.model.catalog.describe`)."""
        ckpt = self.models[mid][1].ckpt
        meta = {"model": ckpt.model_config.to_dict(), "events": ckpt.event_config,
                "data": ckpt.data}
        return describe(meta, ckpt.path)

    def check(self, req: GenerateRequest) -> None:
        """Refuse (ApiError 400, naming what the model takes) a request its model cannot
        meet: a control value or plan it does not take, an instrument it never learnt."""
        _, model = self.models[req.model]
        flags = {k: v for k, v in req.controls.items() if k != INSTRUMENTS}
        try:
            make_plan(model.ckpt.model_config.controls, flags, req.plan)
            choose_instruments(model.events, ensemble_of(req), None, data=model.ckpt.data)
        except ComposerError as e:
            raise ApiError(str(e)) from None

    def seed_file(self, req: GenerateRequest, work: Path, upload: bytes | None
                  ) -> tuple[str, float | None] | None:
        """The MIDI file (and the seconds of it) a request seeds from, if any."""
        if req.seed == "upload":
            if upload is None:
                raise ApiError("seed upload needs a MIDI file in the form field 'midi'")
            if not upload:
                raise ApiError("the uploaded MIDI file is empty")
            path = work / "upload.mid"
            path.write_bytes(upload)
            return str(path), self.config.seed_seconds
        if req.seed == "opening":
            if req.opening not in self.openings:
                raise ApiError(f"no opening {req.opening!r}", 404)
            return str(self.openings[req.opening]), self.config.seed_seconds
        if req.seed == "result":
            path = self.results.file(req.result, "piece.mid")
            if path is None:
                raise ApiError(f"no result {req.result!r} (results are kept for a while "
                               "only)", 404)
            return str(path), self.config.continue_seconds
        return None

    def seed(self, req: GenerateRequest, upload: bytes | None) -> Seed | None:
        """The request's seed in its model's tokens (run in a worker thread, before the
        request queues for generation, so a bad seed is answered at once); MIDI files go
        through the isolated loader (a crash or a hang there costs this request only)."""
        _, model = self.models[req.model]
        if req.seed == "pitches":
            return Seed(seed_from_pitches(req.pitches, req.style, model.events))
        work = self.results.work_folder()
        try:
            job = self.seed_file(req, work, upload)
            if job is None:
                return None
            ((_, got),) = run_isolated(parse_seed_files, [job],
                                       (model.events, self.config.seed_notes), workers=1,
                                       timeout=self.config.parse_seconds,
                                       memory_headroom=1 << 30)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if isinstance(got, str):
            raise ApiError(got)
        return Seed(*got)

    def generate(self, req: GenerateRequest, seed: Seed | None,
                 progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Run one request (in a worker thread): generate from ``seed`` (``progress(done,
        total)`` in seconds of music), render, store."""
        _, model = self.models[req.model]
        work = self.results.work_folder()
        try:
            sample = SampleConfig(temperature=req.temperature, top_p=req.top_p,
                                  seconds=req.seconds, max_num=self.config.max_num,
                                  max_seconds=self.config.max_seconds)
            job = generation.GenerateRequest(
                sample=sample, num=req.num, rng_seed=req.rng_seed, out=str(work),
                prefix="piece", render_audio=True, copy_warn=0, threads=1,
                **request_controls(req, work))
            done = generate_music(job, model, seed, progress=progress)
            pieces = []
            for out, rendered in zip(done.outputs, done.renders, strict=True):
                notes = load(out.path).notes
                roll = {"seed_seconds": round(out.seed_seconds, 3),
                        "seconds": round(out.seconds, 3),
                        "notes": [[round(float(n["start"]), 3), round(float(n["end"]), 3),
                                   int(n["pitch"]), int(n["velocity"])] for n in notes]}
                pieces.append(self.results.add(
                    {"piece.mid": out.path, "piece.wav": rendered.wav_path,
                     "roll.json": json.dumps(roll).encode()},
                    {"seconds": round(out.seconds, 2), "notes": out.notes,
                     "seed_seconds": round(out.seed_seconds, 2), "audio": rendered.backend}))
            return pieces
        finally:
            shutil.rmtree(work, ignore_errors=True)



    def start(self) -> None:
        """Make the gates (in the server's event loop, as it starts): generation, and the
        parsing of seeds (as many at once as generation, apart from it)."""
        self.gate = Gate(self.config.workers, self.config.queue, self.config.wait_seconds)
        self.parse_gate = Gate(self.config.workers, self.config.queue,
                               self.config.wait_seconds)

    def close(self) -> None:
        """Delete the results folder."""
        shutil.rmtree(self.root, ignore_errors=True)


def load_service(checkpoints: Sequence[str | Path] = (), config: ServeConfig = ServeConfig(),
                 device: str = "cpu") -> Service:
    """A :class:`Service` for every shipped model (by name, the default first) and
    ``checkpoints`` (a shipped model's name among them is served once), each loaded once
    here, with a fresh private results folder. Torch runs on one thread per generation
    (``ServeConfig.workers`` of them at once)."""
    import torch

    torch.set_num_threads(1)
    models: dict[str, tuple[str, LoadedModel]] = {}
    named = [str(p) for p in checkpoints if not Path(p).exists() and str(p) in shipped_names()]
    for name in sorted(shipped_names(), key=lambda n: n != "default"):  # the default first
        models[name] = (f"{name} (shipped)", load_model(shipped_model(name), device))
    for path in checkpoints:
        if str(path) in named:
            continue
        mid = "".join(c if c.isalnum() or c in "-_" else "-"
                      for c in (Path(path).resolve().name or "model"))[:40]
        while mid in models:
            mid += "-2"
        models[mid] = (Path(path).name, load_model(path, device))
    return Service(models, config, Path(tempfile.mkdtemp(prefix="composer-serve-")))
