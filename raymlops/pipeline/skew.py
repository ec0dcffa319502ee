"""The skew check: requests served by entity key (the request log keeps the feature values fetched for
each row) against the same features recomputed from the offline store as of each request's time. Run by
`raymlops features skew` and, on a schedule, by the app monitor (which calls `monitor_check` by path)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from raymlops.config import PipelineConfig
from raymlops.errors import DataError

COLUMNS = ["ts", "request_id", "row", "status", "role", "inputs", "features"]


def served_rows(path: str, since: float | None = None, until: float | None = None) -> pd.DataFrame:
    """Answered primary requests by entity key from the request log at ``path`` (ts in [since, until))."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from raymlops.serving.request_log import SCHEMA
    from raymlops.storage import Storage

    store = Storage(path)
    if not store.isdir():
        return pd.DataFrame(columns=COLUMNS)
    # the log's own schema: files written before the features column existed read it as null
    dataset = pads.dataset(
        store.root,
        filesystem=store.fs,
        format="parquet",
        partitioning="hive",
        schema=pa_schema(SCHEMA),
        exclude_invalid_files=True,
        ignore_prefixes=[".", "_"],
    )
    flt = (pc.field("status") == 200) & (pc.field("role") == "primary") & pc.field("features").is_valid()
    if since is not None:
        flt &= pc.field("ts") >= pd.Timestamp(since, unit="s", tz="UTC")
    if until is not None:
        flt &= pc.field("ts") < pd.Timestamp(until, unit="s", tz="UTC")
    return dataset.to_table(columns=COLUMNS, filter=flt).to_pandas()


def pa_schema(schema):
    import pyarrow as pa

    return pa.schema([*schema, pa.field("date", pa.string())])


def skew_report(
    cfg: PipelineConfig,
    app: str | None = None,
    since=None,
    until=None,
    sample: int = 1000,
    tolerance: float = 1e-6,
    seed: int = 0,
) -> dict:
    """Compares up to ``sample`` served rows since ``since`` (a time; default: all) with the offline store."""
    from raymlops.features import FeatureStore
    from raymlops.features.skew import compare
    from raymlops.features.store import parse_time
    from raymlops.pipeline.serve import request_log_path

    if cfg.features is None or cfg.training is None or cfg.training.dataset is None:
        raise DataError("the skew check needs a 'features' section and training.dataset (the served features)")
    app = app or (cfg.serving.app_name if cfg.serving else None) or cfg.name
    path = request_log_path(cfg, app)
    lo, hi = parse_time(since, "since"), parse_time(until, "until")
    rows = served_rows(path, None if lo is None else lo / 1e9, None if hi is None else hi / 1e9)
    report = {
        "app": app,
        "request_log": path,
        "since": None if lo is None else pd.Timestamp(lo, tz="UTC").isoformat(),
        "logged_rows": len(rows),
        "at": time.time(),
    }
    if rows.empty:
        return {**report, "rows": 0, "features": {}, "worst": None, "max_rate": 0.0}
    if len(rows) > sample:
        rows = rows.sample(sample, random_state=np.random.RandomState(seed)).sort_values("ts")
    rows = rows.reset_index(drop=True)
    store = FeatureStore(cfg)
    refs = list(cfg.training.dataset.features)
    plan = store.resolve(refs)
    names = [n for _, m in plan for n in m.values()]
    keys = list(dict.fromkeys(k for v, _ in plan for k in store.join_keys(v)))
    inputs = [json.loads(x) for x in rows["inputs"]]
    served = pd.DataFrame([json.loads(x) for x in rows["features"]])
    entity = pd.DataFrame({k: [r.get(k) for r in inputs] for k in keys})
    entity["event_timestamp"] = pd.to_datetime(rows["ts"], utc=True)
    served = pd.concat([served.reindex(columns=names), entity[keys], rows[["request_id", "row", "ts"]]], axis=1)
    served["ts"] = served["ts"].map(lambda t: t.isoformat())
    offline = store.get_historical_features(entity, refs, as_served=True)
    return {**report, **compare(served, offline, names, ["request_id", "row", "ts", *keys], tolerance)}


def format_skew(report: dict) -> str:
    lines = [
        f"skew check of {report['app']}: {report['rows']} served rows compared "
        f"(of {report['logged_rows']} logged{' since ' + report['since'] if report.get('since') else ''})"
    ]
    for name, f in report["features"].items():
        worst = f["largest"][0] if f["largest"] else None
        detail = (
            ""
            if worst is None
            else (
                f"; e.g. request {worst['request_id']} row {worst['row']}: served "
                f"{worst['served']!r}, offline {worst['offline']!r}"
            )
        )
        lines.append(f"  {name:<40} {f['mismatches']:>6} mismatches ({100 * f['rate']:.1f}%){detail}")
    if not report["features"]:
        lines.append("  nothing to compare: no request by entity key in the request log")
    return "\n".join(lines)


def monitor_check(config_path: str, app: str, since: float | None, until: float, sample: int, tolerance: float) -> dict:
    """The app monitor's scheduled check: the rows logged in [since, until) (epoch seconds)."""
    from raymlops.config import load_config

    stamp = lambda t: None if t is None else pd.Timestamp(t, unit="s", tz="UTC")  # noqa: E731
    return skew_report(
        load_config(config_path), app, since=stamp(since), until=stamp(until), sample=sample, tolerance=tolerance
    )
