"""``composer serve``'s API in-process (Starlette's TestClient): models, openings, seeds of
every kind, result files, and every bad request we could think of answered with a one-line
JSON error (never a traceback, never a server path)."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time

import pytest
from click.testing import CliRunner
from helpers import BACH, free_port, write_tune
from starlette.testclient import TestClient

from composer.cli.main import main
from composer.midi.io import load
from composer.serve.api import ApiError, Gate, Results, ServeConfig, check_request
from composer.serve.app import create_app

SHORT = {"seconds": 2, "rng_seed": 3}  # two seconds of music: fast


@pytest.fixture(scope="module")
def client(one_thread):
    app = create_app(config=ServeConfig(max_results=50))
    with TestClient(app) as c:
        yield c


def generate(client, **fields):
    """POST a JSON generation request (NaN and infinity written as Python's json does)."""
    return client.post("/api/generate", content=json.dumps({**SHORT, **fields}),
                       headers={"content-type": "application/json"})


def one_line_error(response, status):
    """The response is ``status`` with a one-line JSON error naming no server path."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert "/tmp" not in body["error"] and "composer-serve" not in body["error"]
    return body["error"]


def test_models_and_openings(client):
    models = client.get("/api/models").json()
    assert models["models"][0]["id"] == "default"
    controls = {c["name"] for c in models["models"][0]["controls"]}
    assert {"density", "key", "style", "tempo"} <= controls  # the shipped default takes all
    assert models["limits"]["num"] == ServeConfig().max_num
    openings = [o["id"] for o in client.get("/api/openings").json()["openings"]]
    assert {"ode-to-joy", "frere-jacques", "bach-chorale"} <= set(openings)


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="generate"' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_pitch_seed_result_files(client, tmp_path):
    r = generate(client, seed="pitches", pitches="C4 E4 G4")
    assert r.status_code == 200, r.text
    (piece,) = r.json()["results"]
    assert piece["seed_seconds"] == pytest.approx(0.5)
    mid = client.get(piece["urls"]["mid"])
    assert mid.status_code == 200 and mid.headers["content-type"] == "audio/midi"
    (tmp_path / "x.mid").write_bytes(mid.content)
    notes = load(tmp_path / "x.mid").notes
    assert len(notes) == piece["notes"] > 3
    assert sorted(notes["pitch"][notes["start"] < 0.01].tolist())[:3] == [60, 64, 67]
    wav = client.get(piece["urls"]["wav"])
    assert wav.content[:4] == b"RIFF" and len(wav.content) > 44100
    roll = client.get(piece["urls"]["roll"]).json()
    assert roll["seed_seconds"] == pytest.approx(0.5) and len(roll["notes"]) == len(notes)
    start, end, pitch, velocity = roll["notes"][0]
    assert 0 <= start < end and 0 <= pitch < 128 and 0 < velocity < 128


def test_same_rng_seed_same_music(client):
    a, b = (generate(client, seed="pitches", pitches="60,62,64", style="arpeggio")
            for _ in range(2))
    mids = [client.get(r.json()["results"][0]["urls"]["mid"]).content for r in (a, b)]
    assert mids[0] == mids[1]
    assert a.json()["results"][0]["id"] != b.json()["results"][0]["id"]


def test_opening_seed_and_num(client):
    r = generate(client, seed="opening", opening="ode-to-joy", num=2)
    assert r.status_code == 200, r.text
    pieces = r.json()["results"]
    assert len(pieces) == 2 and all(p["seed_seconds"] == pytest.approx(8.0) for p in pieces)


def test_upload_real_midi_and_continue(client, tmp_path):
    tune = write_tune(tmp_path / "tune.mid", [60, 62, 64, 65, 67, 69, 71, 72])  # 2 s
    r = client.post("/api/generate", data={"request": json.dumps({**SHORT, "seed": "upload"})},
                    files={"midi": ("tune.mid", tune.read_bytes(), "audio/midi")})
    assert r.status_code == 200, r.text
    (piece,) = r.json()["results"]
    assert piece["seed_seconds"] == pytest.approx(2.0, abs=0.05)
    again = generate(client, seed="result", result=piece["id"])  # "Continue from here"
    assert again.status_code == 200, again.text
    assert again.json()["results"][0]["seed_seconds"] >= piece["seconds"] - 0.05


def test_upload_of_a_bach_chorale(client):
    data = (BACH / "bwv1.6.mid").read_bytes()
    r = client.post("/api/generate", data={"request": json.dumps({**SHORT, "seed": "upload"})},
                    files={"midi": ("bwv1.6.mid", data, "audio/midi")})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["seed_seconds"] == pytest.approx(ServeConfig().seed_seconds)


def upload(client, data: bytes, **fields):
    return client.post("/api/generate", files={"midi": ("x.mid", data, "audio/midi")},
                       data={"request": json.dumps({**SHORT, "seed": "upload", **fields})})


def test_oversized_upload_413(client):
    limit = ServeConfig().upload_bytes
    message = one_line_error(upload(client, b"MThd" + bytes(limit + 100)), 413)
    assert "too large" in message
    big = b"x" * (limit + (128 << 10))

    def chunks():  # no Content-Length: refused while reading
        for i in range(0, len(big), 1 << 16):
            yield big[i:i + (1 << 16)]

    r = client.post("/api/generate", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=x"})
    assert "too large" in one_line_error(r, 413)


@pytest.mark.parametrize("data, words", [
    (b"garbage" * 20, "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff\xff\xff\xff", ""),
    (b"", "empty"),
])
def test_malformed_upload_4xx(client, data, words):
    assert words in one_line_error(upload(client, data), 400)


BAD = [
    ({"seconds": 0}, "seconds"), ({"seconds": -1}, "seconds"), ({"seconds": 1e9}, "seconds"),
    ({"seconds": "30"}, "seconds"), ({"seconds": math.nan}, "seconds"),
    ({"seconds": math.inf}, "seconds"), ({"seconds": True}, "seconds"),
    ({"num": 0}, "num"), ({"num": 5}, "num"), ({"num": 1.5}, "num"), ({"num": 10**9}, "num"),
    ({"temperature": -0.1}, "temperature"), ({"temperature": 6}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_p": None}, "top_p"),
    ({"rng_seed": -1}, "rng_seed"), ({"rng_seed": 2**40}, "[0, 2147483647]"),
    ({"seed": "bogus"}, "seed"), ({"seed": ["none"]}, "seed"),
    ({"seed": "pitches"}, "pitches"), ({"seed": "pitches", "pitches": "C4; rm -rf /"}, "pitches"),
    ({"seed": "pitches", "pitches": "H4"}, "H4"), ({"seed": "pitches", "pitches": "G9 130"}, ""),
    ({"seed": "pitches", "pitches": "x" * 500}, "pitches"),
    ({"seed": "pitches", "pitches": "/etc/passwd"}, "pitches"),
    ({"seed": "pitches", "pitches": "C4", "style": "cluster"}, "style"),
    ({"seed": "opening"}, "opening"), ({"seed": "opening", "opening": "../server"}, "opening"),
    ({"seed": "result", "result": "../../etc"}, "result"),
    ({"seed": "upload"}, "midi"), ({"shell": "rm"}, "unknown field"),
    ({"controls": {"loudness": 0.5}}, "loudness"), ({"controls": [1]}, "controls"),
    ({"model": 3}, "model"),
]


@pytest.mark.parametrize("fields, words", BAD)
def test_bad_parameters_400(client, fields, words):
    assert words in one_line_error(generate(client, **fields), 400)


@pytest.mark.parametrize("fields", [{"model": "nope"}, {"seed": "opening", "opening": "nope"},
                                    {"seed": "result", "result": "AAAAAAAAAAAAAAAA"}])
def test_unknown_names_404(client, fields):
    one_line_error(generate(client, **fields), 404)


def test_bad_bodies(client):
    post = client.post
    one_line_error(post("/api/generate", content=b"{not json",
                        headers={"content-type": "application/json"}), 400)
    one_line_error(post("/api/generate", json=[1, 2]), 400)
    one_line_error(post("/api/generate", json={"x": 1} | {str(i): i for i in range(9000)}), 413)
    one_line_error(post("/api/generate", content=b"seconds=3",
                        headers={"content-type": "text/plain"}), 415)
    one_line_error(post("/api/generate", content=b"--x--",
                        headers={"content-type": "multipart/form-data"}), 400)
    one_line_error(post("/api/generate", data={"request": "{"},
                        files={"midi": ("x.mid", b"MThd", "audio/midi")}), 400)
    one_line_error(post("/api/generate", data={"request": json.dumps(SHORT)}), 415)
    one_line_error(post("/api/generate", files={"request": (None, json.dumps(SHORT)),
                                                "midi": (None, "text")}), 400)
    one_line_error(upload(client, b"MThd", seed="none"), 400)  # a file, but another seed
    one_line_error(client.get("/api/generate"), 405)
    one_line_error(client.put("/api/models"), 405)


def poll(client, url: str) -> dict:
    for _ in range(600):
        job = client.get(url).json()
        if job["state"] in ("done", "failed"):
            return job
        assert job["state"] in ("queued", "running")
        assert 0 <= job["done"] <= max(job["total"], 0)
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_jobs_report_progress_then_results(client):
    r = client.post("/api/jobs", json={**SHORT, "seconds": 4, "seed": "pitches",
                                       "pitches": "D4 F#4 A4"})
    assert r.status_code == 202, r.text
    job = poll(client, r.json()["url"])
    assert job["state"] == "done" and job["total"] == 4 and job["done"] == 4
    (piece,) = job["results"]
    assert client.get(piece["urls"]["mid"]).status_code == 200
    bad_seed = client.post("/api/jobs", json={**SHORT, "seed": "pitches", "pitches": "C4 H4"})
    assert "H4" in one_line_error(bad_seed, 400)  # answered before it queues
    one_line_error(client.post("/api/jobs", json={"seconds": -1}), 400)  # checked at once
    one_line_error(client.get("/api/jobs/AAAAAAAAAAAAAAAA"), 404)
    one_line_error(client.get("/api/jobs/..%2F..%2Fetc"), 404)


def test_unknown_results_and_no_path_traversal(client):
    r = generate(client)
    piece = r.json()["results"][0]
    rid = piece["id"]
    for url in (f"/api/results/{'A' * 16}/piece.mid", f"/api/results/{rid}/piece.png",
                f"/api/results/{rid}/../../../etc/passwd",
                f"/api/results/{rid}/..%2F..%2F..%2Fetc%2Fpasswd",
                f"/api/results/..%2F{rid}/piece.mid", "/api/results/work-/piece.mid",
                "/static/../server.py", "/static/..%2Fserver.py", "/static/index.htm",
                "/api/results/%2Fetc%2Fpasswd/piece.mid", "/etc/passwd", "/api/nothing"):
        r = client.get(url)
        one_line_error(r, 404)
    assert client.get(piece["urls"]["mid"]).status_code == 200


def test_internal_error_is_one_generic_line(client, monkeypatch, caplog):
    service = client.app.state.service

    def boom(*_):
        raise RuntimeError("secret detail at /srv/x")

    monkeypatch.setattr(service, "generate", boom)
    message = one_line_error(generate(client), 500)
    assert "secret" not in message and "internal error" in message
    assert "secret detail" in caplog.text


def test_second_checkpoint_served_under_its_own_id():
    from composer.model.checkpoint import shipped_names

    shipped = sorted(shipped_names(), key=lambda n: n != "default")
    app = create_app([BACH.parents[1] / "checkpoints" / "default", "default"])
    with TestClient(app) as c:
        ids = [m["id"] for m in c.get("/api/models").json()["models"]]
        assert ids == [*shipped, "default-2"]  # every shipped model once, by name
        r = c.post("/api/generate", json={**SHORT, "model": "default-2"})
        assert r.status_code == 200 and r.json()["results"][0]["notes"] > 0


def test_results_store_evicts_oldest(tmp_path):
    store = Results(tmp_path, max_results=2, max_bytes=1000)
    ids = [store.add({"roll.json": b"{}"}, {})["id"] for _ in range(3)]
    assert store.file(ids[0], "roll.json") is None and len(store) == 2
    assert store.file(ids[2], "roll.json") == tmp_path / ids[2] / "roll.json"
    big = store.add({"roll.json": b"x" * 900}, {})["id"]
    store.add({"roll.json": b"x" * 200}, {})  # over max_bytes: the older ones go
    assert store.file(big, "roll.json") is None and len(store) == 1
    assert len({*ids}) == 3 and all(len(i) >= 16 for i in ids)


def test_gate_bounds_concurrent_work():
    started = threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.6)

    async def until(condition) -> None:
        while not condition():
            await asyncio.sleep(0.01)

    async def scenario():
        gate = Gate(workers=1, queue=1, wait=0.2)
        busy = asyncio.create_task(gate.run(slow))
        await until(started.is_set)  # the one worker is busy
        waiting = asyncio.create_task(gate.run(lambda: "ok"))  # waits past 0.2 s: 503
        await until(lambda: gate.waiting == 1)
        with pytest.raises(ApiError) as full:  # the queue holds one: 503 at once
            await gate.run(lambda: "ok")
        with pytest.raises(ApiError) as late:
            await waiting
        await busy
        return full.value, late.value, await gate.run(lambda: "ok")

    full, late, after = asyncio.run(scenario())
    assert full.status == late.status == 503
    assert "too many requests waiting" in str(full) and "0.2 s" in str(late)
    assert after == "ok"


def test_check_request_defaults_and_controls():
    models = {"default": None, "other": None}
    req = check_request({}, ServeConfig(), models, {})
    assert (req.model, req.seed, req.seconds, req.num) == ("default", "none", 30.0, 1)
    declared = {"other": [{"name": "density", "min": 0, "max": 1}]}
    req = check_request({"model": "other", "controls": {"density": 0.3}}, ServeConfig(),
                        models, declared)
    assert req.controls == {"density": 0.3}


def test_host_and_origin_guard(tmp_path):
    app = create_app(allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/models").status_code == 200
        one_line_error(c.get("/api/models", headers={"host": "evil.example"}), 421)
        r = c.post("/api/generate", json=SHORT, headers={"origin": "http://evil.example"})
        one_line_error(r, 403)
        r = c.post("/api/generate", json=SHORT, headers={"origin": "http://127.0.0.1:8000"})
        assert r.status_code == 200, r.text


def test_serve_warns_off_loopback(monkeypatch):
    import uvicorn

    import composer.serve.app as server

    ran, lines = [], []
    monkeypatch.setattr(server, "create_app", lambda *a, **k: ran.append(k) or "app")
    monkeypatch.setattr(uvicorn.Server, "run",
                        lambda self, sockets: ran.append((self.config,
                                                          sockets[0].getsockname())))
    port = free_port()
    server.serve(config=ServeConfig(host="0.0.0.0", port=port), echo=lines.append)
    assert lines[0].startswith("Warning: listening on 0.0.0.0")
    hosts = ran[0]["allowed_hosts"]  # on every address: this machine's names only
    assert {"localhost", "127.0.0.1", "::1"} <= hosts and "evil.example" not in hosts
    run, bound = ran[1]
    assert bound[:2] == ("0.0.0.0", port)
    assert (run.host, run.timeout_keep_alive) == ("0.0.0.0", 5.0)
    assert run.http.__name__ == "Guarded"  # composer.serve.connections' deadlines and caps
    lines.clear()
    server.serve(config=ServeConfig(port=0, allow_hosts=("music.lan",)), echo=lines.append)
    shown = ran[3][1][1]  # --port 0: the free port taken is the one shown
    assert shown != 0 and lines == [f"composer serve: http://127.0.0.1:{shown}/ (Ctrl-C stops)"]
    assert "music.lan" in ran[2]["allowed_hosts"]


def test_cli_serve_usage():
    runner = CliRunner()
    r = runner.invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "--checkpoint" in r.output and "127.0.0.1" in r.output
    r = runner.invoke(main, ["serve", "--checkpoint", "no/such/folder"])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(main, ["serve", "--port", "70000"])
    assert r.exit_code == 2


def test_a_port_in_use_is_one_line_before_any_url():
    with socket.socket() as taken:  # before: the URL, then uvicorn's [Errno 98], exit 3
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert r.exit_code == 1, r.output
    assert r.output == f"Error: port {port} is in use (try --port 0 for a free one)\n"
