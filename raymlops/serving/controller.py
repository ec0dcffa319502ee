"""The traffic controller: one named, detached Ray actor per Serve app that owns the variant weights.

Router replicas call ``sync`` a few times a second: they hand over their per-variant counts and get the
current weights back. The controller runs the canary policy (`traffic.Traffic`), writes its state to
``<state_dir>/traffic.json`` (atomically) after every change and appends each canary event to
``events.jsonl``, so a restarted controller, or router, carries on where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time

from raymlops.config.serving import CanaryConfig
from raymlops.contracts.events import CanaryEvent
from raymlops.contracts.traffic import OperatorRequest, TrafficStatus, TrafficView, VariantSamples
from raymlops.serving.traffic import Traffic
from raymlops.storage.files import append_line, join, read_file, read_lines, tail_lines, write_file

STATE_FILE = "traffic.json"
EVENTS_FILE = "events.jsonl"
REQUESTS_FILE = "requests.jsonl"  # operators' pause / resume / rollback, appended by `request_action`
REQUEST_TTL_S = 300  # a request the controller first sees later than this after it was made is dropped
TICK_S = 0.25

log = logging.getLogger("ray.serve")


def controller_name(app: str) -> str:
    return f"raymlops-traffic-{app}"


def canary_plan(canary: CanaryConfig | dict | None) -> dict | None:
    """The canary section as the plan holds it, in one canonical form whichever way it came: a config section
    keeps an unset float default as written (``interval_s: 60``), while the same section read back from an
    exported file has it validated (``60.0``); validating the dump makes both ``60.0``, so a plan redeployed
    the other way fingerprints the same and its canary keeps its state."""
    if canary is None:
        return None
    return CanaryConfig.model_validate(CanaryConfig.model_validate(canary).model_dump()).model_dump()


def plan_fingerprint(base: dict, canary: dict | None, models: dict | None = None) -> str:
    """Identifies a traffic plan: the weights, the canary schedule and the model version of each variant."""
    return hashlib.sha256(json.dumps([base, canary, models], sort_keys=True).encode()).hexdigest()[:16]


def read_state(state_dir: str | os.PathLike) -> dict | None:
    """The persisted traffic state of an app, or None if it never ran."""
    path = join(state_dir, STATE_FILE)
    try:
        return json.loads(read_file(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # unreadable: start afresh rather than refuse to serve
        log.warning("traffic state %s is unreadable (%s); starting afresh", path, e)
        return None


def read_events(state_dir: str | os.PathLike) -> list[dict]:
    out = []
    for line in read_lines(join(state_dir, EVENTS_FILE)):
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a crash mid-append
            continue
    return out


class TrafficController:
    """Owns an app's weights; resumes from its state file when the plan (weights, canary) is unchanged."""

    def __init__(self, app: str, state_dir: str):
        self.app, self.dir = app, str(state_dir)  # a path or URI in storage: this actor is its one writer
        self._lock = threading.Lock()
        self.traffic: Traffic | None = None
        self.fingerprint: str | None = None
        self.models: dict | None = None  # each variant's model version in the plan
        saved = read_state(self.dir)
        self.cursor = (saved or {}).get("requests_cursor")
        if self.cursor is None:  # a new app: requests left by an earlier deployment of the name are not ours
            _, self.cursor = tail_lines(join(self.dir, REQUESTS_FILE), None)
            if self.cursor is None:  # no file yet (local): every request from now on is ours, from its start
                self.cursor = 0
        try:
            if saved is not None:  # a restart: the router's configure() confirms or replaces the plan
                self.traffic = Traffic(saved["base"], saved["canary_config"], saved["state"])
                self.fingerprint, self.models = saved["fingerprint"], saved.get("models")
        except (KeyError, TypeError) as e:
            log.warning("traffic state in %s is incomplete (%s); starting afresh", self.dir, e)
        threading.Thread(target=self._tick, daemon=True, name="traffic-tick").start()

    def configure(
        self, base: dict[str, float], canary: CanaryConfig | dict | None, models: dict[str, str] | None = None
    ) -> TrafficView:
        """Sets the plan; keeps the current state if the plan (including each variant's model version) is
        the one already running, so redeploying the same thing does not restart a canary."""
        canary = canary_plan(canary)
        fp = plan_fingerprint(base, canary, models)
        with self._lock:
            if fp != self.fingerprint and self._swapped_plan(base, canary, models):
                self.fingerprint, self.models = fp, dict(models or {})  # same plan: the canary keeps its state
                self._save([])
            elif fp != self.fingerprint or self.traffic is None:
                model = (models or {}).get(canary["variant"]) if canary else None
                self.traffic, self.fingerprint = Traffic(base, canary, model=model), fp
                self.models = dict(models or {})
                self._save(self.traffic.state["history"][-1:])
            return self._view()

    def _swapped_plan(self, base: dict, canary: dict | None, models: dict | None) -> bool:
        """The running plan after its canary swapped models (`model_swapped`): a redeploy that now resolves the
        canary's alias to the model it already runs, or already rolled back, does not start it again."""
        t = self.traffic
        c = t.state["canary"] if t is not None else None
        if c is None or canary is None or self.models is None or t.base != base or t.cfg != canary:
            return False
        return {**self.models, c["variant"]: c.get("model")} == (models or {})

    def model_swapped(self, variant: str, model: str) -> TrafficView:
        """A replica of ``variant`` swapped to ``model`` (its alias moved). A canary variant's new model starts
        the canary afresh; every replica reports the swap, only the first one restarts it."""
        with self._lock:
            events = self.traffic.restart(variant, model) if self.traffic else []
            if events:
                self._save(events)
            return self._view()

    def sync(self, stats: dict[str, VariantSamples] | dict[str, dict] | None = None) -> TrafficView:
        """Takes a router's samples since its last sync; returns the view."""
        with self._lock:
            if self.traffic is None:
                return self._view()
            if stats:
                events = self.traffic.observe(
                    {k: VariantSamples.model_validate(v).model_dump() for k, v in stats.items()}
                )
                if events:
                    self._save(events)
            return self._view()

    def status(self) -> TrafficStatus:
        with self._lock:
            view = self._view().model_dump()
            if self.traffic is None:
                return TrafficStatus(**view)
            return TrafficStatus(
                **view,
                history=list(self.traffic.state["history"]),
                window={k: w.summary() for k, w in self.traffic.windows.items()},
            )

    def _view(self) -> TrafficView:
        if self.traffic is None:
            return TrafficView(version=0)
        s = self.traffic.state
        return TrafficView(
            version=s["version"], weights=dict(s["weights"]), canary=s["canary"] or None, plan=self.fingerprint
        )

    def _tick(self) -> None:
        """Steps the canary on schedule even when no router reports."""
        while True:
            time.sleep(TICK_S)
            try:
                with self._lock:
                    events = self._operator_requests() + (self.traffic.evaluate() if self.traffic else [])
                    if events:
                        self._save(events)
            except Exception:  # never let the ticker die
                log.exception("traffic controller tick failed")

    def _operator_requests(self) -> list[dict]:
        """Applies the pause / resume / rollback requests appended since the last look (in order, once: the
        cursor is saved with the state); one that does not apply is recorded as ignored, with why."""
        lines, cursor = tail_lines(join(self.dir, REQUESTS_FILE), self.cursor)
        if not lines:
            return []
        self.cursor, events = cursor, []
        for line in lines:
            try:
                r = OperatorRequest.model_validate_json(line)
            except ValueError:  # a torn line, or not a request
                continue
            action, by = r.action, r.by or "unknown"
            c = (self.traffic.state["canary"] if self.traffic else None) or {}
            if time.time() - r.ts > REQUEST_TTL_S:  # checked first: a stale request changes nothing
                got, why = [], f"{action} requested by {by} more than {REQUEST_TTL_S} s ago"
            else:
                got = self.traffic.operate(action, by, r.reason) if self.traffic else []
                why = f"{action} by {by} does not apply to " + (
                    f"a canary that is {c['status']}" if c else "an app without a canary"
                )
            events += got or [{"at": time.time(), "event": "ignored", "request": r.id, "reason": why}]
        if self.traffic is None:  # nothing to save the cursor with: record why, and move on
            for e in events:
                append_line(join(self.dir, EVENTS_FILE), self._event_line(e), compact=False)
            return []
        return events  # saved by the caller, with the cursor

    def _event_line(self, e: dict) -> dict:
        """A canary event as the app monitor and the console read it (validated here, by its one writer)."""
        return CanaryEvent(type="canary", app=self.app, **e).model_dump(mode="json", exclude_unset=True)

    def _save(self, events: list[dict]) -> None:
        t = self.traffic
        doc = {
            "app": self.app,
            "fingerprint": self.fingerprint,
            "models": self.models,
            "base": t.base,
            "canary_config": t.cfg,
            "state": t.state,
            "requests_cursor": self.cursor,
            "saved_at": time.time(),
        }
        write_file(join(self.dir, STATE_FILE), json.dumps(doc).encode(), durable=True)
        if events:
            for e in events:  # tailed by the app monitor: never folded (compact=False)
                append_line(join(self.dir, EVENTS_FILE), self._event_line(e), compact=False)
            for e in events:
                (log.warning if e["event"] == "rollback" else log.info)(
                    "canary %s %s: %s", e["event"], e.get("variant"), e.get("reason") or e.get("weights")
                )


def request_action(state_dir: str | os.PathLike, action: str, by: str, reason: str | None = None) -> dict:
    """Asks the app's controller to ``pause``, ``resume`` or ``rollback`` its canary: an entry appended to
    ``requests.jsonl`` in its state folder, applied (and recorded in the canary history) at its next tick,
    wherever the controller runs. The request's id comes back."""
    entry = OperatorRequest.new(action, by, reason).model_dump(mode="json")  # type: ignore[arg-type]
    append_line(join(state_dir, REQUESTS_FILE), entry, compact=False)
    return entry


def get_or_start(app: str, namespace: str, state_dir: str):
    """The app's controller actor, started (detached, restarted by Ray if it dies) when missing."""
    import ray

    cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=8)(TrafficController)
    return cls.options(name=controller_name(app), namespace=namespace, lifetime="detached", get_if_exists=True).remote(
        app, state_dir
    )
