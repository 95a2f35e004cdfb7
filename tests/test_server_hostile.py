"""Issue 19's hostile clients against ``composer serve``: slow and idle connections, floods,
cross-site POSTs on any address, deep JSON, clients that leave mid-body, repeated logs.

The connection tests run a real uvicorn server (composer.serve.app.make_server) in a thread
on a free port, over a tiny Starlette app, with small limits so that they take seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time

import pytest
from helpers import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from composer.serve.api import ServeConfig
from composer.serve.app import build_app, make_server, read_body
from composer.serve.connections import RateLimit, allowed_hosts
from composer.serve.service import load_service


class Tiny:
    """Just what read_body reads off the app state."""

    config = ServeConfig(body_seconds=1.0)


async def models(_request: Request) -> JSONResponse:
    return JSONResponse({"models": []})


async def echo(request: Request) -> JSONResponse:
    try:
        body = await read_body(request, 1 << 20)
    except Exception as e:  # the ApiError's status, as the real routes answer it
        return JSONResponse({"error": str(e)}, getattr(e, "status", 500))
    return JSONResponse({"bytes": len(body)})


@pytest.fixture(scope="module")
def server():
    """A real server with 1 s header deadlines and at most 8 connections per client."""
    app = Starlette(routes=[Route("/api/models", models),
                            Route("/echo", echo, methods=["POST"])])
    app.state.service = Tiny()
    config = ServeConfig(port=free_port(), header_seconds=1.0, max_connections=16,
                         max_connections_per_client=8, keep_alive_seconds=1.0)
    srv = make_server(app, config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield config.port
    srv.should_exit = True
    thread.join(10)


def is_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def get(port: int, path: str = "/api/models") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def slow(port: int) -> socket.socket:
    """A connection that sends half a request and then nothing."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a")
    return s


def test_half_sent_requests_are_closed_at_the_header_deadline(server):
    socks = [slow(server) for _ in range(5)]
    time.sleep(0.3)
    assert all(is_open(s) for s in socks)  # before: open for as long as the client liked
    time.sleep(1.5)
    assert not any(is_open(s) for s in socks)
    assert b"200 OK" in get(server)


def test_a_flood_of_slow_connections_leaves_room_for_real_requests(server):
    socks = [slow(server) for _ in range(60)]  # far past 8 per client and 16 in all
    time.sleep(0.3)
    assert sum(is_open(s) for s in socks) <= 8  # the oldest waiting ones were closed
    assert b"200 OK" in get(server)  # a request sent at once still gets in (it evicts the
    # oldest waiting connection; were it refused, it would be closed without an answer)
    for s in socks:
        s.close()


def test_a_burst_of_slow_connections_keeps_the_newest(server):
    socks = []
    for _ in range(200):  # all at once: the server accepts them in batches
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", server))
        socks.append(s)
    time.sleep(0.2)
    for s in socks:
        with contextlib.suppress(OSError):
            s.send(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a")
    time.sleep(0.5)
    assert sum(is_open(s) for s in socks) == 8  # the cap, neither more nor fewer
    for s in socks:
        s.close()
    time.sleep(0.2)


def test_a_slow_body_is_answered_408(server):
    s = socket.create_connection(("127.0.0.1", server), timeout=5)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nab")
    began, reply = time.perf_counter(), b""
    while b"took longer" not in reply and (chunk := s.recv(65536)):  # headers, then body
        reply += chunk
    assert b"408" in reply.split(b"\r\n")[0] and b"took longer than 1 s" in reply
    assert time.perf_counter() - began < 5
    s.close()


def test_idle_kept_alive_connections_are_closed(server):
    s = socket.create_connection(("127.0.0.1", server), timeout=5)
    s.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"200 OK" in s.recv(65536)
    time.sleep(1.6)
    s.settimeout(2.0)  # the rest of the answer may still be unread: read to the end,
    while s.recv(65536):  # which comes (b"") only if the server closed the connection
        pass


@pytest.fixture(scope="module")
def open_app(one_thread):
    """The real app as ``serve --host 0.0.0.0 --allow-host music.lan`` builds it."""
    hosts = allowed_hosts(ServeConfig(host="0.0.0.0", allow_hosts=("music.lan",)))
    with TestClient(build_app(load_service(), hosts)) as c:
        yield c


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}])
def test_cross_site_posts_are_refused_on_any_address(open_app, headers):
    r = open_app.post("/api/generate", json={"seconds": 1}, headers=headers)
    assert r.status_code == 403 and r.json() == {"error": "cross-site request refused"}


def test_same_site_and_plain_requests_pass_on_any_address(open_app):
    r = open_app.post("/api/generate", json={"seconds": 0}, headers={
        "Origin": "http://testserver"})
    assert r.status_code == 400 and "seconds must be" in r.json()["error"]
    assert open_app.get("/api/models", headers={"Host": "music.lan:8000"}).status_code == 200


@pytest.mark.parametrize("depth", [1000, 32000])
def test_deep_json_is_a_400_not_a_500(open_app, depth):
    body = "[" * depth + "]" * depth  # under the 64 KiB limit
    r = open_app.post("/api/generate", content=body,
                      headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested deeper than" in r.json()["error"]


def test_a_client_leaving_mid_body_is_one_log_line(open_app, caplog):
    app = open_app.app
    sent = []

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b'{"seconds"', "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/generate", "raw_path": b"",
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", b"100")], "state": {}, "app": app}
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    records = [r for r in caplog.records if r.name.startswith("composer")]
    assert records and all(r.exc_info is None and r.levelno < logging.ERROR
                           for r in records)  # before: "internal error" + traceback
    assert any("went away" in r.getMessage() for r in records)


def test_repeated_log_lines_are_counted_not_written():
    limit = RateLimit(repeats=3, window=0.2)
    logger = logging.getLogger("composer.test-rate")
    record = [logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "same line", (),
                                None) for _ in range(1000)]
    assert sum(limit.filter(r) for r in record) == 3
    other = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "other", (), None)
    assert limit.filter(other)
    time.sleep(0.25)
    last = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "same line", (), None)
    assert limit.filter(last) and "997 repeated log lines suppressed" in last.getMessage()
    assert json.dumps(last.getMessage())  # one line


@pytest.mark.parametrize("base", ["http://127.0.0.1:8000", "http://testserver"])
def test_dns_rebinding_is_refused_on_any_address(open_app, base):
    # before: `Host: evil.example` with a matching Origin was answered 200 on 0.0.0.0
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    open_app.base_url = base
    for r in (open_app.get("/api/models", headers=evil),
              open_app.post("/api/generate", json={"seconds": 1}, headers=evil)):
        assert r.status_code == 421 and "host not allowed" in r.json()["error"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "MUSIC.LAN.:8000",
                 socket.gethostname()):
        assert open_app.get("/api/models", headers={"Host": host}).status_code == 200, host
    assert open_app.get("/api/models", headers={"Host": "10.254.254.254"}).status_code == 421
