"""The app monitor actor: one per Serve app. It receives the variant monitors' events and the canary's,
sends alerts, computes live performance from late labels, checks online/offline feature skew, and drives
drift-triggered retraining."""

from __future__ import annotations

import copy
import importlib
import json
import logging
import threading
import time
import traceback
from collections import deque
from typing import Any

import pandas as pd

from raymlops.storage import Storage
from raymlops.storage.files import append_line, join, read_file, tail_lines, write_file
from raymlops.monitoring.actor import _kill, read_history, rotation

log = logging.getLogger("raymlops.monitoring")

EVENTS = "history.jsonl"  # every event, as received
STATE = "state.json"
TICK_S = 1.0
STATUS_ERRORS = 30  # consecutive failed job-status reads before a retrain is failed


def _call(spec: dict):
    module, name = spec["call"].split(":")
    return getattr(importlib.import_module(module), name)


def read_table(spec: dict, columns: list[str] | None = None, filter=None) -> pd.DataFrame:
    """A labels source ({format, path}) or request log (format parquet: a directory, file or URI) read with
    pandas; for Parquet only ``columns`` (those present) and the rows matching ``filter`` are read."""
    fmt, path = spec["format"], spec["path"]
    store = Storage(path)
    if not (store.exists() or store.isdir()):  # no label has arrived yet
        return pd.DataFrame()
    if fmt is None:
        from raymlops.data.reader import resolve

        fmt = resolve(path).format
    if fmt == "parquet":
        import pyarrow.dataset as pads

        dataset = pads.dataset(store.root, filesystem=store.fs, format="parquet", partitioning="hive",
                               exclude_invalid_files=True, ignore_prefixes=[".", "_"])
        if not dataset.files:  # nothing written yet (a first flush still under its hidden temporary name)
            return pd.DataFrame()
        cols = [c for c in columns if c in dataset.schema.names] if columns else None
        return dataset.to_table(columns=cols, filter=filter).to_pandas()
    from raymlops.data.reader import read_frame

    return read_frame(path, fmt)


def request_columns(performance: dict) -> tuple[list[str], Any]:
    """(columns, filter) of the request log that the label join needs: answered rows only, and the inputs
    (the largest column) only to find entity keys."""
    import pyarrow.compute as pc

    cols = ["ts", "request_id", "row", "variant", "role", "model_version", "status", "prediction", "probability"]
    if performance.get("join") == "entity":
        cols.append("inputs")
    return cols, (pc.field("status") == 200) & pc.field("role").isin(["primary", "shadow"])


