"""Local-disk primitives of the storage layer: atomic file writes (readers see the old file or the new
one, never a part), exclusive creates, and durable, rotated JSON-lines logs (``flock`` + fsync)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes, durable: bool = False) -> Path:
    """Writes ``data`` to a hidden temporary file beside ``path`` and renames it over ``path`` (mode 0644);
    ``durable`` also fsyncs it first (state files that must survive a machine crash)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def create_exclusive(path: str | os.PathLike, data: bytes) -> bool:
    """Creates ``path`` with ``data`` unless it exists (a complete temp file hard-linked into place, which
    fails atomically when the name is taken); returns whether this call created it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def link_or_copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Puts an immutable file at ``dst``: a hard link, or (across filesystems) a copy renamed into place."""
    import shutil

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def rotated(path: str | os.PathLike, keep: int) -> list[Path]:
    """A JSON-lines log's files, newest first: ``path``, ``path.1`` ... ``path.<keep>`` (those that exist;
    a gap left by a crash mid-rotation is skipped, not taken as the end)."""
    path = Path(path)
    candidates = [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, keep + 1))]
    return [p for p in candidates if p.is_file()]


@contextlib.contextmanager
def _exclusive(path: Path):
    """An exclusive lock on ``path``'s hidden sidecar lock file: one appender (or rotation) at a time,
    across processes (two monitors or alert sinks may share a file)."""
    with open(path.with_name(f".{path.name}.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append_line(path: str | os.PathLike, entry: dict, rotate_bytes: float | None = None, keep: int = 5) -> None:
    """Appends one JSON line durably (flushed and fsynced).

    One writer at a time, across processes (a lock on a hidden sidecar file). A torn last line (a crash
    mid-append) is cut off first, so it never swallows the next entry. When the
    file has reached ``rotate_bytes`` it becomes ``path.1`` (``path.1`` becomes ``path.2`` ..., the
    ``keep``-th is dropped) and the line starts a new file: the log's disk use stays under about
    (keep + 1) x rotate_bytes. Every rename is atomic, so a crash mid-rotation loses no entry.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, default=str) + "\n"
    with _exclusive(path):
        size = path.stat().st_size if path.is_file() else 0
        if size:
            with open(path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
        if rotate_bytes and size >= rotate_bytes:
            for extra in path.parent.glob(f"{glob.escape(path.name)}.*"):  # kept by a larger `keep` before
                suffix = extra.name[len(path.name) + 1 :]
                if suffix.isdigit() and int(suffix) > keep:
                    extra.unlink(missing_ok=True)
            for i in range(keep, 0, -1):
                src = path if i == 1 else path.with_name(f"{path.name}.{i - 1}")
                if src.exists():
                    os.replace(src, path.with_name(f"{path.name}.{i}"))
        with open(path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def read_lines(path: str | os.PathLike, last: int | None = None, keep: int = 5) -> list[str]:
    """The lines of a rotated JSON-lines log, oldest first: all of them, or at least the ``last`` newest
    (older rotated files are read only when the newer ones hold fewer)."""
    chunks: list[list[str]] = []
    for p in rotated(path, keep):
        try:
            chunks.insert(0, Path(p).read_text().splitlines())
        except FileNotFoundError:  # rotated away meanwhile
            continue
        if last and sum(map(len, chunks)) >= last:
            break
    return [line for c in chunks for line in c]
