"""Features and datasets for the console: the declared feature views of each config with their offline
versions, freshness, online reachability and sample values; and every training set the runs recorded
(exact inputs by content hash and view version) with the runs that used it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from raymlops.artifacts.run import EXPLORE_DIR
from raymlops.console.runs import RunIndex, RunNotFound
from raymlops.console.schemas import DataProfile, DatasetInfo, DatasetsPage, FeaturesPage, Panel, ViewInfo


def _key_value(raw: str) -> Any:
    """An entity key typed in a form: a JSON number stays a number, anything else is text."""
    try:
        v = json.loads(raw)
    except ValueError:
        return raw
    return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else raw


def _online(store) -> tuple[str, str | None]:
    try:
        store.online.get_meta("raymlops:console:ping")
        return "reachable", None
    except Exception as e:  # any backend failure is shown, not raised: the offline side still renders
        return "unreachable", f"{type(e).__name__}: {e}"


def views(stores: dict, name: str | None = None, key: str | None = None) -> FeaturesPage:
    """Every view of every feature store (``{pipeline: FeatureStore}``), or one with its details; with
    ``key`` (``JOIN_KEY=VALUE[,..]`` or a bare value for a one-key view) its online values now."""
    out, panels = [], []
    for pipeline, store in stores.items():
        try:
            summaries = store.list_views()
        except Exception as e:
            panels.append(Panel(source=f"{pipeline} offline store", error=f"{type(e).__name__}: {e}"))
            continue
        status, err = _online(store)
        for s in summaries:
            if name and s["name"] != name:
                continue
            v = ViewInfo(
                pipeline=pipeline,
                **{k: s.get(k) for k in ViewInfo.model_fields if k in s and s.get(k) is not None},
                online=status,
                online_error=err,
            )
            if name:
                v.details = json.loads(json.dumps(store.describe(s["name"]), default=str))
                if key:
                    v.sample = _sample(store, s, key)
            out.append(v)
    return FeaturesPage(views=out, panels=panels)


def _sample(store, summary: dict, key: str) -> dict:
    keys = summary["join_keys"]
    if "=" in key:
        row = {k.strip(): _key_value(v.strip()) for k, _, v in (p.partition("=") for p in key.split(","))}
    else:
        row = {keys[0]: _key_value(key)} if len(keys) == 1 else {}
    missing = [k for k in keys if k not in row]
    if missing:
        return {"error": f"key must name {', '.join(keys)} (KEY=VALUE,...); missing {', '.join(missing)}"}
    try:
        got = store.get_online_features([f"{summary['name']}:{f}" for f in summary["features"]], [row])
        return json.loads(json.dumps({"values": got.values, "statuses": got.statuses}, default=str))
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def datasets(index: RunIndex) -> DatasetsPage:
    """Training sets, one per distinct (pipeline, inputs, label): the sources by content hash, the feature
    view versions, the rows, and the runs that trained on it (newest first)."""
    groups: dict[str, DatasetInfo] = {}
    runs = sorted(index.all(), key=lambda s: s.created or "", reverse=True)
    for s in runs:
        data = index.data.get((s.pipeline, s.run_id), {})
        inputs = data.get("inputs") or {}
        ident = json.dumps({"p": s.pipeline, "in": inputs, "label": data.get("label")}, sort_keys=True, default=str)
        fp = hashlib.sha256(ident.encode()).hexdigest()[:16]
        if fp not in groups:
            groups[fp] = DatasetInfo(
                fingerprint=fp,
                pipeline=s.pipeline,
                label=data.get("label"),
                sources=inputs.get("sources") or {},
                feature_views=inputs.get("feature_views") or {},
                rows=s.rows,
                time_range=data.get("time_range") or [],
                runs=[],
            )
        groups[fp].runs.append(s.run_id)
        if data.get("explored") and groups[fp].profiled_run is None:
            groups[fp].profiled_run = s.run_id
    return DatasetsPage(datasets=list(groups.values()))


def profile(store, index: RunIndex, pipeline: str, run_id: str) -> DataProfile:
    """The training-split profile of a run (explore/training.json)."""
    index.get(pipeline, run_id)  # RunNotFound (404) for a run that does not exist
    try:
        doc = store.read_json("runs", pipeline, run_id, EXPLORE_DIR, "training.json")
    except FileNotFoundError:
        raise RunNotFound(
            f"run {pipeline}/{run_id} has no profile of its training split (set training.explore: true)"
        ) from None
    return DataProfile(
        pipeline=pipeline,
        run_id=run_id,
        rows=doc["rows"],
        columns=len(doc["columns"]),
        warnings=doc.get("warnings") or [],
        profile=doc,
    )
