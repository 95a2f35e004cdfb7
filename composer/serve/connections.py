"""Connection hygiene for ``composer serve``: the socket, the Host names it answers,
deadlines, connection caps, quiet logs.

:func:`listen` binds the socket before any URL is printed (a port in use is one line,
exit 1); :func:`allowed_hosts` names this machine (``localhost``, its host names, its
addresses, the address it listens on) plus ``ServeConfig.allow_hosts``: on any address,
a request naming another Host is refused (DNS rebinding), and so is an IP address that is
not this machine's unless it is the very address the connection arrived at.

uvicorn's HTTP/1.1 protocol keeps a connection open for as long as its client trickles
bytes: a fresh connection has no deadline until its first request has been answered, and
any byte cancels the keep-alive timer. Twenty thousand such connections exhausted the
server's file descriptors and made it deaf. :func:`guarded_protocol` builds the protocol
:func:`composer.serve.app.serve` runs instead, which

- closes a connection whose request line and headers have not all arrived within
  ``ServeConfig.header_seconds`` of its first byte (or of the connection, or of the end of
  the previous response);
- past ``max_connections`` open at once, or ``max_connections_per_client`` from one
  address, closes the oldest connection still waiting for its headers (or else the new
  one), so that a client sending its request at once gets in even during a flood;

while a request's body must arrive within ``body_seconds`` (:mod:`composer.serve.app`'s
``read_body``) and idle kept-alive connections close after ``keep_alive_seconds`` (uvicorn).

:class:`RateLimit` is a logging filter: the first few identical lines in a minute pass, the
rest are counted and summed up in one line, so a flood cannot fill the disk with the log.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from composer.core.messages import ComposerError
from composer.serve.api import ServeConfig

log = logging.getLogger(__name__)
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "composer")


def guarded_protocol(config: ServeConfig) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``config``'s header deadline and connection caps."""
    clients: Counter[str] = Counter()  # live connections per address, shared by all
    live: set[Any] = set()  # connections not closed yet (an abort counts at once: the
    #                         loop reports the loss later, after a burst of accepts)
    waiting: dict[Any, None] = {}  # connections waiting for headers, oldest first

    class Guarded(H11Protocol):
        """One connection (see the module docstring)."""

        deadline: Any = None
        address = "?"

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.address = (self.client or ("?", 0))[0]
            clients[self.address] += 1
            live.add(self)
            if len(live) > config.max_connections:
                self.make_room(None)
            if clients[self.address] > config.max_connections_per_client:
                self.make_room(self.address)
            if self in live:
                self.arm()

        def make_room(self, address: str | None) -> None:
            """Close the oldest connection still waiting for its headers (from ``address``,
            or from anyone), else this new one: under a flood of slow connections, a
            client that sends its request at once still gets in."""
            oldest = next((c for c in waiting if address is None or c.address == address),
                          self)
            log.warning("too many connections: closing the oldest still waiting")
            oldest.close()

        def close(self) -> None:
            """Abort this connection, and stop counting it now."""
            self.gone()
            self.transport.abort()

        def gone(self) -> None:
            self.disarm()
            if self in live:
                live.discard(self)
                clients[self.address] -= 1
                if clients[self.address] <= 0:
                    del clients[self.address]

        def connection_lost(self, exc: Exception | None) -> None:
            self.gone()
            super().connection_lost(exc)

        def arm(self) -> None:
            """Start the clock on the next request's line and headers."""
            self.disarm()
            self.deadline = self.loop.call_later(config.header_seconds, self.too_slow)
            waiting[self] = None

        def disarm(self) -> None:
            waiting.pop(self, None)
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def too_slow(self) -> None:
            self.deadline = None  # it has fired: nothing to cancel
            log.warning("a request's headers took longer than %g s: connection closed",
                        config.header_seconds)
            self.close()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are in: its body is timed
                self.disarm()  # by the app

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is not None \
                    and self.cycle.response_complete:
                self.arm()

    return Guarded


