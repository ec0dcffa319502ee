"""``Storage``: a root (local directory or object-store prefix) with whole-object reads and writes, listing
and the directory commit protocol, on pyarrow's filesystems (fsspec for other schemes)."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import time
from functools import cached_property
from pathlib import Path
from typing import Any

from raymlops.errors import RaymlopsError

MANIFEST = "_manifest.json"  # written last into a published directory on an object store
DEFAULT = "./.raymlops"
# storage_options understood for s3:// (everything else is passed to the filesystem as is).
_S3_ALIASES = {
    "endpoint_url": "endpoint_override",
    "key": "access_key",
    "secret": "secret_key",
    "token": "session_token",
}


OPTIONS_ENV = "RAYMLOPS_STORAGE_OPTIONS"  # JSON: the pipeline's storage_options, for every process of a job


def env_options() -> dict[str, Any]:
    """storage_options a driver exported for its workers (``export_options``)."""
    raw = os.environ.get(OPTIONS_ENV)
    return json.loads(raw) if raw else {}


def export_options(options: dict[str, Any] | None) -> None:
    """Makes ``options`` the default storage_options of this process and (through ``ray_env.worker_env``) of
    the workers Ray starts for it on any node."""
    if options:
        os.environ[OPTIONS_ENV] = json.dumps(options, sort_keys=True)


class StorageError(RaymlopsError):
    """Storage that cannot be opened or used (bad URI, unknown scheme, missing bucket)."""


def storage_uri(storage: str | os.PathLike | None = None) -> str:
    """The canonical form of a storage setting: ``storage``, else $RAYMLOPS_STORAGE, else ./.raymlops; a local
    path (or ``file://`` URI) becomes an absolute path, a URI keeps its scheme without a trailing slash."""
    s = str(storage or os.environ.get("RAYMLOPS_STORAGE") or DEFAULT)
    if s.startswith("file://"):
        s = s.removeprefix("file://")
    if "://" in s:
        scheme, rest = s.split("://", 1)
        rest = rest.strip("/")
        if not rest:
            raise StorageError(f"storage {s!r} names no bucket; expected {scheme}://bucket[/prefix]")
        return f"{scheme.lower()}://{rest}"
    return str(Path(s).expanduser().resolve())


def _s3(options: dict[str, Any]):
    """An S3 filesystem from storage_options, falling back to the standard AWS environment variables
    (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, ...).

    Credentials found in this process's environment are passed explicitly, so the filesystem keeps them
    when it is pickled to a task on another node (a driver's environment does not reach those nodes)."""
    from pyarrow.fs import S3FileSystem

    try:
        return S3FileSystem(**_s3_settings(options))
    except TypeError as e:
        raise StorageError(
            f"storage_options: {e} (s3 takes endpoint_url, region, access_key, secret_key, "
            "session_token, anonymous, and pyarrow.fs.S3FileSystem's other arguments)"
        ) from None


def _put_if_absent(options: dict[str, Any], path: str, data: bytes) -> bool | None:
    """A conditional PUT (``If-None-Match: *``, honoured by S3 since 2024 and by S3-compatible servers such as
    moto's) through boto3, which pyarrow does not expose: True if this call created the object, False if it
    existed; None without boto3 (``pip install 'raymlops[s3]'``)."""
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import ClientError
    except ImportError:
        return None
    kw = _s3_settings(options)
    endpoint = kw.get("endpoint_override")
    client = boto3.session.Session().client(  # a session per call: boto3's default session is not thread-safe
        "s3",
        region_name=kw.get("region"),
        aws_access_key_id=kw.get("access_key"),
        aws_secret_access_key=kw.get("secret_key"),
        aws_session_token=kw.get("session_token"),
        endpoint_url=f"{kw.get('scheme', 'https')}://{endpoint}" if endpoint else None,
        config=Config(signature_version=UNSIGNED if kw.get("anonymous") else "s3v4"),
    )
    bucket, _, key = path.partition("/")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "ConditionalRequestConflict",
            "412",
            "409",
        ):
            return False
        raise
    return True


