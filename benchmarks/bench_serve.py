"""Load on ``composer serve``: concurrent clients each asking for music, against a real
uvicorn server in a subprocess (the shipped model unless ``--checkpoint``).

For each client count (``--clients 1 20``): every client sends one request for
``--seconds`` of music at once (the 1-client round sends ``--repeat`` requests one after
another); a malformed upload and an oversized one are sent in the middle of the load and
must get their 400 and 413. Reported per round: requests answered, failures, median and
p95 latency; for the run: the server's peak memory (VmHWM: its own resident peak; the
FluidSynth and parser subprocesses it starts are not counted).

Usage: ``python benchmarks/bench_serve.py [--clients 1 20] [--seconds 30] [--workers 2]
[--cpus 0,1] [--json FILE]``. ``--cpus`` pins the server (``taskset``) to those cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAD = {"malformed upload": (b"this is not MIDI" * 8, 400),
       "oversized upload": (b"MThd" + bytes(2 << 20), 413)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, kind: str, timeout: float = 600) -> tuple[int, float, dict]:
    """(status, seconds, JSON answer) of one POST."""
    began = time.perf_counter()
    request = urllib.request.Request(url, body, {"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    except OSError as e:  # a refused or reset connection counts as a failure
        return 0, time.perf_counter() - began, {"error": str(e)}
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {"error": text[:200].decode(errors="replace")}
    return status, time.perf_counter() - began, answer


def ask(base: str, seconds: float, seed: int) -> tuple[int, float, dict]:
    body = json.dumps({"seconds": seconds, "rng_seed": seed, "seed": "pitches",
                       "pitches": "C4 E4 G4"}).encode()
    return post(f"{base}/api/generate", body, "application/json")


def upload(base: str, data: bytes) -> tuple[int, float, dict]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n'
             '{"seed": "upload", "seconds": 5}\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="midi"; '
             f'filename="x.mid"\r\nContent-Type: audio/midi\r\n\r\n'.encode(), data,
             f"\r\n--{boundary}--\r\n".encode()]
    return post(f"{base}/api/generate", b"".join(parts),
                f"multipart/form-data; boundary={boundary}")


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a process, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def round_of(base: str, clients: int, seconds: float, repeat: int) -> dict:
    """One round: ``clients`` at once (or ``repeat`` in a row for one), bad uploads mixed
    in once the load is running."""
    answers: list[tuple[int, float, dict]] = []
    bad: dict[str, tuple[int, float, dict]] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        start.wait()
        for k in range(repeat if clients == 1 else 1):
            got = ask(base, seconds, 1000 * i + k)
            with lock:
                answers.append(got)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    start.wait()
    time.sleep(0.5)  # the load is running: now the bad ones
    for name, (data, _) in BAD.items():
        bad[name] = upload(base, data)
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ok = sorted(s for status, s, _ in answers if status == 200)
    failures = [(status, a.get("error")) for status, _, a in answers if status != 200]
    p95 = ok[min(len(ok) - 1, max(0, round(0.95 * len(ok)) - 1))] if ok else float("nan")
    return {"clients": clients, "requests": len(answers), "answered": len(ok),
            "failures": len(failures), "failure_reasons": failures[:5],
            "median_s": statistics.median(ok) if ok else float("nan"), "p95_s": p95,
            "max_s": ok[-1] if ok else float("nan"), "wall_s": wall,
            "bad_uploads": {name: {"status": status, "expected": BAD[name][1],
                                   "seconds": round(s, 3), "error": a.get("error")}
                            for name, (status, s, a) in bad.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--seconds", type=float, default=30.0, help="music asked per request")
    ap.add_argument("--repeat", type=int, default=5, help="requests of the 1-client round")
    ap.add_argument("--workers", type=int, default=None, help="server --workers")
    ap.add_argument("--checkpoint", help="serve this model instead of the shipped one")
    ap.add_argument("--cpus", default="0,1", help="taskset cores for the server ('' none)")
    ap.add_argument("--json", type=Path, help="append the results here as one JSON line")
    args = ap.parse_args()
    port = free_port()
    cmd = [sys.executable, "-m", "composer", "serve", "--port", str(port)]
    cmd += ["--workers", str(args.workers)] if args.workers else []
    cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    if args.cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", args.cpus, *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/api/models", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit("composer serve did not start")
                time.sleep(0.2)
        ask(base, 2, 0)  # warm-up
        rounds = [round_of(base, n, args.seconds, args.repeat) for n in args.clients]
        peak = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait()
    load = os.getloadavg()[0]
    print(f"composer serve, {args.seconds:g} s of music per request, {os.cpu_count()} cores, "
          f"load average {load:.2f}; server peak RSS {peak:.0f} MiB")
    print(f"{'clients':>7} {'answered':>9} {'failures':>8} {'median s':>9} {'p95 s':>7} "
          f"{'max s':>7}  bad uploads")
    for r in rounds:
        bad = ", ".join(f"{k}: {v['status']} (want {v['expected']}, {v['seconds']:.2f} s)"
                        for k, v in r["bad_uploads"].items())
        print(f"{r['clients']:>7} {r['answered']:>5}/{r['requests']:<3} {r['failures']:>8} "
              f"{r['median_s']:>9.2f} {r['p95_s']:>7.2f} {r['max_s']:>7.2f}  {bad}")
        for status, error in r["failure_reasons"]:
            print(f"        failed: {status} {error}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"seconds": args.seconds, "load": load, "peak_rss_mib": peak,
                                "rounds": rounds}) + "\n")
    wrong = [k for r in rounds for k, v in r["bad_uploads"].items()
             if v["status"] != v["expected"]]
    if wrong or any(r["failures"] for r in rounds):
        sys.exit(1)


if __name__ == "__main__":
    main()
