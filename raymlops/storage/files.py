"""State files and logs named by location (a local path or a URI), for the actors that own them.

Each mutable state file has one owning writer (an actor); readers (CLI status, other actors) only read.
On local disk: ``atomic_write`` and ``flock``-ed JSON lines (``local.py``). On an object store, where there is
no rename, no append and no lock:

- a state file is one object, PUT whole (readers see the old or the new one);
- a JSON-lines log ``<name>`` is a folder ``<name>.d/`` of immutable segment objects, one per append
  (``s<key>.jsonl``, keys in time order). Its single writer folds every ``COMPACT_AT`` segments into one
  ``m<last key>.jsonl`` written *before* the segments it holds are deleted: a crash in between leaves
  segments that readers skip (their key is <= the fold's) and the next fold deletes. The oldest objects are
  deleted while the log is over ``(keep + 1) * rotate_bytes``, as rotation does locally. Deciding costs a
  LIST of the folder, so the writer looks every ``MAINTAIN_EVERY`` appends (and on its first), not on each.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

from raymlops.storage import local
from raymlops.storage.core import Storage

COMPACT_AT = 64  # segments a log's writer folds into one object
MAINTAIN_EVERY = 8  # appends between a writer's looks at its log's folder (one LIST each)
_since_maintained: dict[str, int] = {}  # per process: appends since this writer last looked, by log


def is_uri(loc: str | os.PathLike) -> bool:
    return "://" in str(loc) and not str(loc).startswith("file://")


def join(loc: str | os.PathLike, *parts: str) -> str:
    """``loc``/``parts`` for a path or a URI."""
    s = str(loc)
    if is_uri(s):
        return "/".join([s.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(s.removeprefix("file://")).joinpath(*parts))


@lru_cache(maxsize=128)
def _store(uri: str) -> Storage:
    return Storage(uri)


def _split(loc: str) -> tuple[Storage, str]:
    parent, _, name = str(loc).rstrip("/").rpartition("/")
    return _store(parent), name


def write_file(loc: str | os.PathLike, data: bytes, durable: bool = False) -> str:
    """Replaces the file at ``loc`` whole (atomic; ``durable`` fsyncs locally)."""
    if is_uri(loc):
        store, name = _split(str(loc))
        return store.write_bytes(name, data=data)
    path = Path(str(loc).removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(local.atomic_write(path, data, durable=durable))


def read_file(loc: str | os.PathLike) -> bytes:
    """The file's bytes; FileNotFoundError when there is none."""
    if is_uri(loc):
        store, name = _split(str(loc))
        return store.read_bytes(name)
    return Path(str(loc).removeprefix("file://")).read_bytes()


def file_exists(loc: str | os.PathLike) -> bool:
    if is_uri(loc):
        store, name = _split(str(loc))
        return store.exists(name)
    return Path(str(loc).removeprefix("file://")).is_file()


def move_aside(loc: str | os.PathLike, suffix: str) -> None:
    """Renames a file to ``<loc><suffix>`` (a copy, then a delete, on an object store)."""
    if is_uri(loc):
        store, name = _split(str(loc))
        store.write_bytes(name + suffix, data=store.read_bytes(name))
        store.delete(name)
    else:
        os.replace(loc, f"{loc}{suffix}")


def list_dirs(loc: str | os.PathLike) -> list[str]:
    """Names of the sub-directories (prefixes) directly under ``loc``."""
    if is_uri(loc):
        store = _store(str(loc).rstrip("/"))
        return sorted(
            {f.split("/")[0] for f in store.files() if "/" in f} - {n for n in store.listdir() if n.endswith(".d")}
        )
    p = Path(str(loc).removeprefix("file://"))
    return sorted(d.name for d in p.iterdir() if d.is_dir()) if p.is_dir() else []


# ---------------------------------------------------------------------- logs