class AppMonitor:
    """``spec``: {app, namespace, state_dir, alerts: [alert config dicts], alert_log, canary_events: path | None,
    performance: {section..., task, classes, labels_source, request_log} | None,
    retrain: {section..., submit: {call, args}, promote: {call, args}} | None}.

    Events are appended to ``history.jsonl`` before anything else, so a restart loses none; the retrain
    record, the canary-events offset and the alert cooldowns are in ``state.json``.
    """

    def __init__(self, spec: dict):
        from raymlops.monitoring.alerts import Alerts

        self.spec = spec
        self.dir = str(spec["state_dir"])  # a path or URI in storage: this actor is its one writer
        self.alerts = Alerts.from_config(spec.get("alerts") or [], spec["alert_log"])
        self._lock = threading.RLock()
        self.recent: deque = deque(read_history(self.dir, 200, rotation(spec)[1]), maxlen=200)
        self.state = self._read_state()
        self.alerts.restore_cooldowns(self.state.get("cooldowns", {}))  # a restart does not re-alert
        self.performance: dict | None = None
        self._reported: dict[tuple, float] = {tuple(k): t for k, t in self.state.get("reported", [])}
        self.skew: dict | None = None
        # label joins start at once; the skew check after one period (the log is empty at start)
        self._next = {"performance": 0.0, "skew": time.time() + (spec["skew"]["every_s"] if spec.get("skew") else 0)}
        self._closed = threading.Event()
        threading.Thread(target=self._loop, daemon=True, name="app-monitor").start()

    def close(self, timeout: float = 0) -> None:
        """Stops the loop and the alert sinks (an in-process monitor; Ray kills the actor's process)."""
        self._closed.set()
        self.alerts.close(timeout=timeout)

    def _read_state(self) -> dict:
        try:
            return json.loads(read_file(join(self.dir, STATE)))
        except (OSError, ValueError):
            return {"canary_offset": 0, "retrains": [], "reported": []}

    def _save_state(self) -> None:
        self.state["reported"] = sorted(([list(k), t] for k, t in self._reported.items()), key=lambda kt: kt[1])[-1000:]
        write_file(join(self.dir, STATE), json.dumps(self.state, default=str).encode(), durable=True)

    # ------------------------------------------------------------------ events

    def event(self, event: dict) -> None:
        """Records an event, alerts on it, and starts a retrain when the policy says so."""
        with self._lock:
            append_line(join(self.dir, EVENTS), event, *rotation(self.spec))
            self.recent.append(event)
        if self.alerts.emit(event):
            with self._lock:
                self.state["cooldowns"] = self.alerts.cooldowns()
                self._save_state()
        r = self.spec.get("retrain")
        if r and event["type"] in r["on"]:
            self._maybe_retrain(event)

    def _canary_events(self) -> None:
        path = self.spec.get("canary_events")
        if not path:
            return
        lines, offset = tail_lines(path, self.state.get("canary_offset", 0))
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") in ("rollback", "complete"):
                rollback = e["event"] == "rollback"
                if rollback and e.get("model"):  # a retrain's canary that rolls back is never promoted
                    with self._lock:
                        rolled = self.state.setdefault("canary_rollbacks", {})
                        rolled[e["model"]] = e.get("reason") or "rolled back"
                        self.state["canary_rollbacks"] = dict(list(rolled.items())[-50:])
                # The subject names the model: a new model's rollback is not inside the last one's cooldown.
                subject = f"{e['event']} {e['model']}" if e.get("model") else e["event"]
                self.event({"type": "canary", "app": self.spec["app"], "variant": e.get("variant"),
                            "subject": subject, "severity": "critical" if rollback else "warning",
                            "message": f"canary {e.get('variant')}" + (f" ({e['model']})" if e.get("model") else "")
                                       + (f" rolled back: {e.get('reason')}" if rollback
                                          else " completed: it takes all its traffic"),
                            "details": e, "ts": time.time()})
        if offset != self.state.get("canary_offset", 0):
            with self._lock:
                self.state["canary_offset"] = offset
                self._save_state()

    # ------------------------------------------------------------------ performance

    def _performance(self) -> None:
        from raymlops.monitoring.performance import breaches, join_labels, row_note, summarize, windowed

        p = self.spec["performance"]
        labels = read_table(p["labels_source"])
        requests = read_table({"format": "parquet", "path": p["request_log"]}, *request_columns(p))
        if labels.empty or requests.empty:
            self.performance = {"labelled_rows": 0, "windows": [], "summary": {}, "at": time.time()}
            return
        joined = join_labels(requests, labels, p)
        windows = windowed(joined, p["metric"], p["task"], p["window"], p.get("classes"))
        note = row_note(joined, labels, p)
        if note and not (self.performance or {}).get("note"):
            log.warning("app monitor %s: %s", self.spec["app"], note)
        self.performance = {"labelled_rows": int(len(joined)), "windows": windows[-50:],
                            "summary": summarize(windows), "at": time.time(), **({"note": note} if note else {})}
        with self._lock:  # the latest windows beside the floor, for readers of storage (the console)
            self.state["performance"] = {"metric": p["metric"], "floor": p.get("floor"), "windows": windows[-50:],
                                         "at": self.performance["at"]}
            self._save_state()
        for w in breaches(windows, p["metric"], p.get("floor")):
            key = (w["variant"], w["start_ts"])
            if key in self._reported:
                continue
            self._reported[key] = time.time()
            with self._lock:
                self._save_state()  # before the event: a restart never reports this window again
            self.event({"type": "performance", "app": self.spec["app"], "variant": w["variant"],
                        "subject": p["metric"], "severity": "critical",
                        "message": f"{p['metric']} {w['value']:.4f} below the floor {p['floor']} over {w['rows']} "
                                   f"labelled rows ({w['start_ts']} .. {w['end_ts']})",
                        "details": w, "ts": time.time()})

    # ------------------------------------------------------------------ skew

    def _skew(self) -> None:
        """Compares the rows served since the previous check with the offline store; a feature whose mismatch
        share is above ``max_rate`` raises one skew event naming it."""
        from raymlops.monitoring.alerts.base import make_event

        k = self.spec["skew"]
        since, until = self.state.get("skew_since"), time.time()
        report = _call(k["check"])(*k["check"]["args"], since, until, k["sample"], k["tolerance"])
        with self._lock:
            self.state["skew_since"] = until
            self._save_state()
        over = {n: f for n, f in report["features"].items() if f["rate"] > k["max_rate"]}
        self.skew = {"rows": report["rows"], "since": report.get("since"), "at": until, "max_rate": report["max_rate"],
                     "features": {n: {x: f[x] for x in ("rows", "mismatches", "rate")}
                                  for n, f in report["features"].items()}}
        if over:
            worst = max(over, key=lambda n: over[n]["rate"])
            self.event(make_event(
                "skew", self.spec["app"], f"online/offline skew: {len(over)} feature(s) above {k['max_rate']:.1%}; "
                f"{worst} differs in {over[worst]['mismatches']} of {over[worst]['rows']} served rows "
                f"({over[worst]['rate']:.1%})", subject=worst, details={"features": over, "since": report.get("since")}))

    def refresh_skew(self) -> dict | None:
        """Runs the skew check now (instead of at the next ``every_s``)."""
        if self.spec.get("skew"):
            self._skew()
        return self.skew

    # ------------------------------------------------------------------ retraining

    def _maybe_retrain(self, event: dict) -> None:
        r = self.spec["retrain"]
        with self._lock:
            runs = self.state["retrains"]
            if runs and runs[-1]["status"] in ("submitted", "running", "observing"):
                return
            if runs and time.time() - runs[-1]["started"] < r["min_interval_s"]:
                return
            trigger = {k: event.get(k) for k in ("type", "variant", "subject", "message")}
            record = {"id": f"raymlops-retrain-{self.spec['app']}-{int(time.time())}", "trigger": trigger,
                      "started": time.time(), "status": "submitted", "steps": []}
            runs.append(record)
            self._step(record, "triggered", event["message"])
        try:  # the job id is the record's id, saved before submitting: a restart in between finds the job
            record["job_id"] = _call(r["submit"])(*r["submit"].get("args", ()), record["id"])
            self._step(record, "job_submitted", record["job_id"])
        except Exception as e:
            self._fail(record, f"submit failed: {type(e).__name__}: {e}")

    def _step(self, record: dict, step: str, detail: Any = None, **updates) -> None:
        """Records a step (and the record's new fields) at once, under the lock that ``status`` reads with."""
        with self._lock:
            record.update(updates)
            record["steps"].append({"step": step, "at": time.time(), "detail": detail})
            self.state["retrains"] = self.state["retrains"][-20:]
            self._save_state()
        self.alerts.emit({"type": "retrain", "app": self.spec["app"], "variant": None, "subject": f"{record['id']}:{step}",
                          "severity": "warning", "message": f"{record['id']}: {step}" + (f" ({detail})" if detail else ""),
                          "details": {"retrain": record["id"], "step": step, "detail": detail}, "ts": time.time()})

    def _fail(self, record: dict, why: str) -> None:
        self._step(record, "failed", why, status="failed", error=why)

    def _advance_retrain(self) -> None:
        """Moves the current retrain along: job finished -> challenger registered -> observed -> gate."""
        r = self.spec.get("retrain")
        runs = self.state.get("retrains") or []
        if not r or not runs or runs[-1]["status"] not in ("submitted", "running", "observing"):
            return
        record = runs[-1]
        if record["status"] in ("submitted", "running"):
            try:
                status, info = self._job_status(record["id"], r.get("address"))
                record.pop("status_errors", None)
            except Exception as e:  # the job is unknown (never submitted, or the cluster restarted)
                record["status_errors"] = record.get("status_errors", 0) + 1
                if record["status_errors"] >= STATUS_ERRORS:
                    self._fail(record, f"job {record['id']} status unavailable: {type(e).__name__}: {e}")
                return
            if status in ("PENDING", "RUNNING") and time.time() - record["started"] > r["timeout_s"]:
                self._stop_job(record["id"], r.get("address"))
                return self._fail(record, f"job {record['id']} still {status} after {r['timeout_s']:g} s: stopped")
            if status in ("PENDING", "RUNNING"):
                if record["status"] != "running" and status == "RUNNING":
                    self._step(record, "job_running", status="running")
                return
            if status != "SUCCEEDED":
                return self._fail(record, f"job {record['id']} {status}: {info}")
            name, version, run_id = _challenger(info)
            if version is None:
                return self._fail(record, f"job {record['id']} succeeded but printed no 'challenger:' line")
            self._step(record, "challenger_registered", info, version=version, run_id=run_id,
                       model=f"{name}/{version}")
            self._step(record, f"challenger_{r['deploy']}", f"observing for {r['observe_s']:g} s",
                       status="observing", observe_until=time.time() + r["observe_s"])
            return
        # Canary events name the model as serving does: NAME/VERSION when it follows the registry.
        rolled = self.state.get("canary_rollbacks", {})
        rolled_back = rolled.get(record.get("model")) or rolled.get(record.get("run_id"))
        if record["status"] == "observing" and r["deploy"] == "canary" and rolled_back:
            why = f"the canary of {record.get('model')} (run {record['run_id']}) rolled back: {rolled_back}"
            return self._step(record, "kept", why, status="kept",
                              outcome={"promoted": False, "version": record["version"], "reason": why})
        if record["status"] == "observing" and time.time() >= record["observe_until"]:
            try:
                outcome = _call(r["promote"])(*r["promote"].get("args", ()), record["version"])
            except Exception as e:
                return self._fail(record, f"gate failed: {type(e).__name__}: {e}")
            status = "promoted" if outcome["promoted"] else "kept"
            self._step(record, status, outcome.get("reason"), status=status, outcome=outcome)

    @staticmethod
    def _job_status(job_id: str, address: str | None) -> tuple[str, str]:
        from raymlops.data.ray_env import job_client

        client = job_client(address)
        info = client.get_job_info(job_id)
        detail = info.message or ""
        if info.status.value == "SUCCEEDED":
            tail = [ln for ln in client.get_job_logs(job_id).splitlines() if ln.startswith("challenger:")]
            detail = tail[-1].removeprefix("challenger:").strip() if tail else detail
        return info.status.value, detail

    @staticmethod
    def _stop_job(job_id: str, address: str | None) -> None:
        from raymlops.data.ray_env import job_client

        try:
            job_client(address).stop_job(job_id)
        except Exception as e:
            log.warning("could not stop retrain job %s: %s", job_id, e)

    # ------------------------------------------------------------------ loop and reads

    def _loop(self) -> None:
        while not self._closed.wait(TICK_S):
            for name, fn in (("canary events", self._canary_events), ("retrain", self._advance_retrain)):
                try:
                    fn()
                except Exception:
                    log.warning("app monitor %s: %s", name, traceback.format_exc(limit=3))
            for name, fn in (("performance", self._performance), ("skew", self._skew)):
                section = self.spec.get(name)
                if section and time.time() >= self._next[name]:
                    self._next[name] = time.time() + section["every_s"]
                    try:
                        fn()
                    except Exception:
                        log.warning("app monitor %s: %s", name, traceback.format_exc(limit=3))

    def refresh_performance(self) -> dict | None:
        """Joins the labels now (instead of at the next ``every_s``)."""
        if self.spec.get("performance"):
            self._performance()
        return self.performance

    def status(self, events: int = 50) -> dict:
        with self._lock:
            return {"app": self.spec["app"], "events": list(self.recent)[-events:] if events > 0 else [],
                    "alerts": self.alerts.stats(),
                    "performance": self.performance, "skew": self.skew,
                    "retrains": copy.deepcopy(self.state.get("retrains", []))}  # a snapshot, not live records

    def flush_alerts(self, timeout: float = 10.0) -> bool:
        return self.alerts.flush(timeout)