class RateLimit(logging.Filter):
    """Lets ``repeats`` records of one message through per ``window`` seconds; past that
    they are counted, and the next record after the window says how many were dropped."""

    def __init__(self, repeats: int = 5, window: float = 60.0) -> None:
        super().__init__()
        self.repeats, self.window = repeats, window
        self.began, self.seen, self.dropped = time.monotonic(), Counter(), 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.began > self.window:
            if self.dropped:
                record.msg = f"{record.msg} [{self.dropped:,} repeated log lines suppressed " \
                             f"in the last {self.window:g} s]"
            self.began, self.seen, self.dropped = now, Counter(), 0
        key = (record.name, record.levelno, str(record.msg))
        self.seen[key] += 1
        if self.seen[key] > self.repeats:
            self.dropped += 1
            return False
        return True


def quiet_logs(config: ServeConfig) -> RateLimit:
    """Put one :class:`RateLimit` on every handler the server's records reach: uvicorn's,
    the root's, and Python's last-resort one, where records of loggers without handlers go
    (asyncio's accept loop, out of file descriptors, logs a traceback per attempt). Each
    record passes the limit once."""
    limit = RateLimit(config.log_repeats)
    loggers = [logging.getLogger(n) for n in LOGGERS] + [logging.getLogger()]
    handlers = {h for lg in loggers for h in lg.handlers} | (
        {logging.lastResort} if logging.lastResort is not None else set())
    for target in handlers:
        for old in [f for f in target.filters if isinstance(f, RateLimit)]:
            target.removeFilter(old)  # one limit each: the newest server's
        target.addFilter(limit)
    return limit


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (where the OS has one);
    the soft limit now."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not on Windows)
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def host_name(header: str) -> str:
    """The name of a Host header, without port, brackets, trailing dot or case:
    ``"[::1]:8000"`` -> ``"::1"``, ``"Music.LAN.:80"`` -> ``"music.lan"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header.rstrip(".")


def _local_addresses() -> set[str]:
    """The IPv4 and IPv6 addresses of this machine's interfaces (Linux's /proc; elsewhere
    what its host name resolves to only)."""
    found: set[str] = set()
    try:
        last = None
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] in ("|--", "+--"):
                last = words[1]
            elif "/32 host LOCAL" in line and last:
                found.add(last)
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(str(ipaddress.IPv6Address(int(line.split()[0], 16))))
    except (OSError, ValueError, IndexError):
        pass
    return found


def allowed_hosts(config: ServeConfig, extra: Iterable[str] = ()) -> set[str]:
    """The Host names (:func:`host_name` form) a server on ``config`` answers: loopback
    names, this machine's names and addresses, the address it listens on (unless a
    wildcard), ``config.allow_hosts`` and ``extra``."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    for name in list(names - {"localhost", "127.0.0.1", "::1"}):
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:  # a host name that does not resolve
            pass
    names |= _local_addresses()
    if config.host not in ("0.0.0.0", "::", "[::]", ""):
        names.add(config.host)
    return {host_name(n) for n in (*names, *config.allow_hosts, *extra) if n}


def host_allowed(header: str, hosts: set[str], arrived_at: str | None) -> bool:
    """Whether a request's Host ``header`` names this machine: one of ``hosts``, or the
    address its connection ``arrived_at`` (the server's end of it)."""
    name = host_name(header)
    return name in hosts or (arrived_at is not None and name == host_name(arrived_at))


def listen(config: ServeConfig) -> socket.socket:
    """The listening socket of ``config``'s address, bound now: ComposerError in one line
    when the port is in use (or the address cannot be bound)."""
    host = config.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, config.port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ComposerError(f"port {config.port} is in use (try --port 0 for a free "
                                "one)") from None
        raise ComposerError(f"cannot listen on {config.host} port {config.port}: "
                            f"{e.strerror or e}") from None
    except UnicodeError as e:  # a host name IDNA cannot encode
        sock.close()
        raise ComposerError(f"cannot listen on {config.host}: {e}") from None
    sock.set_inheritable(True)
    return sock