def _segments(store: Storage, name: str) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """(folds, live segments) of log ``name``, each (key, object name, size) in key order; segments a fold
    already holds are left out."""
    from pyarrow.fs import FileSelector, FileType

    base = store.path(f"{name}.d")
    infos = store.fs.get_file_info(FileSelector(base, allow_not_found=True))
    folds, segs = [], []
    for i in infos:
        obj = i.path.rsplit("/", 1)[-1]
        if i.type != FileType.File or not obj.endswith(".jsonl"):
            continue
        (folds if obj[0] == "m" else segs).append((obj[1:-6], obj, i.size))
    folds.sort()
    segs.sort()
    done = folds[-1][0] if folds else ""
    return folds, [s for s in segs if s[0] > done]


def _key() -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def append_line(
    loc: str | os.PathLike, entry: dict, rotate_bytes: float | None = None, keep: int = 5, compact: bool = True
) -> None:
    """Appends one JSON line durably. One writer per log (the actor that owns it)."""
    if not is_uri(loc):
        local.append_line(loc, entry, rotate_bytes, keep)
        return
    store, name = _split(str(loc))
    line = json.dumps(entry, default=str) + "\n"
    store.write_bytes(f"{name}.d", f"s{_key()}.jsonl", data=line.encode())
    if compact or rotate_bytes:
        n = _since_maintained.get(str(loc), MAINTAIN_EVERY - 1) + 1  # a writer's first append looks too
        if n >= MAINTAIN_EVERY:
            _maintain(store, name, rotate_bytes, keep, compact)
            n = 0
        _since_maintained[str(loc)] = n


def _maintain(store: Storage, name: str, rotate_bytes: float | None, keep: int, compact: bool) -> None:
    folds, segs = _segments(store, name)
    if compact and len(segs) >= COMPACT_AT:
        body = b"".join(store.read_bytes(f"{name}.d", s[1]) for s in segs)
        store.write_bytes(f"{name}.d", f"m{segs[-1][0]}.jsonl", data=body)  # the fold first, then deletes
        from pyarrow.fs import FileSelector, FileType

        done = segs[-1][0]
        for i in store.fs.get_file_info(FileSelector(store.path(f"{name}.d"), allow_not_found=True)):
            obj = i.path.rsplit("/", 1)[-1]
            if i.type == FileType.File and obj.startswith("s") and obj[1:-6] <= done:
                store.delete(f"{name}.d", obj)
        folds, segs = _segments(store, name)
    if rotate_bytes:
        objs = folds + segs
        total = sum(o[2] for o in objs)
        while len(objs) > 1 and total > (keep + 1) * rotate_bytes:
            total -= objs[0][2]
            store.delete(f"{name}.d", objs.pop(0)[1])


def read_lines(loc: str | os.PathLike, last: int | None = None, keep: int = 5) -> list[str]:
    """The log's lines, oldest first: all of them, or at least the ``last`` newest."""
    if not is_uri(loc):
        return local.read_lines(loc, last, keep)
    store, name = _split(str(loc))
    folds, segs = _segments(store, name)
    chunks: list[list[str]] = []
    for _, obj, _ in reversed(folds + segs):
        try:
            chunks.insert(0, store.read_text(f"{name}.d", obj).splitlines())
        except FileNotFoundError:  # folded or rotated away meanwhile
            continue
        if last and sum(map(len, chunks)) >= last:
            break
    return [line for c in chunks for line in c]


def tail_lines(loc: str | os.PathLike, cursor) -> tuple[list[str], object]:
    """Complete lines appended after ``cursor`` (0 or None: from the start) and the cursor after them.

    A local cursor is a byte offset (reset when the file was recreated smaller); on an object store it is the
    last segment key read (logs tailed this way are written with ``compact=False``)."""
    if not is_uri(loc):
        path = str(loc)
        if not os.path.isfile(path):
            return [], cursor
        offset = cursor if isinstance(cursor, int) else 0
        if offset > os.path.getsize(path):
            offset = 0
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        return data[:end].decode().splitlines(), offset + end
    store, name = _split(str(loc))
    after = cursor if isinstance(cursor, str) else ""
    _, segs = _segments(store, name)
    lines: list[str] = []
    for key, obj, _ in segs:
        if key > after:
            lines += store.read_text(f"{name}.d", obj).splitlines()
            after = key
    return lines, after