def _s3_settings(options: dict[str, Any]) -> dict[str, Any]:
    """pyarrow ``S3FileSystem`` keyword arguments from storage_options and the environment (see ``_s3``)."""
    kw = {_S3_ALIASES.get(k, k): v for k, v in options.items()}
    env = os.environ
    endpoint = kw.pop("endpoint_override", None) or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        kw["endpoint_override"] = host.rstrip("/")
        kw.setdefault("scheme", scheme or "https")
        kw.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1")
    elif env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        kw.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
    if "access_key" not in kw and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kw.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"])
        if env.get("AWS_SESSION_TOKEN"):
            kw["session_token"] = env["AWS_SESSION_TOKEN"]
    return kw


def _filesystem(scheme: str, options: dict[str, Any]):
    import pyarrow.fs as pafs

    if scheme == "s3":
        return _s3(options)
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(**options)
    try:  # anything else fsspec knows (abfs://, hdfs://, memory://, ...)
        import fsspec

        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme, **options)))
    except (ImportError, ValueError) as e:
        raise StorageError(
            f"storage scheme {scheme!r} is not supported ({e}); use a local path, s3:// or gs://, "
            "or install the fsspec backend for it"
        ) from None


class Storage:
    """A storage root. Paths below it are given as parts (``store.read_json("runs", name, "meta.json")``).

    Picklable: it travels to Ray tasks and actors, and rebuilds its filesystem there.
    """

    def __init__(self, uri: str | os.PathLike | None = None, options: dict[str, Any] | None = None):
        self.uri = storage_uri(uri)
        self.options = {**env_options(), **(options or {})}
        self.local = "://" not in self.uri
        self.scheme = "file" if self.local else self.uri.split("://", 1)[0]
        self.root = self.uri if self.local else self.uri.split("://", 1)[1]

    def __reduce__(self):
        return (_rebuild, (self.uri, self.options, self.__dict__.get("fs")))

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Storage) and (self.uri, self.options) == (other.uri, other.options)

    def __hash__(self) -> int:
        return hash(self.uri)

    @cached_property
    def fs(self):
        """The pyarrow filesystem (local, S3, GCS, or fsspec's)."""
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem() if self.local else _filesystem(self.scheme, self.options)

    # ------------------------------------------------------------------ names

    def child(self, *parts: str) -> Storage:
        """The storage rooted at a sub-path (same filesystem, same options)."""
        sub = Storage.__new__(Storage)
        sub.__dict__.update(self.__dict__)
        sub.root = self.path(*parts)
        sub.uri = sub.root if self.local else f"{self.scheme}://{sub.root}"
        return sub

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` below the root (what ``fs`` takes)."""
        parts = tuple(str(p).strip("/") for p in parts if str(p))
        if self.local:
            return os.path.join(self.root, *parts)
        return posixpath.join(self.root, *parts)

    def url(self, *parts: str) -> str:
        """A full URI (or absolute local path) of ``parts``, as users and other processes see it."""
        p = self.path(*parts)
        return p if self.local else f"{self.scheme}://{p}"

    def local_path(self, *parts: str) -> Path:
        """The local path of ``parts``; only for local storage."""
        if not self.local:
            raise StorageError(f"{self.url(*parts)} is not on a local filesystem")
        return Path(self.path(*parts))

    # ------------------------------------------------------------------ reads

    def read_bytes(self, *parts: str) -> bytes:
        """The whole object. Raises FileNotFoundError when it does not exist."""
        if self.local:
            return Path(self.path(*parts)).read_bytes()
        try:
            with self.fs.open_input_stream(self.path(*parts)) as f:
                return f.read()
        except OSError as e:
            if _missing(e):
                raise FileNotFoundError(self.url(*parts)) from None
            raise

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def parquet_files(self, *parts: str) -> list[str]:
        """The filesystem paths of the ``*.parquet`` files directly in a directory, in name order."""
        return [self.path(*parts, n) for n in self.listdir(*parts) if n.endswith(".parquet")]

    def read_parquet(self, *parts: str, columns: list[str] | None = None):
        """A directory of Parquet files (read in name order) as one pandas DataFrame."""
        import pyarrow.parquet as pq

        files = self.parquet_files(*parts)
        if not files:
            raise FileNotFoundError(f"no Parquet files in {self.url(*parts)}")
        return pq.ParquetDataset(files, filesystem=self.fs).read(columns=columns).to_pandas()

    def sha256(self, *parts: str) -> str:
        """Hex sha256 of an object's content, streamed."""
        import hashlib

        h = hashlib.sha256()
        with self.fs.open_input_stream(self.path(*parts)) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    def exists(self, *parts: str) -> bool:
        """Whether ``parts`` is a file (an object)."""
        if self.local:
            return os.path.isfile(self.path(*parts))
        from pyarrow.fs import FileType

        return self.fs.get_file_info(self.path(*parts)).type == FileType.File

    def isdir(self, *parts: str) -> bool:
        """Whether anything lies below ``parts`` (object stores have no empty directories)."""
        if self.local:
            return os.path.isdir(self.path(*parts))
        return bool(self.listdir(*parts))

    def listdir(self, *parts: str) -> list[str]:
        """The names directly below ``parts`` (files and sub-directories), sorted; [] when there is none."""
        if self.local:
            try:
                return sorted(os.listdir(self.path(*parts)))
            except (FileNotFoundError, NotADirectoryError):
                return []
        from pyarrow.fs import FileSelector

        base = self.path(*parts)
        try:
            infos = self.fs.get_file_info(FileSelector(base, allow_not_found=True, recursive=False))
        except OSError as e:
            if _missing(e):
                return []
            raise
        return sorted({posixpath.relpath(i.path, base).split("/")[0] for i in infos})

    def files(self, *parts: str) -> list[str]:
        """Every file below ``parts``, as paths relative to it, sorted."""
        from pyarrow.fs import FileSelector, FileType

        base = self.path(*parts)
        try:
            infos = self.fs.get_file_info(FileSelector(base, allow_not_found=True, recursive=True))
        except OSError as e:
            if _missing(e):
                return []
            raise
        rel = os.path.relpath if self.local else posixpath.relpath
        return sorted(rel(i.path, base).replace(os.sep, "/") for i in infos if i.type == FileType.File)

    # ------------------------------------------------------------------ writes

    def write_bytes(self, *parts: str, data: bytes, durable: bool = False) -> str:
        """Writes a whole object atomically: readers see the old one or the new one, never a part.

        Local: a hidden temp file beside the target, renamed over it (``durable`` fsyncs it first). Object
        store: one PUT of bytes already in memory (nothing is sent before they are complete).
        """
        path = self.path(*parts)
        if self.local:
            from raymlops.storage.local import atomic_write

            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, data, durable=durable)
            return path
        with self.fs.open_output_stream(path) as f:
            f.write(data)
        return self.url(*parts)

    def write_text(self, *parts: str, text: str, durable: bool = False) -> str:
        return self.write_bytes(*parts, data=text.encode(), durable=durable)

    def write_json(self, *parts: str, obj: Any, durable: bool = False, indent: int | None = 2) -> str:
        return self.write_bytes(*parts, data=json.dumps(obj, indent=indent, default=str).encode(), durable=durable)

    def create(self, *parts: str, data: bytes) -> bool:
        """Writes ``parts`` only if it does not exist yet; returns whether this call created it.

        Local: an exclusive hard link of a complete temp file (atomic). S3: a conditional PUT
        (``If-None-Match: *``; atomic, through boto3). Other object stores (and S3 without boto3): a check
        first, so two writers racing within one round trip may both "win" there.
        """
        if self.local:
            from raymlops.storage.local import create_exclusive

            return create_exclusive(self.path(*parts), data)
        if self.scheme == "s3":
            created = _put_if_absent(self.options, self.path(*parts), data)
            if created is not None:
                return created
        if self.exists(*parts):
            return False
        self.write_bytes(*parts, data=data)
        return True

    def delete(self, *parts: str) -> None:
        """Deletes a file; a missing one is fine."""
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                os.unlink(self.path(*parts))
            else:
                try:
                    self.fs.delete_file(self.path(*parts))
                except OSError as e:
                    if not _missing(e):
                        raise

    def delete_tree(self, *parts: str) -> None:
        """Deletes everything below ``parts``; a missing tree is fine."""
        if self.local:
            import shutil

            shutil.rmtree(self.path(*parts), ignore_errors=True)
            return
        try:
            self.fs.delete_dir_contents(self.path(*parts), missing_dir_ok=True)
            self.fs.delete_dir(self.path(*parts))
        except OSError as e:
            if not _missing(e):
                raise

    def makedirs(self, *parts: str) -> None:
        if self.local:
            os.makedirs(self.path(*parts), exist_ok=True)

    # ------------------------------------------------------------------ files and directories

    def upload(self, local: str | os.PathLike, *parts: str) -> None:
        """Copies a local file to ``parts`` (whole: local temp + rename, or one object)."""
        if self.local:
            from raymlops.storage.local import link_or_copy_atomic

            link_or_copy_atomic(local, self.path(*parts))
            return
        import pyarrow.fs as pafs

        pafs.copy_files(
            str(local), self.path(*parts), source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs
        )

    def publish(self, local_dir: str | os.PathLike, *parts: str, manifest: dict | None = None) -> str:
        """Commits a finished local directory at ``parts``; returns its URL.

        Local storage: one rename (``local_dir`` must be on the same filesystem). Object store: every file is
        uploaded, then ``_manifest.json`` (file names and sizes, plus ``manifest``) is written last: until
        it exists, readers (``published``) treat the directory as absent.
        """
        if self.local:
            target = self.path(*parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(local_dir, target)
            return target
        local_dir = Path(local_dir)
        sizes = {}
        for f in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            rel = f.relative_to(local_dir).as_posix()
            self.upload(f, *parts, rel)
            sizes[rel] = f.stat().st_size
        self.commit(*parts, files=sizes, extra=manifest)
        return self.url(*parts)

    def commit(self, *parts: str, files: dict[str, int], extra: dict | None = None) -> None:
        """Writes the manifest of a directory whose files are all in place (object stores; a no-op locally)."""
        if not self.local:
            self.write_json(*parts, MANIFEST, obj={"files": files, "committed": time.time(), **(extra or {})})

    def published(self, *parts: str, marker: str | None = None) -> bool:
        """Whether a directory was committed: its ``marker`` file locally (the rename made it whole), its
        manifest on an object store."""
        if self.local:
            return self.exists(*parts, marker) if marker else self.isdir(*parts)
        return self.exists(*parts, MANIFEST)


def _rebuild(uri: str, options: dict, fs=None) -> Storage:
    s = Storage(uri, options)
    if fs is not None:
        s.__dict__["fs"] = fs
    return s


def _missing(e: OSError) -> bool:
    msg = str(e)
    return (
        isinstance(e, FileNotFoundError)
        or "NoSuchKey" in msg
        or "Path does not exist" in msg
        or "NoSuchBucket" in msg
        or "not found" in msg.lower()
    )


def open_storage(cfg_or_uri=None, options: dict[str, Any] | None = None) -> Storage:
    """The ``Storage`` of a pipeline config (its ``storage`` and ``storage_options``) or of a URI/path."""
    if cfg_or_uri is not None and hasattr(cfg_or_uri, "storage"):
        return Storage(cfg_or_uri.storage, getattr(cfg_or_uri, "storage_options", None))
    if isinstance(cfg_or_uri, Storage):
        return cfg_or_uri
    return Storage(cfg_or_uri, options)
