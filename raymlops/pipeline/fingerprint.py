"""Content fingerprints of inputs and code, and the environment a run records (git, packages, Ray)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_memo_lock = threading.Lock()


def digest(obj: Any) -> str:
    """Hex sha256 of an object's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files_of(path: str) -> list[str]:
    """The data files a source path names, as the reader reads them (Spark's `_SUCCESS`, `.crc` and hidden
    files left out), sorted."""
    from raymlops.data.reader import local_files

    return local_files(path)


class Fingerprinter:
    """Hashes file contents, remembering each file's hash by (path, size, mtime) in a JSON memo so an
    unchanged multi-GB source is not re-read on every run."""

    def __init__(self, memo_path: str | os.PathLike | None = None):
        self.memo_path = Path(memo_path) if memo_path else None
        self._memo: dict[str, list] = {}
        if self.memo_path and self.memo_path.is_file():
            try:
                self._memo = json.loads(self.memo_path.read_text())
            except ValueError:
                self._memo = {}

    def file(self, path: str) -> str:
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self._memo.get(path)
        if hit and hit[:2] == stamp:
            return hit[2]
        sha = file_sha256(path)
        with _memo_lock:
            self._memo[path] = [*stamp, sha]
        return sha

    def path(self, path: str) -> dict:
        """Fingerprint of a local file/directory/glob, or of a URI's listing (size + mtime per object)."""
        if "://" in path and not path.startswith("file://"):
            return self._uri(path)
        path = os.path.abspath(path.removeprefix("file://"))
        files = _files_of(path)
        # Files are named relative to what was fingerprinted, so the same data hashes the same wherever it
        # lies (a Ray job's working dir is unpacked under a new path whenever any file in it changes).
        base = (
            path
            if os.path.isdir(path)
            else (os.path.commonpath(files) if len(files) > 1 else os.path.dirname(files[0]) if files else path)
        )
        entries = {os.path.relpath(f, base): self.file(f) for f in files}
        self._save()
        return {
            "path": path,
            "files": len(files),
            "bytes": sum(os.path.getsize(f) for f in files),
            "sha256": digest(sorted(entries.items())),
        }

    def _uri(self, uri: str) -> dict:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(root)
        infos = (
            fs.get_file_info(pafs.FileSelector(root, recursive=True))
            if info.type == pafs.FileType.Directory
            else [info]
        )
        entries = sorted((i.path, i.size, str(i.mtime)) for i in infos if i.type == pafs.FileType.File)
        return {
            "path": uri,
            "files": len(entries),
            "bytes": sum(e[1] for e in entries),
            "sha256": digest(entries),
            "method": "listing (size, mtime)",
        }

    def _save(self) -> None:
        if not self.memo_path:
            return
        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.memo_path.with_name(f".{self.memo_path.name}.{os.getpid()}.tmp")
        with _memo_lock:
            tmp.write_text(json.dumps(self._memo))
        os.replace(tmp, self.memo_path)


def dir_fingerprint(root: str | os.PathLike) -> str:
    """sha256 over every file's relative path and content under a directory."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return digest([[str(p.relative_to(root)), file_sha256(p)] for p in files])


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The raymlops version plus a hash of its source files: a code change invalidates cached steps."""
    from importlib.metadata import version

    pkg = Path(__file__).resolve().parent.parent
    files = sorted(pkg.rglob("*.py"))
    return f"{version('raymlops')}+{digest([[str(p.relative_to(pkg)), file_sha256(p)] for p in files])[:12]}"


def git_info(where: str | os.PathLike = ".") -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding ``where``, or {} outside one."""
    cwd = Path(where).resolve()
    cwd = cwd if cwd.is_dir() else cwd.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return {"commit": commit, "dirty": dirty, "root": git("rev-parse", "--show-toplevel")}
    except (OSError, subprocess.SubprocessError):
        return {}


def module_fingerprint(import_path: str) -> str | None:
    """sha256 of the source file behind 'pkg.module:function' or 'pkg.module.Class' when it is user code
    (installed packages are covered by their versions); None for installed or unknown modules."""
    import importlib.util

    module = import_path.split(":")[0] if ":" in import_path else import_path.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if not origin or not os.path.isfile(origin) or "-packages" + os.sep in origin:
        return None
    return file_sha256(origin)


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a model's bytes and metrics."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("raymlops", "ray", "xgboost", "scikit-learn", "numpy", "pandas", "pyarrow", "mlflow", "alibi-detect"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