def _challenger(line: str) -> tuple[str | None, int | None, str | None]:
    """(name, version, run id) from the retrain job's 'challenger: models:/NAME/VERSION (run RUN_ID, ...)'
    line."""
    import re

    m = re.match(r"models:/([^/\s]+)/(\d+)(?:\s*\(run ([^,\s)]+))?", line or "")
    return (m.group(1), int(m.group(2)), m.group(3)) if m else (None, None, None)


def app_monitor_name(app: str) -> str:
    return f"raymlops-appmonitor-{app}"


def start_app_monitor_from(path: str):
    """Starts the app monitor from a spec file: an exported Serve config names the file, so alert secrets
    (webhook URLs, headers) stay in storage rather than in the exported file."""
    return start_app_monitor(json.loads(read_file(path)))


def start_app_monitor(spec: dict):
    """Starts (or replaces) the app's named, detached monitor actor; it restarts when its process dies."""
    import ray

    name = app_monitor_name(spec["app"])
    _kill(name, spec["namespace"])
    cls = ray.remote(num_cpus=0, max_concurrency=8, max_restarts=-1)(AppMonitor)
    handle = cls.options(name=name, namespace=spec["namespace"], lifetime="detached").remote(spec)
    ray.get(handle.status.remote(0))
    return handle
