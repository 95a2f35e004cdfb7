"""``composer serve``: one page and a small JSON API to seed, generate, see and hear.

A Starlette app (:func:`create_app`, run by uvicorn in :func:`serve`) over a
:class:`composer.serve.service.Service`:

- ``GET /``, ``GET /static/{app.js,style.css}``: the page (package data in ``composer/serve/web``;
  nothing is loaded from elsewhere, and the Content-Security-Policy says so).
- ``GET /api/models``: the models served (every shipped one and each ``--checkpoint``), with
  the ``controls`` each declares (density, key, style, tempo, instruments: empty for a
  model trained without), what each ``takes`` (vocabulary, styles, instruments, size) and
  the request limits. A request may add a ``plan``: segments over time
  (:mod:`composer.controls.plan`); a control, value or instrument its model does not take
  is answered 400 with one line naming what it takes.
- ``GET /api/openings``: the bundled openings a seed may start from.
- ``POST /api/generate``: a JSON request (:func:`composer.serve.api.check_request`), or a
  multipart form with the JSON in field ``request`` and a MIDI file in field ``midi``;
  answers ``{"results": [{"id", "urls", ...}]}`` for the pieces made.
- ``POST /api/jobs``: the same request answered at once (202) with a job id; ``GET
  /api/jobs/{id}`` says its state (queued, running, done, failed), the seconds of music
  drawn so far of how many, then its results or its error (what the page uses).
- ``GET /api/results/{id}/{piece.mid,piece.wav,roll.json}``: a piece's files (roll.json:
  its notes and the seed's length, drawn by the page).

Safety: binds 127.0.0.1 unless told otherwise (another host is said out loud); on any
address, a Host header that does not name this machine (or an ``--allow-host``) is refused
with 421, against DNS rebinding (:func:`composer.serve.connections.allowed_hosts`), and a
POST from another Origin with 403; connections are timed and capped, and repeated log lines
are counted, not written (:mod:`composer.serve.connections`); bodies are bounded (413 from the
Content-Length, else while reading; 408 when they come too slowly); uploads are
parsed in an isolated process (:mod:`composer.serve.service`); every field is checked; requests
queue behind :class:`composer.serve.api.Gate`; every error is one JSON line
``{"error": "..."}``, never a traceback (unexpected ones are logged, answered 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from composer.core import bounds
from composer.core.bounds import loads_json
from composer.core.messages import ComposerError
from composer.serve import harmony
from composer.serve.api import RESULT_FILES, ApiError, GenerateRequest, ServeConfig, check_request
from composer.serve.connections import (
    allowed_hosts,
    guarded_protocol,
    host_allowed,
    host_name,
    listen,
    quiet_logs,
    raise_file_limit,
)
from composer.serve.service import Service, is_loopback, load_service, opening_name
from composer.serve.service import web_file as page_file

log = logging.getLogger(__name__)

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
          "harmony.js": "text/javascript"}
FORM_SLACK = 64 << 10  # room for the form's JSON and boundaries beside an upload
JSON_BYTES = 64 << 10  # largest JSON request
HEADERS = {  # on every response
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def error(message: str, status: int) -> JSONResponse:
    """The one-line JSON error every failure answers."""
    return JSONResponse({"error": " ".join(str(message).split())}, status, headers=HEADERS)


def api(handler: Callable[[Request, Service], Any]) -> Callable[[Request], Any]:
    """A route of ``handler``: :class:`ApiError` and ComposerError become 4xx JSON lines,
    anything else is logged and answered 500 with a generic line."""
    async def route(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            return await handler(request, service)
        except Exception as e:
            return error(*failure(e, service))
    return route


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes: from the Content-Length
    before reading anything, else as soon as the bytes read pass it."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(f"request too large (the limit is {limit:,} bytes)" if length.isdigit()
                       else "bad Content-Length", 413 if length.isdigit() else 400)
    chunks: list[bytes] = []
    seconds = request.app.state.service.config.body_seconds

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(f"request too large (the limit is {limit:,} bytes)", 413)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), seconds)
    except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11 on)
        raise ApiError(f"the request's body took longer than {seconds:g} s", 408) from None
    return b"".join(chunks)


def decode_json(data: bytes | str) -> Any:
    """The JSON of a request; ApiError 400 when it is not JSON, or nested too deep or with
    numbers too long to decode safely (:func:`composer.core.bounds.loads_json`)."""
    try:
        return loads_json(data, ApiError)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("the request is not valid JSON") from None


async def read_request(request: Request, service: Service
                       ) -> tuple[GenerateRequest, bytes | None]:
    """The checked generation request of a JSON body or a multipart form (its JSON in
    field ``request``, a MIDI file in field ``midi``), and the upload's bytes."""
    if service.gate is None:
        raise ApiError("the server is starting", 503)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    upload = None
    if kind == "multipart/form-data":
        limit = service.config.upload_bytes
        body = await read_body(request, limit + FORM_SLACK)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=1, max_fields=4,
                                                         max_part_size=JSON_BYTES)
        try:
            fields = decode_json(form.get("request") or "{}")
            part = form.get("midi")
            if isinstance(part, UploadFile):
                upload = await part.read(limit + 1)
                if len(upload) > limit:
                    raise ApiError(f"MIDI upload too large (the limit is {limit:,} bytes)",
                                   413)
            elif part is not None:
                raise ApiError("the form field 'midi' must be a file")
        finally:
            await form.close()
    elif kind == "application/json":
        fields = decode_json(await read_body(request, JSON_BYTES))
    else:
        raise ApiError("send application/json or multipart/form-data", 415)
    req = check_request(fields, service.config, service.models, service.controls())
    service.check(req)  # a value or an instrument the model does not take: 400 now
    if upload is not None and req.seed != "upload":
        raise ApiError("a MIDI file was sent but seed is not 'upload'")
    return req, upload


