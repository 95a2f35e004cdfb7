"""Files: the one atomic-write helper, bounded reads of user-given paths, disk-full messages.

Every file composer writes that a crash could leave half-written goes through
:func:`atomic_write` (or its ``_bytes``/``_text``/``_json`` forms): the content is written to
a uniquely named temporary file in the same folder, fsynced, renamed over the target, and
the folder is fsynced, so a reader sees the old file or the new one, never a mixture, and
two writers at once never share a temporary name. With ``replace=False`` the temporary file
is hard-linked to the target instead of renamed over it, which fails if the name is taken:
the name is claimed atomically (:class:`FileTaken`), so two writers never get the same one.

The rule for every output a user names (``render -o``, ``plot -o``, ``evaluate --json``,
``generate``'s files ...) is :func:`check_output`: never the input itself (the same file,
also through a link), and never an existing file unless ``--force`` was given.

Every path a user gives (a seed, a file to render or plot, a checkpoint's JSON) is read
through :func:`read_regular`: it must be a regular file (a FIFO, a device such as
``/dev/zero``, or a folder is refused without blocking), and at most ``max_bytes`` are read
whatever the file claims its size is.

:func:`locked_folder` makes writers of one folder (a corpus cache) take turns, or keeps a
second one out (a training run's folder).

An ``OSError`` while writing becomes a one-line :class:`ComposerError` from
:func:`write_error`; a full disk says so and names the folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from composer.core.messages import ComposerError

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None  # type: ignore[assignment]

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(ComposerError):
    """The disk (or quota) is full; the message says where."""


class FileTaken(ComposerError):
    """An output file exists and was not to be replaced (no ``--force``), or is an input."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file (one inode: also through a symbolic or hard
    link); False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (),
                 force: bool = False) -> Path:
    """``path`` as a Path when it may be written: :class:`FileTaken` if it is one of
    ``inputs`` (whatever ``force`` says), or if it exists and ``force`` is not given."""
    out = Path(path)
    for given in inputs:
        if same_file(out, given):
            raise FileTaken(f"{out} is the input {given}: give another output file")
    if not force and (out.exists() or out.is_symlink()):
        raise FileTaken(f"{out} exists (give --force to replace it)")
    return out


def write_error(e: OSError, path: str | os.PathLike, what: str = "write") -> ComposerError:
    """A one-line error for an ``OSError`` raised while writing ``path``.

    A full disk or quota (ENOSPC, EDQUOT, EFBIG) gives :class:`DiskFullError` naming the
    folder; anything else gives a :class:`ComposerError` with the system's reason.
    """
    p = Path(path)
    if e.errno in _FULL:
        return DiskFullError(f"disk full: no space left to {what} {p} "
                             f"(free some space in {p.parent.resolve()})")
    return ComposerError(f"cannot {what} {p}: {e.strerror or e}")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames and new entries in ``folder`` durable (no-op where unsupported)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """fsync one file's contents."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def temp_name(path: str | os.PathLike) -> Path:
    """A hidden temporary name next to ``path``, unique per process and call."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None],
                 mode: int | None = 0o644, replace: bool = True, durable: bool = True
                 ) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder,
    which is fsynced and renamed over ``path``; then the folder is fsynced.

    ``replace=False``: the temporary file is hard-linked to ``path`` instead, which claims
    the name atomically or raises :class:`FileTaken` when it exists (a file of anyone, made
    at any time before, is never replaced). ``durable=False`` skips both fsyncs (still
    atomic for readers): for derived data that is checked when read and rebuilt when wrong,
    such as a corpus cache. ``mode`` sets the file's permission bits (None keeps what
    ``write`` made). An ``OSError`` becomes the one-line error of :func:`write_error`; the
    old file, if any, is left as it was and the temporary file is removed.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        if durable:
            fsync_file(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            _claim(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except FileExistsError:
        raise FileTaken(f"{path} exists (give --force to replace it)") from None
    except OSError as e:
        raise write_error(e, path) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _claim(tmp: Path, path: Path) -> None:
    """Give the written ``tmp`` the name ``path`` unless it is taken (FileExistsError)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:  # no hard links here (some network or FAT file systems)
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # the claim
        os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of raw bytes."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, replace: bool = True,
                      durable: bool = True) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), replace=replace,
                        durable=durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1,
                      durable: bool = True) -> Path:
    """:func:`atomic_write` of ``obj`` as JSON (serialised first, so a bad object writes
    nothing)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n", durable=durable)


def atomic_write_npy(path: str | os.PathLike, array: Any) -> Path:
    """:func:`atomic_write` of a NumPy array in ``.npy`` format."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def read_regular(path: str | os.PathLike, max_bytes: int,
                 error: type[ComposerError] = ComposerError) -> bytes:
    """The bytes of the regular file ``path``, read without blocking and without bound
    trouble: FIFOs, devices, sockets and folders are refused, and a file over ``max_bytes``
    (by its size or by what a read actually returns) raises ``error`` with a one-line
    reason, before more than ``max_bytes + 1`` bytes are read."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise block forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"cannot read file: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else
                    "a named pipe" if stat.S_ISFIFO(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
            raise error(f"cannot read file: not a regular file ({kind})")
        if st.st_size > max_bytes:
            raise error(too_big(st.st_size, max_bytes))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise error(too_big(total, max_bytes, at_least=True))
        return b"".join(chunks)
    except OSError as e:
        raise error(f"cannot read file: {e.strerror or e}") from None
    finally:
        os.close(fd)


def too_big(size: int, limit: int, at_least: bool = False) -> str:
    """The reason given for a file over the size limit."""
    mib = 1 << 20
    more = "over " if at_least else ""
    if limit >= mib:
        return f"file is {more}{size / mib:.1f} MiB (limit {limit / mib:g} MiB)"
    return f"file is {more}{size:,} bytes (limit {limit:,} bytes)"


class FolderBusy(ComposerError):
    """Another process holds the lock on a folder (:func:`locked_folder`, ``wait=False``)."""


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike, wait: bool = True, holder: str | None = None,
                  what: str = "folder") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on a ``.lock`` file in it, created
    with the folder if need be) for the ``with`` block: writers that take it wait for each
    other, or (``wait=False``) the second raises :class:`FolderBusy` at once, saying who
    holds it: the ``holder`` line the first wrote into the lock file (e.g. its pid, host,
    start and command). The lock goes when the block ends or the process dies (even by
    SIGKILL: a dead holder's lock is never stale)."""
    cache = Path(folder)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_error(e, cache / ".lock", "create") from None
    try:
        if fcntl is not None:
            try:  # released when fd is closed, or the process dies
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                said = os.read(fd, 4096).decode("utf-8", "replace").strip()
                raise FolderBusy(f"{cache} is in use by another {what}"
                                 + (f" ({said})" if said else "")) from None
        if holder is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode("utf-8") + b"\n", 0)
        yield
    finally:
        os.close(fd)
