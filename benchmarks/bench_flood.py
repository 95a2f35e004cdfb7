"""Hostile connections against ``composer serve`` (issue 19): slow and idle connections.

Starts ``composer serve`` on a free port (from this checkout, or the one on PYTHONPATH), lets
it load, then opens ``--connections`` sockets that each send half a request line and then
nothing, plus ``--slow-bodies`` POSTs that announce a body and send a byte a second.
Meanwhile it asks ``GET /api/models`` once a second and prints, second by second: the
sockets still open, the server's open file descriptors, the log lines so far, and how long
/api/models took (or "dark"). At the end: what was closed by the server and when.

Usage: ``python benchmarks/bench_flood.py [--connections 2000] [--seconds 40]
[--server-fds 1024]`` (Linux: the server runs under ``prlimit``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(port: int, timeout: float = 3.0) -> float | None:
    began = time.perf_counter()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=timeout).read()
        return time.perf_counter() - began
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--slow-bodies", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--server-fds", type=int, default=1024,
                    help="The server's open-file limit (prlimit; 1024 is a common default)")
    args = ap.parse_args()
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    limit = [f"--nofile={args.server_fds}:{args.server_fds}"]
    server = subprocess.Popen(["prlimit", *limit, sys.executable, "-m", "composer", "serve",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if ask(port, 1.0) is not None:
                break
            time.sleep(0.2)
        print(f"server up on {port}; /api/models in {ask(port):.3f} s when quiet")
        socks, bodies, began = [], [], time.perf_counter()
        for _ in range(args.connections):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect_ex(("127.0.0.1", port))
                socks.append(s)
            except OSError:
                s.close()
        time.sleep(0.2)
        for s in socks:
            try:
                s.send(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a")
            except OSError:
                pass
        for _ in range(args.slow_bodies):
            s = socket.create_connection(("127.0.0.1", port))
            s.send(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                   b"application/json\r\nContent-Length: 100000\r\n\r\n{")
            s.setblocking(False)
            bodies.append(s)
        print(f"{'t (s)':>6} {'open':>6} {'server fds':>10} {'log lines':>9} /api/models")
        while time.perf_counter() - began < args.seconds:
            for s in bodies:
                try:
                    s.send(b" ")
                except OSError:
                    pass
            open_ = 0
            for s in socks + bodies:
                try:
                    open_ += s.recv(1, socket.MSG_PEEK) != b""
                except BlockingIOError:
                    open_ += 1
                except OSError:
                    pass
            fds = len(os.listdir(f"/proc/{server.pid}/fd"))
            log.flush()
            lines = sum(1 for _ in open(log.name, errors="replace"))
            took = ask(port)
            print(f"{time.perf_counter() - began:6.1f} {open_:6d} {fds:10d} {lines:9d} "
                  f"{'dark' if took is None else f'{took:.3f} s'}")
            time.sleep(1.0)
        for s in socks + bodies:
            s.close()
        print(f"log: {os.path.getsize(log.name):,} bytes; last lines:")
        print("".join(open(log.name, errors="replace").readlines()[-3:]))
    finally:
        server.terminate()
        server.wait(10)
        os.unlink(log.name)


if __name__ == "__main__":
    main()
