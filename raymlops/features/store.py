"""FeatureStore: the SDK facade over feature pipelines, the offline and online stores (thin; it delegates)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from raymlops.config.models import FeatureViewConfig, PipelineConfig, feature_ref_issue
from raymlops.errors import DataError, RaymlopsError

PRESENT, NOT_FOUND, OUTSIDE_TTL = "PRESENT", "NOT_FOUND", "OUTSIDE_TTL"


@dataclass
class OnlineFeatures:
    """Values per feature (one per entity row, in order) and a status per value."""

    values: dict[str, list[Any]] = field(default_factory=dict)
    statuses: dict[str, list[str]] = field(default_factory=dict)
    event_timestamps: dict[str, list[str | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, list[Any]]:
        return dict(self.values)

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(self.values)


def parse_time(value, what: str = "time") -> int | None:
    """A datetime, ISO string or pandas Timestamp (naive = UTC) as UTC ns."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise DataError(f"cannot read {what} {value!r}: {e}") from None
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).value


class FeatureStore:
    """Feature views declared in a pipeline YAML: build, retrieve point-in-time, materialize, serve online.

    Example:
        >>> fs = FeatureStore.from_yaml("configs/features.yaml")
        >>> fs.build()
        >>> train = fs.get_historical_features(labels, features=["txn_stats:amount_sum_7d"])
        >>> fs.materialize(end="2024-07-01")
        >>> fs.get_online_features(["txn_stats:amount_sum_7d"], [{"customer_id": 1}]).to_dict()
    """

    def __init__(self, config: PipelineConfig):
        if config.features is None:
            raise RaymlopsError("this config has no 'features' section")
        from raymlops.features.offline import OfflineStore

        self.config = config
        self.features = config.features
        root = self.features.offline_store.path or os.path.join(config.storage, "features", "offline")
        self.offline = OfflineStore(root)
        self._online = None
        self._tile_specs: dict = {}
        self._resolved: dict = {}

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> FeatureStore:
        from raymlops.config import load_config

        return cls(load_config(path, overrides))

    # ------------------------------------------------------------------ plumbing

    def portable_config(self) -> dict:
        """The config as JSON with storage paths made absolute (for Serve replicas and Ray workers)."""
        cfg = self.config.model_copy(deep=True)
        if "://" not in cfg.storage:
            cfg.storage = os.path.abspath(cfg.storage)
        off = cfg.features.offline_store
        off.path = self.offline.uri if "://" in self.offline.uri else os.path.abspath(self.offline.uri)
        online = cfg.features.online_store
        if online.type == "sqlite" and online.path and "://" not in online.path:
            online.path = os.path.abspath(online.path)
        return cfg.model_dump(mode="json")

    def connect(self, address: str | None = None) -> bool:
        from raymlops.data.ray_env import ensure_ray
        from raymlops.storage import export_options

        export_options(self.config.storage_options)
        return ensure_ray(self.config.ray, address)

    @property
    def online(self):
        if self._online is None:
            from raymlops.features.online import open_online_store

            self._online = open_online_store(self.features.online_store, self.config.storage, self.config.name)
        return self._online

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None

    def view(self, name: str) -> FeatureViewConfig:
        names = [v.name for v in self.features.views]
        if name not in names:
            raise DataError(f"unknown feature view {name!r}; defined: {names}")
        return self.features.view(name)

    def join_keys(self, view: FeatureViewConfig) -> list[str]:
        return list(self.features.entity(view.entity).join_keys)

    def _views(self, names: Sequence[str] | None) -> list[FeatureViewConfig]:
        return [self.view(n) for n in names] if names else list(self.features.views)

    def resolve(self, refs: Sequence[str], full_feature_names: bool = False) -> list[tuple[FeatureViewConfig, dict]]:
        """'view:feature' / 'view:*' references -> [(view, {stored name: output name})], views in first-use order."""
        if isinstance(refs, str) or not refs:
            raise DataError("features must be a non-empty list of 'view:feature' references")
        memo = (tuple(refs), full_feature_names)
        if memo in self._resolved:  # online reads resolve the same references on every request
            return self._resolved[memo]
        out: dict[str, dict[str, str]] = {}
        for ref in refs:
            why = feature_ref_issue(ref, self.features)
            if why:
                raise DataError(why)
            view, _, name = ref.partition(":")
            names = self.features.view(view).feature_names if name == "*" else [name]
            for n in names:
                out.setdefault(view, {})[n] = f"{view}__{n}" if full_feature_names else n
        outputs = [o for m in out.values() for o in m.values()]
        dupes = sorted({o for o in outputs if outputs.count(o) > 1})
        if dupes:
            raise DataError(f"features {dupes} come from more than one view; pass full_feature_names=True")
        plan = [(self.features.view(v), m) for v, m in out.items()]
        if len(self._resolved) < 256:
            self._resolved[memo] = plan
        return plan

    # -------------------------------------------------------------- offline side

    def build(
        self, views: Sequence[str] | None = None, start=None, end=None, append: bool = False, drop_pushed: bool = False
    ) -> dict:
        """Runs the feature pipelines (all views by default); returns {view: committed version manifest}.

        No range rebuilds the whole view; ``start``/``end`` backfill that range; ``append`` adds the rows
        after the latest built time. Pushed events are kept unless ``drop_pushed`` (once the source holds them).
        """
        from raymlops.data.sources import read_source
        from raymlops.features.build import build_view

        self.connect()
        lo, hi = parse_time(start, "start"), parse_time(end, "end")
        mode = "append" if append else ("backfill" if lo is not None or hi is not None else "overwrite")
        out = {}
        for v in self._views(views):
            src = self.config.sources[v.source]
            info = {"source": {"name": v.source, "format": src.format, "path": src.path}}
            out[v.name] = build_view(
                read_source(src), v, self.join_keys(v), self.offline, mode, lo, hi, info, drop_pushed
            ).manifest
        return out

    def get_historical_features(
        self,
        entity_df,
        features: Sequence[str],
        event_timestamp: str = "event_timestamp",
        full_feature_names: bool = False,
        keep_order: bool = True,
        as_served: bool = False,
    ):
        """Each entity row with every requested feature's value as of the row's time (point-in-time correct).

        Args:
            entity_df: pandas DataFrame or Ray Dataset with the join keys and ``event_timestamp``.
            features: 'view:feature' or 'view:*' references.
            keep_order: return rows in input order (a Ray Dataset result is sorted; pandas always is).
            as_served: start each window at the tile boundary the online store starts it at (what a request
                at that time was served, for the skew check); default: exactly ``T - window``.

        Returns:
            pandas for a pandas input, a Ray Dataset for a Ray Dataset input; one row per input row,
            duplicates kept, missing values null, timestamps UTC-aware.
        """
        from raymlops.features.pit import ROW, join_view, with_row_ids

        self.connect()
        plan = self.resolve(features, full_feature_names)
        keys = list(dict.fromkeys(k for v, _ in plan for k in self.join_keys(v)))
        ds = with_row_ids(entity_df, event_timestamp, keys)
        for view, names in plan:
            from raymlops.features.partition import cluster_cpus

            join = self.view_join(view, names, as_served)
            columns = list(
                dict.fromkeys(
                    [
                        *join.keys,
                        view.timestamp,
                        *([view.created_timestamp] if view.created_timestamp else []),
                        *join.features,
                        *join.window_columns,
                    ]
                )
            )
            latest = self._check_stored(view, columns, [a for a in view.aggregations if a.feature_name in names])
            feats = self.offline.file_set(view.name, columns, min_groups=2 * cluster_cpus(), version=latest)
            ds = join_view(ds, feats, join, event_timestamp)
        if isinstance(entity_df, pd.DataFrame):
            import pyarrow as pa
            import ray

            out = pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default").to_pandas()
            return out.sort_values(ROW, kind="stable").drop(columns=[ROW]).reset_index(drop=True)
        if keep_order:
            ds = ds.sort(ROW)
        return ds.drop_columns([ROW])

    def view_join(self, view: FeatureViewConfig, names: dict[str, str], as_served: bool = False):
        """What retrieving ``names`` ({feature: output name}) of ``view`` needs: plain fields, as of each row's
        time, and window aggregates over ``(T - window, T]``."""
        from raymlops.config.models import duration_seconds
        from raymlops.features.pit import ViewJoin

        windows = {
            names[a.feature_name]: (a.function, a.column, duration_seconds(a.window) * 10**9)
            for a in view.aggregations
            if a.feature_name in names
        }
        return ViewJoin(
            view.name,
            self.join_keys(view),
            view.timestamp,
            view.created_timestamp,
            view.ttl_seconds * 10**9 if view.ttl_seconds else None,
            {n: o for n, o in names.items() if n in view.fields},
            windows,
            view.tile_seconds * 10**9 if as_served and view.aggregations else None,
        )

    def _check_stored(self, view: FeatureViewConfig, columns: list[str], aggregations: list):
        """The latest version (None if none), checked: its events have the columns asked for, and numbers where
        an aggregation needs them."""
        import pyarrow as pa

        latest = self.offline.latest(view.name)
        if latest is None:
            return None
        schema = latest.schema
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise DataError(
                f"feature view {view.name!r}: offline version {latest.number} lacks columns {missing}; "
                "it was built before window aggregates were computed at retrieval time (or the view's "
                "definition changed): run `raymlops features build CONFIG`"
            )
        for a in aggregations:
            i = view.aggregations.index(a)
            t = schema.field(a.column).type if a.column in schema.names else None
            numeric = t is not None and (
                pa.types.is_integer(t)
                or pa.types.is_floating(t)
                or pa.types.is_decimal(t)
                or pa.types.is_boolean(t)
                or pa.types.is_null(t)
            )
            if a.function in ("sum", "mean", "min", "max", "std") and t is not None and not numeric:
                raise DataError(
                    f"feature view {view.name!r}: aggregations[{i}] ({a.function} of {a.column!r}) needs "
                    f"a numeric column, got {t}; use count, distinct_count or last for it"
                )
        return latest

    # --------------------------------------------------------------- online side

    def materialize(self, start=None, end=None, incremental: bool = False, views: Sequence[str] | None = None) -> dict:
        """Loads each entity's latest value with ``start <= ts < end`` (end default: now) into the online store."""
        from raymlops.features.materialize import materialize_view

        self.connect()
        hi = parse_time(end, "end") if end is not None else time.time_ns()
        lo = parse_time(start, "start")
        for v in self._views(views):
            self._check_stored(v, [], v.aggregations)
        return {
            v.name: materialize_view(self.offline, self.online, v, self.join_keys(v), lo, hi, incremental)
            for v in self._views(views)
        }

    def push(self, view: str, rows) -> dict:
        """Writes new events of ``view`` (dicts, a pandas DataFrame or an Arrow table): to the offline store
        (the next training set sees them) and to the online store at once. A bad row raises a PushError
        naming each field, and nothing is written. Needs no Ray."""
        from raymlops.features.push import validate, write_pushed

        v = self.view(view)
        keys = self.join_keys(v)
        latest = self.offline.latest(v.name)
        table = validate(rows, v, keys, latest.schema if latest else None, time.time_ns())
        return write_pushed(self.offline, self.online, v, keys, table)

    def get_online_features(
        self, features: Sequence[str], entity_rows: Sequence[dict], full_feature_names: bool = False, at=None
    ) -> OnlineFeatures:
        """Online values per entity row, with a status per value.

        Plain fields: the latest value (PRESENT, NOT_FOUND, or OUTSIDE_TTL when older than the view's ttl).
        Window aggregates: over the window ending now (or ``at``), from the online tiles: PRESENT when the
        window holds an event, else NOT_FOUND with the function's empty value (0 for count, distinct_count and
        sum, null for the others).
        """
        from raymlops.features.offline import iso
        from raymlops.features.tiles import covers, needed_slots, window_values

        plan = self.resolve(features, full_feature_names)
        now = time.time_ns() if at is None else parse_time(at, "at")
        out = OnlineFeatures()
        for view, names in plan:
            keys = self.join_keys(view)
            tuples = []
            for i, row in enumerate(entity_rows):
                missing = [k for k in keys if k not in row]
                if missing:
                    raise DataError(f"entity_rows[{i}] lacks join key(s) {missing} of view {view.name!r}")
                tuples.append(tuple(row[k] for k in keys))
            fields = {s: n for s, n in names.items() if s in view.fields}
            windows = [s for s in names if s not in view.fields]
            if fields:
                self._online_fields(view, tuples, fields, now, out)
            if windows:
                spec = self._tile_spec(view)
                spans = covers(spec, now, windows)
                tiles = self.online.read_tiles(view.name, tuples, needed_slots(spans))
                per_row = [window_values(spec, t, spans, windows) for t in tiles]
                for stored in windows:
                    name = names[stored]
                    out.values[name] = [v[stored] for v, _ in per_row]
                    out.statuses[name] = [NOT_FOUND if ts[stored] is None else PRESENT for _, ts in per_row]
                    out.event_timestamps[name] = [iso(ts[stored]) for _, ts in per_row]
        # in the order the features were asked for
        order = [n for _, m in plan for n in m.values()]
        out.values = {n: out.values[n] for n in order}
        out.statuses = {n: out.statuses[n] for n in order}
        out.event_timestamps = {n: out.event_timestamps[n] for n in order}
        return out

    def _tile_spec(self, view: FeatureViewConfig):
        spec = self._tile_specs.get(view.name)
        if spec is None:
            from raymlops.features.tiles import tile_spec

            spec = self._tile_specs[view.name] = tile_spec(view)
        return spec

    def _online_fields(
        self, view: FeatureViewConfig, tuples: list[tuple], names: dict[str, str], now: int, out: OnlineFeatures
    ) -> None:
        from raymlops.features.offline import iso

        records = self.online.read(view.name, tuples)
        ttl = view.ttl_seconds * 10**9 if view.ttl_seconds else None
        stamps = [iso(r.event_ts) if r else None for r in records]
        for stored, name in names.items():
            vals, stats = [], []
            for r in records:
                if r is None:
                    vals.append(None), stats.append(NOT_FOUND)
                elif ttl is not None and now - r.event_ts > ttl:
                    vals.append(None), stats.append(OUTSIDE_TTL)
                else:
                    vals.append(r.values.get(stored)), stats.append(PRESENT)
            out.values[name], out.statuses[name], out.event_timestamps[name] = vals, stats, stamps

    # ------------------------------------------------------------ discoverability

    def list_views(self) -> list[dict]:
        return [self._summary(v, self.offline.latest(v.name)) for v in self.features.views]

    def export(self, view: str, out: str, fmt: str = "parquet", version: int | None = None) -> dict:
        """Writes a view's offline version (default the latest) where Spark reads it: a Hive-partitioned
        Parquet dataset or a Delta table (``raymlops.features.export``)."""
        from raymlops.features.export import export

        self.view(view)  # an unknown view fails with the declared names
        return export(self.offline, view, out, fmt, version)

    def describe(self, name: str) -> dict:
        import json

        from raymlops.features.materialize import meta_key
        from raymlops.features.offline import iso

        v = self.view(name)
        versions = self.offline.versions(name)
        latest = versions[-1] if versions else None
        schema = {f.name: str(f.type) for f in latest.schema} if latest else None
        kinds = {"count": "int64", "distinct_count": "int64"}
        types = (
            None
            if schema is None
            else {
                **{f: schema.get(f) for f in v.fields},
                **{
                    a.feature_name: kinds.get(a.function, schema.get(a.column) if a.function == "last" else "double")
                    for a in v.aggregations
                },
            }
        )
        try:
            mat = json.loads(self.online.get_meta(meta_key(name)) or "{}")
            last_run, watermark = (mat.get("runs") or [None])[-1], iso(mat.get("watermark"))
        except RaymlopsError as e:  # the online store is unreachable: still describe the offline side
            last_run, watermark = {"error": str(e)}, None
        fresh = None
        if latest and latest.manifest.get("max_ts") is not None:
            fresh = round((time.time_ns() - latest.manifest["max_ts"]) / 1e9)
        return {
            **self._summary(v, latest),
            "schema": schema,
            "feature_types": types,
            "source": v.source,
            "timestamp": v.timestamp,
            "created_timestamp": v.created_timestamp,
            "aggregations": [a.model_dump() | {"feature": a.feature_name} for a in v.aggregations],
            "tile": f"{v.tile_seconds}s" if v.aggregations else None,
            "transform": v.transform,
            "offline_versions": [
                {
                    "version": x.number,
                    "mode": x.manifest["mode"],
                    "rows": x.rows,
                    "written_rows": x.manifest["written_rows"],
                    "created_at": x.manifest["created_at"],
                    "range": x.manifest.get("range"),
                    "min_ts": iso(x.manifest.get("min_ts")),
                    "max_ts": iso(x.manifest.get("max_ts")),
                }
                for x in versions
            ],
            "last_materialization": last_run,
            "online_watermark": watermark,
            "freshness_seconds": fresh,
        }

    def _summary(self, v: FeatureViewConfig, latest) -> dict:
        return {
            "name": v.name,
            "entity": v.entity,
            "join_keys": self.join_keys(v),
            "features": v.feature_names,
            "ttl": v.ttl,
            "description": v.description,
            "owner": v.owner,
            "tags": v.tags,
            "offline_version": latest.number if latest else None,
            "offline_rows": latest.rows if latest else 0,
        }
