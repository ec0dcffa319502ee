"""One reader for every file a user hands in (`run`, `predict`, `check`, `drift report`, features): Parquet
by content or any extension, CSV, JSON lines; the same files, formats and column types whether read as a
Ray Dataset or as a pandas frame.

Directories may hold what Spark and Hive leave beside the data (``_SUCCESS``, ``_committed_*``, ``.crc``,
hidden files): names starting with ``_`` or ``.`` and ``.crc`` files are skipped, at any depth. A directory
written with Hive partitions (``date=2024-01-01/``) gets its partition columns back, typed, and a filter on
them prunes files before anything is read (``data.partitions``).
"""

from __future__ import annotations

import glob
import os
import posixpath
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from raymlops.config.models import FILE_FORMATS
from raymlops.errors import DataError

FORMATS = FILE_FORMATS
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
PANDAS_INDEX = "__index_level_"  # pandas.to_parquet writes a non-default index as __index_level_N__ columns
SKIPPED = "names starting with '_' or '.', and .crc files"
_SNIFF_BYTES = 4096


def is_data_file(name: str) -> bool:
    base = posixpath.basename(name.replace(os.sep, "/"))
    return bool(base) and not base.startswith(("_", ".")) and not base.endswith(".crc")


def _hidden_dir(rel: str) -> bool:
    """A path below a directory named like ``_temporary`` or ``.hoodie`` (writers' scratch, not data)."""
    return any(p.startswith(("_", ".")) for p in rel.replace(os.sep, "/").split("/")[:-1])


@dataclass
class Input:
    """The data files a path names, their format, and the filesystem to read them with (None: local)."""

    path: str
    files: list[str]
    format: str
    filesystem: Any = None
    partitions: dict[str, dict[str, str | None]] = field(default_factory=dict)  # file -> Hive partition values
    partition_types: dict[str, Any] = field(default_factory=dict)  # partition column -> Arrow type

    def open(self, file: str):
        return self.filesystem.open_input_file(file) if self.filesystem is not None else open(file, "rb")


def local_files(path: str) -> list[str]:
    """The data files a local path names (a file, a directory tree or a glob), sorted, absolute."""
    path = os.path.expanduser(path.removeprefix("file://"))
    if any(ch in path for ch in "*?["):
        found = glob.glob(path, recursive=True)
        return sorted(os.path.abspath(p) for p in found if os.path.isfile(p) and is_data_file(p))
    if os.path.isdir(path):
        out = []
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
            out += [os.path.join(root, n) for n in names if is_data_file(n)]
        return sorted(os.path.abspath(p) for p in out)
    if not os.path.exists(path):
        raise DataError(f"{path}: does not exist (relative paths start at {os.getcwd()})")
    return [os.path.abspath(path)]


def _uri_files(uri: str) -> tuple[list[str], Any, str | None]:
    from pyarrow.fs import FileSelector, FileType

    from raymlops.storage import open_storage

    pattern = None
    if any(ch in uri for ch in "*?["):
        pattern = uri.split("://", 1)[1]
        uri = uri[: min(uri.find(ch) for ch in "*?[" if ch in uri)].rsplit("/", 1)[0]
    store = open_storage(uri)
    fs, base = store.fs, store.path()
    info = fs.get_file_info(base)
    if info.type == FileType.File:
        return [base], fs, None
    if info.type == FileType.NotFound:
        raise DataError(f"{uri}: does not exist")
    infos = fs.get_file_info(FileSelector(base, recursive=True))
    files = [
        i.path
        for i in infos
        if i.type == FileType.File and is_data_file(i.path) and not _hidden_dir(posixpath.relpath(i.path, base))
    ]
    if pattern is not None:
        files = [f for f in files if fnmatch(f, pattern)]
    return sorted(files), fs, None if pattern is not None else base


def sniff(head: bytes) -> str:
    """A file's format from its first bytes: Parquet's magic, a JSON object, else CSV."""
    if head[:4] == b"PAR1":
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if text[:1] in (b"{", b"[") else "csv"


def resolve(path: str, fmt: str | None = None, filters: list | None = None, where: str = "filter") -> Input:
    """The data files ``path`` names (a file, a directory tree, a glob, or a URI of one) and their format:
    ``fmt``, else the extension, else the first file's content. In a Hive-partitioned directory, the files'
    partition values (and only the files passing ``filters``, ``(column, op, value)`` on partition columns).

    Raises:
        DataError: nothing to read, files of several formats under one path, or a bad filter.
    """
    from raymlops.data import partitions as hive

    path = str(path)
    if "://" in path and not path.startswith("file://"):
        files, fs, base = _uri_files(path)
    else:
        files, fs = local_files(path), None
        local = os.path.expanduser(path.removeprefix("file://"))
        base = os.path.abspath(local) if os.path.isdir(local) else None
    if not files:
        raise DataError(f"{path}: no data files found (skipped {SKIPPED})")
    parts = hive.file_partitions(files, base) if base is not None else {}
    types = hive.infer_types(parts) if parts else {}
    if filters:
        if not parts:
            raise DataError(
                f"{where}: {path} is not a Hive-partitioned directory (no key=value folders); a filter "
                "prunes partitions"
            )
        files = hive.prune(parts, types, filters, where)
        if not files:
            raise DataError(f"{path}: {where} leaves no files to read")
        parts = {f: parts[f] for f in files}
    if fmt is None:
        by_ext = {EXTENSIONS.get(posixpath.splitext(f.lower())[1]) for f in files}
        if len(by_ext) == 1 and None not in by_ext:
            fmt = by_ext.pop()
        else:
            found = Input(path, files, "", fs)
            with found.open(files[0]) as f:
                fmt = sniff(f.read(_SNIFF_BYTES))
    elif fmt not in FORMATS:
        raise DataError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return Input(path, files, fmt, fs, parts, types)


