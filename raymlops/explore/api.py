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

    def compare(self, other: "Profile", p_val: float = 0.05) -> "Profile":
        """This profile (the reference, e.g. the training data) with ``other`` side by side and tested for drift."""
        from raymlops.explore.compare import compare_profiles

        got = compare_profiles({**self.data, "sample": self.sample}, {**other.data, "sample": other.sample},
                               self._sketches, other._sketches, p_val)
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


def explore(data, *, label: str | None = None, time: str | None = None, compare=None, config=None,
            name: str | None = None, seed: int = 0) -> Profile:
    """Profiles ``data`` (a Ray Dataset, a pandas DataFrame, a path, or a source name of ``config``) in one
    distributed pass (two with ``label``); with ``compare`` (the same kinds of input) also profiles that and
    compares it with ``data`` as the reference. A request log (an app's, or one day of it) is profiled as the
    rows its primary requests carried, in time order of ``ts``.

    Raises:
        DataError: unreadable input, or a label/time column that is not in the data.
    """
    from raymlops.explore.profile import profile_dataset

    cfg = _config(config)
    ds, default_time, default_name = _dataset(data, cfg)
    _ensure_ray(cfg)
    if REQUEST_LOG <= set(ds.schema().names):  # the request log: each primary row's inputs become the columns
        ds, default_time = ds.map_batches(_logged_inputs, batch_format="pyarrow"), "ts"
    got, sketches = profile_dataset(ds, label=label, time_column=time or default_time, name=name or default_name,
                                    seed=seed)
    sample = got.pop("sample")
    profile = Profile(got, sample, sketches)
    if compare is None:
        return profile
    other = explore(compare, label=label if _has(compare, cfg, label) else None, time=time, config=cfg, seed=seed + 1)
    return profile.compare(other)


def _logged_inputs(t):
    """A request-log batch as the rows its primary requests carried (inputs JSON -> columns) plus ``ts``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    t = t.filter(pc.and_(pc.equal(t["role"], "primary"), pc.is_valid(t["inputs"])))
    if t.num_rows == 0:
        return pa.table({"ts": t["ts"]})
    rows = pj.read_json(pa.BufferReader("\n".join(t["inputs"].to_pylist()).encode()))
    return rows.append_column("ts", t["ts"])


def _has(data, cfg, column: str | None) -> bool:
    if column is None:
        return False
    ds, _, _ = _dataset(data, cfg)
    return column in ds.schema().names


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
        import ray.data

        import pyarrow as pa

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
    raise DataError(f"explore() needs a Ray Dataset, a pandas DataFrame, a path or a source name, got "
                    f"{type(data).__name__}")