async def generate(request: Request, service: Service) -> Response:
    """``POST /api/generate``: answers when the pieces are made."""
    req, upload = await read_request(request, service)
    seed = await service.parse_gate.run(service.seed, req, upload)
    pieces = await service.gate.run(service.generate, req, seed)
    return JSONResponse({"results": pieces}, headers=HEADERS)


def failure(e: Exception, service: Service) -> tuple[str, int]:
    """The one-line message and HTTP status of an exception (unexpected ones logged)."""
    if isinstance(e, ApiError):
        return str(e), e.status
    if isinstance(e, HTTPException):
        return str(e.detail), e.status_code
    if isinstance(e, ComposerError):  # a seed or a request the model cannot meet
        return str(e).replace(str(service.root), "<results>"), 400
    if isinstance(e, ClientDisconnect):  # nobody is left to answer: one line in the log
        log.info("a client went away before its request was read")
        return "client disconnected", 400
    log.error("internal error", exc_info=e)
    return "internal error (the server log has the details)", 500


async def start_job(request: Request, service: Service) -> Response:
    """``POST /api/jobs``: the same request as ``/api/generate``, answered at once (202)
    with a job to poll (``GET /api/jobs/{id}``) for progress and then the results."""
    req, upload = await read_request(request, service)
    seed = await service.parse_gate.run(service.seed, req, upload)  # a bad seed: 4xx now
    gate = service.gate
    gate.admit()  # 503 now when the queue is full
    job = service.jobs.new()

    def work() -> list[dict[str, Any]]:
        job.state = "running"
        return service.generate(req, seed, job.progress)

    async def run() -> None:
        try:
            job.results = await gate.run(work, admitted=True)
            job.state = "done"
        except Exception as e:
            job.error, job.status = failure(e, service)
            job.state = "failed"

    task = asyncio.create_task(run())
    service.tasks.add(task)  # held until done (the loop keeps weak references only)
    task.add_done_callback(service.tasks.discard)
    return JSONResponse({"job": job.id, "url": f"/api/jobs/{job.id}"}, 202, headers=HEADERS)


async def job_state(request: Request, service: Service) -> Response:
    """``GET /api/jobs/{id}``."""
    job = service.jobs.get(request.path_params["id"])
    if job is None:
        raise ApiError("no such job (jobs are kept for a while only)", 404)
    return JSONResponse(job.view(), headers=HEADERS)


async def models(_request: Request, service: Service) -> Response:
    """``GET /api/models``."""
    controls = service.controls()
    c = service.config
    return JSONResponse({
        "models": [{"id": mid, "name": name, "vocabulary": m.events.kind,
                    "controls": controls[mid], "takes": {  # no server path (the corpus)
                        k: v for k, v in service.takes(mid).items() if k != "corpus"}}
                   for mid, (name, m) in service.models.items()],
        "limits": {"seconds": c.max_seconds, "num": c.max_num, "upload_bytes": c.upload_bytes,
                   "temperature": bounds.TEMPERATURE.hi}}, headers=HEADERS)


async def list_openings(_request: Request, service: Service) -> Response:
    """``GET /api/openings``."""
    return JSONResponse({"openings": [{"id": k, "name": opening_name(k)}
                                      for k in service.openings]}, headers=HEADERS)


async def result_file(request: Request, service: Service) -> Response:
    """``GET /api/results/{id}/{file}``."""
    name = request.path_params["file"]
    path = service.results.file(request.path_params["id"], name)
    if path is None:
        raise ApiError("no such result (results are kept for a while only)", 404)
    return FileResponse(path, media_type=RESULT_FILES[name], headers=HEADERS,
                        filename=name if name.endswith(".mid") else None)


async def harmonize_view(request: Request, _service: Service) -> Response:
    """``POST /api/harmonize`` (:mod:`composer.serve.harmony`)."""
    fields = decode_json(await read_body(request, harmony.BODY_BYTES))
    return JSONResponse(await harmony.work(harmony.run_harmonize, fields), headers=HEADERS)


