"""Durable files: atomic writes, content checksums and locks.

- ``write_atomic(path, data)``: the bytes go to ``<path>.tmp<pid>``, are fsynced, renamed onto
  ``path`` and the folder is fsynced: a reader sees the old file or the new one, whole, even
  after a power cut. Temporary files left by dead processes are removed on the next write.
- ``seal(data)`` / ``unseal(blob)``: bytes with a SHA-256 trailer, so a truncated or altered
  file is detected on load (checkpoints).
- ``write_json`` / ``read_json``: JSON with a ``checksum`` entry over the rest (metrics).
- ``locked(path)``: an exclusive lock on ``<path>.lock`` (released when the process dies).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["Busy", "CorruptFile", "atomic_path", "locked", "read_json", "seal", "unseal",
           "write_atomic", "write_json"]  # fmt: skip

MAGIC = b"STNSHA256"
TRAILER = len(MAGIC) + 32


class CorruptFile(Exception):
    """A file is unreadable, truncated or fails its checksum."""


class Busy(Exception):
    """Another process holds the lock."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete ``<path>.tmp<pid>`` files whose writer process is gone."""
    for tmp in path.parent.glob(path.name + ".tmp*"):
        pid = tmp.name[len(path.name) + 4 :]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path to write ``path``'s new content to; on success it is fsynced and
    renamed onto ``path`` (then the folder is fsynced), on an error it is removed and ``path``
    is left as it was. For files written piece by piece (large HDF5 stores)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` whole or not at all (OSError, e.g. ENOSPC, leaves the
    old file in place)."""
    data = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def seal(data: bytes) -> bytes:
    """``data`` followed by a checksum trailer."""
    return data + MAGIC + hashlib.sha256(data).digest()


def unseal(blob: bytes) -> bytes:
    """The data of a sealed blob; ``CorruptFile`` when truncated or altered."""
    data, magic, digest = blob[:-TRAILER], blob[-TRAILER:-32], blob[-32:]
    if len(blob) < TRAILER or magic != MAGIC:
        raise CorruptFile("it is truncated or not a stn-repro file")
    if hashlib.sha256(data).digest() != digest:
        raise CorruptFile("its content does not match its checksum")
    return data


def json_checksum(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_json(path: str | Path, data: dict) -> dict:
    """Write ``data`` atomically with a ``checksum`` entry over the rest; return what was
    written."""
    sealed = {**data, "checksum": json_checksum(data)}
    write_atomic(path, json.dumps(sealed, indent=2) + "\n")
    return sealed


def read_json(path: str | Path) -> dict:
    """Read what ``write_json`` wrote; ``CorruptFile`` when unreadable or altered."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFile(f"it is unreadable ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("checksum") != json_checksum(data):
        raise CorruptFile("its content does not match its checksum")
    return data


@contextmanager
def locked(path: str | Path, wait: bool = True):
    """Hold an exclusive lock on ``<path>.lock``; ``Busy`` at once if ``wait`` is false and
    another process holds it. The OS releases it when the holder dies (even by kill -9)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Path(str(path) + ".lock").touch()  # an unwritable folder raises here; FileLock would wait
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise Busy(str(path)) from None
    try:
        yield
    finally:
        lock.release()
