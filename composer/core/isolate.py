"""Run jobs in worker processes where a crash or a hang costs one job, not the run.

Generic: jobs go out in batches, and a batch whose worker dies or stalls is retried one job
at a time so that exactly the culprit is reported, as a result built by ``failure``.
:mod:`composer.corpus.prepare` runs its MIDI parser this way.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any

from composer.core.bounds import available_cpus

AHEAD_BYTES = 16 << 10  # a worker's next batch waits in its pipe when its jobs pickle smaller


def _limit_memory(headroom: int) -> None:
    """Cap this process's address space at its current size plus ``headroom`` (Linux)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + headroom, size + headroom))
    except (ImportError, OSError, ValueError):
        pass  # no /proc or no resource module: run without the cap


# glibc's malloc hands blocks from this size up to mmap and returns them to the system when
# freed (and trims the heap's top past M_TRIM_THRESHOLD): a worker whose batches allocate
# arrays of a few hundred KB would fault every page of each in afresh, batch after batch
# (chorales, one worker: ~10,000 page faults, a fifth of its time). 32 MB is glibc's
# largest mmap threshold; the memory cap (``memory_headroom``) still bounds the heap.
KEEP_HEAP_BELOW = 32 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def _keep_heap() -> None:
    """Keep freed memory in this process's heap for the next batch (glibc; elsewhere a
    no-op): blocks under KEEP_HEAP_BELOW come from the heap, whose top is not trimmed."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return  # not glibc (musl, macOS, Windows): their allocators are left as they are
    mallopt(M_MMAP_THRESHOLD, KEEP_HEAP_BELOW)
    mallopt(M_TRIM_THRESHOLD, 2 * KEEP_HEAP_BELOW)


def _worker(conn, fn: Callable, args: tuple, memory_headroom: int) -> None:
    """Worker loop: receive a list of jobs, send back the list of their results."""
    gc.freeze()  # what it inherited is never collected here: no copy-on-write of every page
    _keep_heap()
    _limit_memory(memory_headroom)
    try:
        while (jobs := conn.recv()) is not None:
            conn.send(fn(jobs, *args))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass


def describe_failure(stalled: bool, code: int | None, timeout: float,
                     job: str = "job", worker: str = "worker") -> str:
    """One line on why a job was lost: it stalled past ``timeout`` or its worker died."""
    if stalled:
        return f"{job} took longer than {timeout:g} s"
    how = f"signal {-code}" if code and code < 0 else f"exit code {code}"
    return f"{worker} crashed ({how})"


def run_isolated(fn: Callable, jobs: Sequence, args: tuple = (), workers: int | None = None,
                 timeout: float = 30.0, batch: int = 64, cost: Sequence[int] | None = None,
                 max_cost: int = 16 << 20, memory_headroom: int = 4 << 30,
                 failure: Callable[[bool, int | None, float], Any] | None = None
                 ) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, result)`` for every job, computed by ``fn(list_of_jobs, *args)`` (which
    returns one result per job) in batches in worker processes, in completion order.

    A batch whose worker dies (a crashing parser) or takes longer than ``timeout`` seconds is
    retried one job at a time in a fresh worker; a single job that kills or stalls its worker
    yields ``failure(stalled, exitcode, timeout)`` (default: :func:`describe_failure`, a
    one-line reason). The run always carries on.

    A batch holds at most ``batch`` jobs and, past its first job, at most ``max_cost`` of
    ``cost`` (e.g. file sizes in bytes). Each worker's address space may grow by at most
    ``memory_headroom`` bytes, so a runaway job fails in its worker instead of eating the
    machine.
    """
    if not jobs:
        return
    n = max(1, min(workers or available_cpus(), available_cpus(), len(jobs)))
    batch = max(1, min(batch, -(-len(jobs) // (4 * n))))  # at least 4 batches per worker
    queue: deque[list[int]] = deque([[]])
    total = 0
    for i in range(len(jobs)):
        c = cost[i] if cost is not None else 0
        if queue[-1] and (len(queue[-1]) >= batch or total + c > max_cost):
            queue.append([])
            total = 0
        queue[-1].append(i)
        total += c
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    slots: dict = {}  # connection -> [process, batches sent (oldest first), when it began]

    def start() -> None:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, fn, args, memory_headroom), daemon=True)
        proc.start()
        child.close()
        slots[parent] = [proc, deque(), 0.0]

    failure = failure or describe_failure
    ahead = [True]  # whether a worker's next batch may wait in its pipe (until a loss)

    def lose(conn, stalled: bool) -> Iterator[tuple[int, Any]]:
        proc, sent, _ = slots.pop(conn)
        proc.kill()
        proc.join()
        conn.close()
        start()
        in_flight = [i for b in sent for i in b]
        ahead[0] = False  # from now on, one batch at a time: each retried job alone
        if len(in_flight) > 1:  # find the culprit: one job at a time
            queue.extendleft([i] for i in reversed(in_flight))
            return
        yield in_flight[0], failure(stalled, proc.exitcode, timeout)

    def feed(conn) -> None:
        """Keep a worker's next batch waiting in its pipe (a small one), so that it never
        waits for this process between batches."""
        slot = slots[conn]
        while queue and len(slot[1]) < 1 + ahead[0]:
            message = ForkingPickler.dumps([jobs[i] for i in queue[0]])
            if slot[1] and len(message) > AHEAD_BYTES:
                return  # sent when the worker is idle: both sides never block on a full pipe
            if not slot[1]:
                slot[2] = time.monotonic()
            slot[1].append(queue.popleft())
            try:
                conn.send_bytes(message)
            except OSError:  # a dead worker: found out when its pipe is read (EOF)
                return

    for _ in range(n):
        start()
    try:
        while queue or any(s[1] for s in slots.values()):
            for conn in list(slots):
                feed(conn)
            for conn in wait(list(slots), timeout=min(1.0, timeout)):
                try:
                    got = conn.recv_bytes()
                except (EOFError, OSError):
                    yield from lose(conn, stalled=False)
                    continue
                slot = slots[conn]
                done, slot[2] = slot[1].popleft(), time.monotonic()  # the next one began
                feed(conn)
                yield from zip(done, pickle.loads(got), strict=True)
            now = time.monotonic()
            for conn in [c for c, s in slots.items() if s[1] and now - s[2] > timeout]:
                yield from lose(conn, stalled=True)
    finally:
        for conn, (proc, _, _) in slots.items():
            proc.kill()
            conn.close()