def _csv_options(text_columns) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # An empty field is a null, as pandas and every spreadsheet read it (pyarrow's default keeps "" for text).
    return {
        "convert_options": pacsv.ConvertOptions(
            column_types={c: pa.string() for c in text_columns},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
    }


def _file_schema(src: Input, text_columns=()):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with src.open(src.files[0]) as f:
            if src.format == "parquet":
                return pq.read_schema(f)
            if src.format == "csv":
                import pyarrow.csv as pacsv

                return pacsv.open_csv(f, **_csv_options(text_columns)).schema
            import pyarrow.json as pajson

            return pajson.read_json(f).schema
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{src.files[0]}: cannot read as {src.format}: {e}") from None


def schema(src: Input, text_columns=()):
    """The Arrow schema of the input as the readers type it: Parquet from the first file's footer, CSV and
    JSON inferred from the first file's first block; dictionary columns as their plain value type."""
    import pyarrow as pa

    fields = [
        pa.field(f.name, _plain(f.type)) for f in _file_schema(src, text_columns) if not f.name.startswith(PANDAS_INDEX)
    ]
    names = {f.name for f in fields}
    return pa.schema(fields + [pa.field(k, t) for k, t in src.partition_types.items() if k not in names])


def _plain(t):
    import pyarrow.types as pt

    return t.value_type if pt.is_dictionary(t) else t


def _decode(table):
    """Dictionary (pandas categorical) columns as their plain value type: categories are strings to every
    step, whatever the writer chose."""
    import pyarrow.types as pt

    for i, f in enumerate(table.schema):
        if pt.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def read_dataset(path: str | Input, fmt: str | None = None, text_columns=()):
    """The input as a lazy ``ray.data.Dataset`` (never loaded whole into the driver).

    Raises:
        DataError: no files, or files with no columns.
    """
    import pyarrow as pa
    import pyarrow.types as pt
    import ray.data

    src = path if isinstance(path, Input) else resolve(path, fmt)
    # Ray keeps only its own extensions by default: a file the user named is read whatever its name.
    kw: dict = {"filesystem": src.filesystem, "file_extensions": None}
    if src.partitions:  # the partition columns come from our typed values, per file, not Ray's strings
        kw["include_paths"] = True
        if src.format == "parquet":
            kw["partitioning"] = None
    try:
        if src.format == "parquet":
            ds = ray.data.read_parquet(src.files, **kw)
        elif src.format == "csv":
            ds = ray.data.read_csv(src.files, **_csv_options(text_columns), **kw)
        else:
            ds = ray.data.read_json(src.files, **kw)
        got = ds.schema()
    except (pa.ArrowInvalid, OSError) as e:  # a corrupt file past the first (Ray's task error subclasses it)
        raise DataError(f"{src.path}: cannot read as {src.format}: {str(e).strip().splitlines()[-1][:500]}") from None
    if got is None or not got.names:
        raise DataError(f"{src.path}: no rows in {len(src.files)} {src.format} file(s)")
    if src.format == "parquet":
        raw = _file_schema(src)
        index = [n for n in raw.names if n.startswith(PANDAS_INDEX)]
        if index:  # a pandas frame's index saved as columns (after a sort or filter): not data
            ds = ds.drop_columns(index)
        if any(pt.is_dictionary(t) for t in raw.types):
            ds = ds.map_batches(_decode, batch_format="pyarrow", zero_copy_batch=True)
    if src.partitions:
        ds = ds.map_batches(
            _with_partitions,
            batch_format="pyarrow",
            zero_copy_batch=True,
            fn_kwargs={"partitions": {_key(f): kv for f, kv in src.partitions.items()}, "types": src.partition_types},
        )
    return ds


def _key(path: str) -> str:
    """A file's identity whatever form a reader reports it in (scheme, leading slash)."""
    return path.split("://", 1)[-1].lstrip("/")


def _with_partitions(table, partitions: dict, types: dict):
    from raymlops.data.partitions import add_columns

    files = [_key(p) for p in table.column("path").to_pylist()]
    return add_columns(table.drop_columns(["path"]), files, partitions, types)


def read_frame(path: str | Input, fmt: str | None = None, text_columns=(), columns=None):
    """The input as one pandas DataFrame, typed as ``read_dataset`` types it (for batches that fit memory:
    checks, drift reports, probes)."""
    import pyarrow as pa

    src = path if isinstance(path, Input) else resolve(path, fmt)
    tables = []
    for file in src.files:
        try:
            with src.open(file) as f:
                t = _decode(_read_table(f, src.format, text_columns, columns))
            if src.partitions:
                from raymlops.data.partitions import add_columns

                wanted = {k: v for k, v in src.partition_types.items() if columns is None or k in columns}
                t = add_columns(t, [file] * t.num_rows, {file: src.partitions[file]}, wanted)
            tables.append(t)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{file}: cannot read as {src.format}: {e}") from None
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    table = table.drop_columns([n for n in table.column_names if n.startswith(PANDAS_INDEX)])
    return table.to_pandas(ignore_metadata=True)


def _read_table(f, fmt: str, text_columns, columns):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(f, columns=columns)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        t = pacsv.read_csv(f, **_csv_options(text_columns))
    else:
        import pyarrow.json as pajson

        t = pajson.read_json(f)
    return t.select(columns) if columns else t
