"""Runs for the console: an index of committed runs (summaries cached per process: a committed run never
changes), filtering, sorting and pages, one run's trials and curves, and side-by-side comparison."""

from __future__ import annotations

import json
import threading
from typing import Any

from raymlops.artifacts.run import CONFIG, LINEAGE, META, METRICS, TUNE
from raymlops.console.schemas import Compare, Diff, RunDetail, RunsPage, RunSummary, Trial
from raymlops.errors import RaymlopsError
from raymlops.storage import Storage
from raymlops.training.xgb import CURVE_FILE

EVALUATION = "evaluation.json"  # written by the evaluate step (pipeline/steps.py)
SORTS = ("created", "run_id", "pipeline", "status", "trials")


class RunNotFound(RaymlopsError):
    pass


def _numbers(d: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (d or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _json(store: Storage, *parts: str) -> Any:
    try:
        return store.read_json(*parts)
    except (FileNotFoundError, ValueError):
        return None


def summarize(store: Storage, pipeline: str, run_id: str) -> tuple[RunSummary, dict]:
    """A run's summary from its meta.json, metrics.json, evaluation.json and lineage.json, and what it
    trained on (its lineage inputs, label and training rows: the datasets page)."""
    meta = _json(store, "runs", pipeline, run_id, META) or {}
    metrics = _json(store, "runs", pipeline, run_id, METRICS) or {}
    ev = _json(store, "runs", pipeline, run_id, EVALUATION) or {}
    lin = _json(store, "runs", pipeline, run_id, LINEAGE) or {}
    trials = metrics.get("trials") or []
    ok = sum(1 for t in trials if t.get("status", "ok") == "ok")
    status = "ok" if ok == len(trials) else "partial" if ok else "failed"
    holdout = _numbers(ev.get("candidate"))
    if ev.get("threshold") is not None:
        holdout["threshold"] = float(ev["threshold"])
    data = {
        "inputs": lin.get("inputs") or {},
        "label": meta.get("label"),
        "source": meta.get("source"),
        "time_range": meta.get("time_range") or [],
        "explored": bool(meta.get("explored")),
    }
    return RunSummary(
        pipeline=pipeline,
        run_id=run_id,
        created=meta.get("created"),
        task=meta.get("task"),
        model_type=meta.get("model_type"),
        status=status,
        metric=metrics.get("metric"),
        metrics=_numbers(metrics.get("best")),
        holdout=holdout,
        params=metrics.get("best_params") or {},
        trials=len(trials),
        rows={k: int(v) for k, v in (meta.get("rows") or {}).items()},
        mlflow_run_id=lin.get("mlflow_run_id"),
    ), data


class RunIndex:
    """Summaries of every committed run under ``<storage>/runs``. Listing the folders is repeated on each
    call (new runs appear at once); a run's files are read once per process, since a committed run is
    immutable. Cold, 2,000 runs cost four small reads each; warm, a page costs the listing and a sort."""

    def __init__(self, store: Storage):
        self.store = store
        self._cache: dict[tuple[str, str], RunSummary] = {}
        self.data: dict[tuple[str, str], dict] = {}  # what each run trained on (``summarize``)
        self._lock = threading.Lock()

    def pipelines(self) -> list[str]:
        return [p for p in self.store.listdir("runs") if not p.startswith(".")]

    def all(self) -> list[RunSummary]:
        out = []
        for p in self.pipelines():
            for r in self.store.listdir("runs", p):
                if r.startswith("."):
                    continue
                key = (p, r)
                s = self._cache.get(key)
                if s is None:
                    if not self.store.published("runs", p, r, marker=META):
                        continue  # still being written (or abandoned): not a run yet
                    s, data = summarize(self.store, p, r)
                    with self._lock:
                        self._cache[key], self.data[key] = s, data
                out.append(s)
        return out

    def get(self, pipeline: str, run_id: str) -> RunSummary:
        for s in self.all():
            if s.pipeline == pipeline and s.run_id == run_id:
                return s
        raise RunNotFound(f"no run {pipeline}/{run_id} under {self.store.url('runs')}")


def sort_value(s: RunSummary, key: str) -> tuple:
    """Sort key for ``created``, ``run_id``, ``pipeline``, ``status``, ``trials``, ``metrics.X``,
    ``holdout.X`` or ``params.X``; runs without the value sort last."""
    if "." in key:
        group, _, name = key.partition(".")
        v = getattr(s, group, {}).get(name)
    else:
        v = getattr(s, key)
    if v is None:
        return (1, 0, "")
    return (0, v, "") if isinstance(v, (int, float)) else (0, 0, str(v))


def check_sort(key: str) -> str:
    group, dot, name = key.partition(".")
    if key in SORTS or (dot and group in ("metrics", "holdout", "params") and name):
        return key
    raise ValueError(f"sort must be one of {', '.join(SORTS)} or metrics.NAME, holdout.NAME, params.NAME; got {key!r}")


def page(
    index: RunIndex,
    pipeline: str | None = None,
    status: str | None = None,
    q: str | None = None,
    sort: str = "created",
    order: str = "desc",
    page_no: int = 1,
    per_page: int = 50,
) -> RunsPage:
    """Runs matching every filter given (``q``: a substring of the run id, a param or a param value),
    sorted, one page of them."""
    runs = index.all()
    if pipeline:
        runs = [s for s in runs if s.pipeline == pipeline]
    if status:
        runs = [s for s in runs if s.status == status]
    if q:
        ql = q.lower()
        runs = [s for s in runs if ql in s.run_id.lower() or any(ql in f"{k}={v}".lower() for k, v in s.params.items())]
    present = [s for s in runs if sort_value(s, sort)[0] == 0]
    present.sort(key=lambda s: sort_value(s, sort), reverse=order == "desc")
    runs = present + [s for s in runs if sort_value(s, sort)[0] == 1]
    start = (page_no - 1) * per_page
    return RunsPage(
        total=len(runs),
        page=page_no,
        per_page=per_page,
        pipelines=index.pipelines(),
        runs=runs[start : start + per_page],
    )


def _curves(store: Storage, pipeline: str, run_id: str) -> dict[str, dict[str, list[float]]]:
    """trial folder -> its validation curves (``curve.json`` in the trial's last checkpoint)."""
    out: dict[str, dict[str, list[float]]] = {}
    files = sorted(f for f in store.files("runs", pipeline, run_id, TUNE) if f.endswith("/" + CURVE_FILE))
    for f in files:  # tune/search/<trainable>_<trial id>_<n>_<params>_<date>/checkpoint_NNNNNN/curve.json
        try:
            curve = json.loads(store.read_bytes("runs", pipeline, run_id, TUNE, *f.split("/")))
        except (FileNotFoundError, ValueError):
            continue
        out[f.split("/")[-3]] = {k: [float(x) for x in v] for k, v in curve.items() if isinstance(v, list)}
    return out


def _search_curves(store: Storage, lineage: dict) -> dict[str, dict[str, list[float]]]:
    """trial id -> its per-round validation curves (``valid_*``), from the train step's ``search.json`` in the
    step cache: a run whose train step was cached has no Tune folder of its own, but the same search."""
    key = ((lineage.get("steps") or {}).get("train") or {}).get("key")
    doc = _json(store, "cache", "steps", "train", key, "search.json") if key else None
    out: dict[str, dict[str, list[float]]] = {}
    for t in (doc or {}).get("trials") or []:
        curves = {
            k: [float(v) for _, v in sorted(points)]
            for k, points in (t.get("history") or {}).items()
            if k.startswith("valid_") and isinstance(points, list) and len(points) > 1
        }
        if curves and t.get("trial_id"):
            out[t["trial_id"]] = curves
    return out


def _curve_of(curves: dict[str, dict], trial_id: str | None) -> dict[str, list[float]]:
    """The curves of the trial whose folder names its id (Tune names it ``<trainable>_<trial id>_...``)."""
    if not trial_id:
        return {}
    return next((c for d, c in curves.items() if f"_{trial_id}_" in f"{d}_"), {})


def detail(index: RunIndex, pipeline: str, run_id: str, mlflow_ui: str | None = None, experiment_of=None) -> RunDetail:
    """One run: its summary, trials with their curves, report files, lineage and config; with ``mlflow_ui``
    (and ``experiment_of``: MLflow run id -> experiment id) a link to the run in that UI."""
    s = index.get(pipeline, run_id)
    store = index.store
    metrics = _json(store, "runs", pipeline, run_id, METRICS) or {}
    ev = _json(store, "runs", pipeline, run_id, EVALUATION) or {}
    lineage = _json(store, "runs", pipeline, run_id, LINEAGE) or {}
    searched = _search_curves(store, lineage)
    curves = {} if searched else _curves(store, pipeline, run_id)  # else: curve.json in the run's Tune folder
    trials = [
        Trial(
            trial_id=t.get("trial_id"),
            status=t.get("status"),
            params=t.get("params") or {},
            metrics=_numbers(t.get("metrics")),
            seconds=t.get("seconds"),
            curve=searched.get(t.get("trial_id") or "") or _curve_of(curves, t.get("trial_id")),
        )
        for t in metrics.get("trials") or []
    ]
    try:
        config = store.read_text("runs", pipeline, run_id, CONFIG)
    except FileNotFoundError:
        config = None
    url = None
    if mlflow_ui and s.mlflow_run_id and experiment_of is not None:
        try:
            url = f"{mlflow_ui.rstrip('/')}/#/experiments/{experiment_of(s.mlflow_run_id)}/runs/{s.mlflow_run_id}"
        except Exception:  # the tracking store does not know the run (another store): no link, the id is shown
            url = None
    return RunDetail(
        summary=s,
        threshold=ev.get("threshold"),
        trials=trials,
        lineage=lineage,
        report_files=_report_files(ev),
        importance=_numbers(ev.get("importance")),
        config_yaml=config,
        mlflow_url=url,
    )


def report_files(index: RunIndex, pipeline: str, run_id: str) -> list[str]:
    """The evaluation report's files of a committed run (RunNotFound for any other)."""
    index.get(pipeline, run_id)
    return _report_files(_json(index.store, "runs", pipeline, run_id, EVALUATION) or {})


def _report_files(ev: dict) -> list[str]:
    return [f for f in ev.get("files") or [] if "/" not in f]


def best_curve(d: RunDetail) -> dict[str, list[float]]:
    """The curves of the trial whose parameters are the run's best."""
    for t in d.trials:
        if t.params == d.summary.params and t.curve:
            return t.curve
    return {}


def _diffs(dicts: list[dict]) -> list[Diff]:
    keys = sorted(set().union(*dicts)) if dicts else []
    out = []
    for k in keys:
        vals = [d.get(k) for d in dicts]
        out.append(
            Diff(key=k, values=vals, differs=len({json.dumps(v, sort_keys=True, default=str) for v in vals}) > 1)
        )
    return out


def compare(index: RunIndex, refs: list[str]) -> Compare:
    """Two or more runs (``pipeline/run_id``) side by side: param and metric diffs, and their best curves."""
    if len(refs) < 2:
        raise ValueError(f"run must name at least 2 runs (pipeline/run_id); got {len(refs)}")
    details = []
    for ref in refs:
        pipeline, _, run_id = ref.partition("/")
        if not run_id:
            raise ValueError(f"run must be PIPELINE/RUN_ID; got {ref!r}")
        details.append(detail(index, pipeline, run_id))
    runs = [d.summary for d in details]
    return Compare(
        runs=runs,
        params=_diffs([r.params for r in runs]),
        metrics=_diffs([r.metrics for r in runs]),
        holdout=_diffs([r.holdout for r in runs]),
        curves={f"{d.summary.pipeline}/{d.summary.run_id}": best_curve(d) for d in details},
    )