async def infill_view(request: Request, _service: Service) -> Response:
    """``POST /api/infill`` (:mod:`composer.serve.harmony`)."""
    fields = decode_json(await read_body(request, harmony.BODY_BYTES))
    return JSONResponse(await harmony.work(harmony.run_infill, fields), headers=HEADERS)


async def static(request: Request, _service: Service) -> Response:
    """The page: ``GET /`` and ``GET /static/{name}``."""
    name = request.path_params.get("name", "index.html")
    if name not in STATIC:
        raise ApiError("not found", 404)
    return Response(page_file(name).read_bytes(), media_type=STATIC[name], headers=HEADERS)


async def not_found(request: Request, exc: Exception) -> Response:
    """404 and 405 as JSON lines too."""
    status = getattr(exc, "status_code", 404)
    return error("not found" if status == 404 else getattr(exc, "detail", "bad request"),
                 status)


async def internal(request: Request, exc: Exception) -> Response:
    """The last resort: a generic line, the details in the log."""
    log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
    return error("internal error (the server log has the details)", 500)


class Guard:
    """ASGI middleware: on any address, refuse a request that changes something (anything
    but GET and HEAD) sent from another site: an Origin other than the Host it was sent to
    (``null`` included), or a browser's ``Sec-Fetch-Site: cross-site``. With ``hosts``
    (what ``serve`` always gives), also refuse, with 421, a Host header naming neither one
    of them nor the address the connection arrived at (DNS rebinding)."""

    def __init__(self, app: Any, hosts: Iterable[str] | None) -> None:
        self.app = app
        self.hosts = {host_name(h) for h in hosts} if hosts is not None else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "")
            origin = headers.get("origin")
            arrived = (scope.get("server") or (None,))[0]
            if self.hosts is not None and not host_allowed(host, self.hosts, arrived):
                await error("host not allowed (composer serve --allow-host NAME lets a name "
                            "in)", 421)(scope, receive, send)
                return
            foreign = (origin is not None and origin.split("//", 1)[-1] != host) or \
                headers.get("sec-fetch-site") == "cross-site"
            if scope["method"] not in ("GET", "HEAD") and foreign:
                await error("cross-site request refused", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(service: Service, allowed_hosts: Iterable[str] | None = None) -> Starlette:
    """The Starlette app over ``service`` (its gate made, its folder deleted by the
    lifespan)."""
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        service.start()
        try:
            yield
        finally:
            service.close()

    routes = [Route("/", api(static)), Route("/static/{name}", api(static)),
              Route("/api/models", api(models)), Route("/api/openings", api(list_openings)),
              Route("/api/generate", api(generate), methods=["POST"]),
              Route("/api/jobs", api(start_job), methods=["POST"]),
              Route("/api/jobs/{id}", api(job_state)),
              Route("/api/results/{id}/{file}", api(result_file)),
              Route("/api/harmonize", api(harmonize_view), methods=["POST"]),
              Route("/api/infill", api(infill_view), methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: not_found, Exception: internal})
    app.state.service = service
    app.add_middleware(Guard, hosts=allowed_hosts)
    return app


def create_app(checkpoints: Sequence[str | Path] = (), config: ServeConfig = ServeConfig(),
               *, allowed_hosts: Iterable[str] | None = None, device: str = "cpu") -> Starlette:
    """The app serving the shipped model (when installed) and ``checkpoints``, each loaded
    once here. ``allowed_hosts``: the Host names accepted (None: any)."""
    return build_app(load_service(checkpoints, config, device), allowed_hosts)


def serve(checkpoints: Sequence[str | Path] = (), config: ServeConfig = ServeConfig(),
          echo: Callable[[str], None] = print) -> None:
    """``composer serve``: bind the address (a port in use is a one-line error before
    anything is printed), load the models, then serve the page with uvicorn until Ctrl-C.
    A host other than loopback is said in a warning line first."""
    sock = listen(config)
    try:
        app = create_app(checkpoints, config, allowed_hosts=allowed_hosts(config))
        if not is_loopback(config.host):
            echo(f"Warning: listening on {config.host}, not only on this machine: anyone who "
                 "can reach it can use the page (there is no login)")
        shown = f"[{config.host}]" if ":" in config.host else config.host
        raise_file_limit()
        server = make_server(app, config)
        echo(f"composer serve: http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops)")
        server.run(sockets=[sock])
    finally:
        sock.close()


def make_server(app: Any, config: ServeConfig) -> Any:
    """The uvicorn server of ``app`` on ``config``'s address, with its connection deadlines
    and caps (:func:`composer.serve.connections.guarded_protocol`) and rate-limited logs."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning",
        timeout_graceful_shutdown=5, http=guarded_protocol(config),  # type: ignore[arg-type]
        timeout_keep_alive=config.keep_alive_seconds))
    quiet_logs(config)  # after uvicorn.Config has set its loggers up
    return server
