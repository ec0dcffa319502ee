"""Monitoring without serving: data-quality checks of a batch, offline drift reports, and the monitors'
recorded state (history, events, retraining) read from storage."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pandas as pd

from raymlops.artifacts import run as layout
from raymlops.config import PipelineConfig
from raymlops.errors import DataError, RaymlopsError
from raymlops.storage import open_storage
from raymlops.storage.staging import cache_root


def read_batch(path, fmt: str | None = None, text_columns: list[str] = ()) -> pd.DataFrame:
    """A file, directory or glob as pandas, read as ``run`` and ``predict`` read it (``data.reader``);
    ``text_columns`` are read as text from CSV (codes like '00123' stay strings)."""
    from raymlops.data.reader import read_frame

    return read_frame(path, fmt, text_columns)


def _run_dir(cfg: PipelineConfig | None, run: str | None, storage: str | None) -> Path:
    """A local path holding the run (this machine's copy of a run on an object store)."""
    store = open_storage(storage) if storage else open_storage(cfg) if cfg else open_storage(None)
    if run:
        return layout.local_run(layout.find_run(run, store))
    if cfg is None:
        raise RaymlopsError("name a run (--run) or a config whose latest run to use")
    return layout.local_run(layout.latest_run(store, cfg.name))


def check_batch(
    cfg: PipelineConfig | None, path: str, run: str | None = None, storage: str | None = None, fmt: str | None = None
):
    """Checks a batch against the data-quality profile learned from a run's training data; returns the
    `QualityReport` (``ok`` False when a check fails)."""
    from raymlops.data.quality import DataProfile, check

    run_dir = _run_dir(cfg, run, storage)
    if not (run_dir / layout.QUALITY).is_file():
        raise RaymlopsError(f"run {run_dir.name} has no data-quality profile ({layout.QUALITY}); retrain it")
    options = None
    if cfg is not None and cfg.monitoring is not None and cfg.monitoring.data_quality is not None:
        options = cfg.monitoring.data_quality.model_dump()
    profile = DataProfile.load(run_dir / layout.QUALITY)
    text = [c.name for c in profile.columns if c.type == "string"]
    from raymlops.data.reader import resolve

    src = resolve(path, fmt)
    return check(read_batch(src, text_columns=text), profile, options, typed=src.format != "csv")


def drift_report(
    cfg: PipelineConfig | None,
    run: str | None,
    current: str,
    out: str,
    storage: str | None = None,
    fmt: str | None = None,
) -> tuple[dict, list[Path]]:
    """Tests a batch against a run's drift reference (its saved detectors; a Tabular detector fitted on the
    reference when the run has none) and writes the report (HTML + JSON, or JSON). Returns (doc, paths)."""
    from raymlops.artifacts.predictor import Predictor
    from raymlops.monitoring.drift import PREDICTION, DriftTester, has_detector
    from raymlops.monitoring.report import build_report, render_html, write_report

    run_dir = _run_dir(cfg, run, storage)
    reference = pd.read_parquet(run_dir / layout.REFERENCE)
    batch = read_batch(current, fmt)
    predictor = Predictor(run_dir)
    missing = [c for c in predictor.schema.names if c not in batch.columns]
    if missing:
        raise DataError(f"{current}: lacks the model's input columns {missing}")
    drift_dir = run_dir / layout.DRIFT_DIR
    if not has_detector(drift_dir):
        drift_dir = _fit_default(
            run_dir, reference, predictor.schema.columns, storage or (cfg.storage if cfg else None)
        )
    tester = DriftTester(drift_dir)
    if tester.prediction is not None:
        for df in (reference, batch):
            preds, proba = predictor.predict_with_proba(df)
            df[PREDICTION] = proba if predictor.task == "binary" else [str(p) for p in preds]
    result = tester.test(batch)
    result["reference_rows"] = len(reference)
    meta = {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "current": str(current),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    kinds = tester.kinds()
    doc = build_report(result, reference, batch, kinds, meta)
    html_text = render_html(doc, reference, batch, kinds) if str(out).endswith(".html") else None
    return doc, write_report(doc, html_text, out)


def _fit_default(run_dir: Path, reference: pd.DataFrame, columns: list, storage: str | None) -> Path:
    from raymlops.config.monitoring import DriftConfig
    from raymlops.monitoring.drift import fit_inputs, has_detector

    # Fitted once per run on this machine (a local cache: the run itself is never changed).
    where = cache_root() / "drift-reports" / run_dir.name
    if not has_detector(where):  # fitted aside, then renamed: a crash never leaves half a detector
        tmp = where.with_name(f".{where.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        fit_inputs(reference, columns, DriftConfig().model_dump(), tmp)
        shutil.rmtree(where, ignore_errors=True)
        os.replace(tmp, where)
    return where


def monitor_status(cfg: PipelineConfig, app: str) -> dict:
    """What the monitors of an app recorded: per variant the latest results and history, the app's events,
    alert log and retraining steps (read from storage: works whether or not the app is running)."""
    from raymlops.monitoring.actor import CHECKPOINT, read_history
    from raymlops.pipeline.serve import monitoring_dir
    from raymlops.storage.files import join, list_dirs, read_file

    root = monitoring_dir(cfg, app)
    variants = {}
    for name in list_dirs(root):
        d, state = join(root, name), None
        try:
            state = pickle.loads(read_file(join(d, CHECKPOINT)))
        except Exception:  # none yet, or unreadable
            state = None
        variants[name] = {
            "model_version": state and state["model_version"],
            "rows_seen": state and state["rows_seen"],
            "latest_drift": state and state["latest_drift"],
            "latest_quality": state and state["latest_quality"],
            "history": read_history(d, 20),
        }
    try:
        app_state = json.loads(read_file(join(root, "state.json")))
    except (FileNotFoundError, ValueError):
        app_state = {}
    return {
        "app": app,
        "dir": str(root),
        "variants": variants,
        "events": read_history(root, 20),
        "retrains": app_state.get("retrains", []),
    }


def format_monitor_status(status: dict) -> str:
    lines = [f"monitoring of app {status['app']} ({status['dir']})"]
    if not status["variants"] and not status["events"]:
        lines.append("  nothing recorded yet (is the app deployed with a monitoring section?)")
    for name, v in status["variants"].items():
        d, q = v["latest_drift"], v["latest_quality"]
        lines.append(f"  variant {name}: model {v['model_version']}, {v['rows_seen'] or 0} rows seen")
        if d:
            drifted = sorted(n for n, f in d["features"].items() if f["is_drift"])
            lines.append(
                f"    drift ({d.get('detector')}): {'DRIFT on ' + ', '.join(drifted) if d['is_drift'] else 'none'}"
                f" in window {d.get('window')}"
            )
        if q:
            lines.append(
                f"    data quality: {'ok' if q['ok'] else 'FAILED ' + ', '.join(q.get('failed', []))}"
                f" in window {q.get('window')}"
            )
    for e in status["events"][-10:]:
        when = time.strftime("%H:%M:%S", time.localtime(e.get("ts", 0)))
        lines.append(f"  event {when} [{e['type']}] {e.get('variant') or '-'}: {e['message']}")
    for r in status["retrains"]:
        steps = " -> ".join(s["step"] for s in r["steps"])
        lines.append(f"  {r['id']} ({r['status']}): {steps}" + (f"; {r['error']}" if r.get("error") else ""))
    return "\n".join(lines)
