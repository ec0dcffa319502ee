"""`explore(data)`: the public entry point, and `Profile`, what it returns."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from raymlops.errors import DataError

REQUEST_LOG = {"ts", "request_id", "role", "inputs"}  # raymlops.serving.request_log's columns that identify it


class Profile:
    """A dataset's profile (and, after ``compare``, its comparison with another).

    ``data`` is JSON-able: rows, per-column figures, table figures (duplicates, correlations, rows per day),
    label associations, warnings and the sketches' stated errors. ``sample`` holds a uniform sample of rows.
    """

    def __init__(self, data: dict[str, Any], sample=None, sketches: dict | None = None):
        self.data, self.sample, self._sketches = data, sample, sketches or {}

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return self.data["warnings"]

    @property
    def comparison(self) -> dict[str, Any] | None:
        return self.data.get("comparison")

    def column(self, name: str) -> dict[str, Any]:
        return self.data["columns"][name]

    def compare(self, other: Profile, p_val: float = 0.05) -> Profile:
        """This profile (the reference, e.g. the training data) with ``other`` side by side and tested for drift."""
        from raymlops.explore.compare import compare_profiles

        got = compare_profiles(
            {**self.data, "sample": self.sample},
            {**other.data, "sample": other.sample},
            self._sketches,
            other._sketches,
            p_val,
        )
        return Profile({**self.data, "comparison": got, "other": other.data}, self.sample, self._sketches)

    def to_dict(self) -> dict[str, Any]:
        from raymlops.features.online.base import json_ready

        return json_ready(self.data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_html(self) -> str:
        from raymlops.explore.report import render

        return render(self.to_dict())

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str | os.PathLike) -> list[str]:
        """Writes the HTML report at ``path`` (a local path or a URI) and the JSON beside it (same name, .json),
        each atomically; returns both locations."""
        from raymlops.storage.files import write_file

        html = str(path)
        stem = html[: -len(Path(html).suffix)] if Path(html).suffix else html
        return [write_file(html, self.to_html().encode()), write_file(stem + ".json", self.to_json().encode())]


def explore(
    data,
    *,
    label: str | None = None,
    time: str | None = None,
    compare=None,
    config=None,
    name: str | None = None,
    seed: int = 0,
) -> Profile:
    """Profiles ``data`` (a Ray Dataset, a pandas DataFrame, a path, or a source name of ``config``) in one
    distributed pass (two with ``label``); with ``compare`` (the same kinds of input) also profiles that and
    compares it with ``data`` as the reference. A request log (an app's, or one day of it) is profiled as the
    rows its primary requests carried, in time order of ``ts``.

    Raises:
        DataError: unreadable input, or a label/time column that is not in the data.
    """
    cfg = _config(config)
    profile = _profile(data, cfg, label, time, name, seed)
    if compare is None:
        return profile
    return profile.compare(_profile(compare, cfg, label, time, None, seed + 1, label_optional=True))


def _profile(
    data, cfg, label: str | None, time: str | None, name: str | None, seed: int, label_optional: bool = False
) -> Profile:
    """One input's profile (``label_optional``: the compared side, profiled with the label when it has it)."""
    from raymlops.explore.profile import profile_dataset

    ds, default_time, default_name = _dataset(data, cfg)
    _ensure_ray(cfg)
    if REQUEST_LOG <= set(ds.schema().names):  # the request log: each primary row's inputs become the columns
        fields = _log_fields(ds)
        default_time = "request_ts" if "ts" in fields else "ts"
        ds = ds.map_batches(_logged_inputs, batch_format="pyarrow", fn_kwargs={"fields": fields, "time": default_time})
    if label_optional and label not in ds.schema().names:
        label = None
    got, sketches = profile_dataset(
        ds, label=label, time_column=time or default_time, name=name or default_name, seed=seed
    )
    sample = got.pop("sample")
    return Profile(got, sample, sketches)


LOG_SAMPLE = 20_000  # primary rows of a request log whose inputs decide its columns' types


def _log_fields(ds) -> dict[str, str]:
    """Each input key of a request log's first LOG_SAMPLE primary rows and its type: bool, int, float (numbers
    of both kinds), else string (a key whose values mix types, e.g. "02139" and 2139)."""
    seen: dict[str, set] = {}
    rows = 0
    for batch in ds.select_columns(["role", "inputs"]).iter_batches(batch_format="pyarrow", batch_size=4096):
        for role, text in zip(batch.column("role").to_pylist(), batch.column("inputs").to_pylist()):
            if role != "primary" or text is None:
                continue
            for k, v in json.loads(text).items():
                if v is not None:
                    seen.setdefault(k, set()).add(
                        "bool"
                        if isinstance(v, bool)
                        else "int"
                        if isinstance(v, int)
                        else "float"
                        if isinstance(v, float)
                        else "string"
                    )
                else:
                    seen.setdefault(k, set())
            rows += 1
        if rows >= LOG_SAMPLE:
            break
    out = {}
    for k, kinds in seen.items():
        out[k] = kinds.pop() if len(kinds) == 1 else "float" if kinds == {"int", "float"} else "string"
    return out


def _logged_inputs(t, fields: dict[str, str], time: str):
    """A request-log batch as the rows its primary requests carried, typed by ``fields``, plus their time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = t.filter(pc.and_(pc.equal(t["role"], "primary"), pc.is_valid(t["inputs"])))
    rows = [json.loads(x) for x in t["inputs"].to_pylist()]
    types = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    cols = {k: pa.array([_as(r.get(k), kind) for r in rows], type=types[kind]) for k, kind in fields.items()}
    cols[time] = t["ts"]
    return pa.table(cols)


def _as(v, kind: str):
    """``v`` as a ``kind`` value, None when it cannot be one (a number column's stray text)."""
    if v is None:
        return None
    if kind == "string":
        return v if isinstance(v, str) else json.dumps(v)
    if kind == "bool":
        return v if isinstance(v, bool) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v) if kind == "float" else int(v)
        except (TypeError, ValueError):
            return None
    return float(v) if kind == "float" else int(v)


def _config(config):
    if config is None or not isinstance(config, (str, os.PathLike)):
        return config
    from raymlops.config import load_config

    return load_config(config)


def _ensure_ray(cfg) -> None:
    from raymlops.config.models import RayConfig
    from raymlops.data.ray_env import ensure_ray

    ensure_ray(cfg.ray if cfg is not None else RayConfig())


def _dataset(data, cfg) -> tuple[Any, str | None, str]:
    """(Ray Dataset, the source's time column, a display name) for any accepted input."""
    import pandas as pd

    if hasattr(data, "map_batches") and hasattr(data, "schema"):
        return data, None, "dataset"
    if isinstance(data, pd.DataFrame):
        import pyarrow as pa
        import ray.data

        _ensure_ray(cfg)
        return ray.data.from_arrow(pa.Table.from_pandas(data, preserve_index=False)), None, "dataframe"
    if isinstance(data, (str, os.PathLike)):
        text = str(data)
        if cfg is not None and text in cfg.sources:
            from raymlops.data.sources import read_source

            _ensure_ray(cfg)
            src = cfg.sources[text]
            return read_source(src), src.timestamp, text
        from raymlops.data.reader import read_dataset, resolve, schema

        known = f"; sources in the config: {sorted(cfg.sources)}" if cfg is not None else ""
        try:
            src = resolve(text)  # before Ray starts: a wrong path or a corrupt file fails in a second
        except DataError as e:
            raise DataError(f"{e}{known}") from None
        schema(src)
        _ensure_ray(cfg)
        return read_dataset(src), None, Path(text.rstrip("/")).name or text
    raise DataError(
        f"explore() needs a Ray Dataset, a pandas DataFrame, a path or a source name, got {type(data).__name__}"
    )
