"""Variant weights and the canary policy: steps the canary's share up while it stays healthy and rolls it
back on a breach. Plain Python (no Ray): the controller actor drives it and persists its state."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

MAX_SAMPLES = 20_000  # latest requests kept per interval (for the p99 and the recent window)
RECENT = 100  # a breach is also judged over the latest max(RECENT, min_requests) requests
MAX_HISTORY = 200  # canary events kept in the state (events.jsonl keeps them all)


def spread(base: dict[str, float], canary: str | None, percent: float | None) -> dict[str, float]:
    """Weights (percent of traffic) with ``canary`` at ``percent`` and the others sharing the rest in
    proportion to their configured weights."""
    if canary is None or percent is None:
        total = sum(base.values())
        return {k: 100.0 * w / total for k, w in base.items()}
    others = {k: w for k, w in base.items() if k != canary}
    total = sum(others.values())
    out = {k: (100.0 - percent) * w / total if total else 0.0 for k, w in others.items()}
    out[canary] = float(percent)
    return {k: out[k] for k in base}


class Window:
    """Requests of one variant over the current interval: counts, and the latest samples (latency ms, error)."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.samples: deque = deque(maxlen=MAX_SAMPLES)

    def add(self, stats: dict, model: str | None = None) -> None:
        """Adds a router's samples, (latency_ms, error[, model]); with ``model``, only the samples of that
        model version or of an unknown one (a replica that died before answering)."""
        for latency_ms, error, *answered in stats.get("samples", ()):
            if model is not None and answered and answered[0] is not None and answered[0] != model:
                continue
            self.requests += 1
            self.errors += int(error)
            self.samples.append((float(latency_ms), int(error)))

    def summary(self, last: int | None = None) -> dict:
        """Counts and p99 over the interval, or over the ``last`` requests."""
        sample = list(self.samples)[-last:] if last else list(self.samples)
        n = len(sample) if last else self.requests
        errors = sum(e for _, e in sample) if last else self.errors
        p99 = float(np.percentile([ms for ms, _ in sample], 99)) if sample else None
        return {"requests": n, "errors": errors, "error_rate": errors / n if n else None, "p99_ms": p99}


class Traffic:
    """The live weights of one app's variants plus its canary's progress.

    ``state`` is JSON-serialisable and is all that must survive a restart: ``{"weights", "canary":
    {"variant", "model", "step", "percent", "status", "step_started", "reason"}, "history", "version"}``.
    Canary statuses: ``running``, ``paused`` (by an operator: weights kept, not judged), ``rolled_back``
    (weight 0, reason recorded) and ``complete`` (100%).
    """

    def __init__(
        self,
        base: dict[str, float],
        canary: dict | None,
        state: dict | None = None,
        now: float | None = None,
        model: str | None = None,
    ):
        self.base, self.cfg = dict(base), canary
        self.windows: dict[str, Window] = {}
        if state is not None:
            self.state = state
            return
        self.state = {"weights": spread(base, None, None), "canary": None, "history": [], "version": 1}
        if canary is not None:
            self._start(model, time.time() if now is None else now)

    def _start(self, model: str | None, now: float, reason: str | None = None) -> dict:
        """(Re)starts the canary schedule at its first step; ``model`` is the canary variant's model version."""
        pct = self.cfg["steps"][0]
        self.state["canary"] = {
            "variant": self.cfg["variant"],
            "step": 0,
            "percent": pct,
            "status": "running",
            "step_started": now,
            "reason": None,
            "model": model,
        }
        self.state["weights"] = spread(self.base, self.cfg["variant"], pct)
        self.windows = {}
        return self._record("start", now, reason=reason)

    def restart(self, variant: str, model: str, now: float | None = None) -> list[dict]:
        """The canary variant's model was swapped in place (its registry alias moved): the new model starts
        the schedule afresh, whatever the old one reached. Returns the 'start' event, or [] when ``variant``
        is not the canary or already runs ``model``."""
        c = self.state["canary"]
        if c is None or c["variant"] != variant or c.get("model") == model:
            return []
        old = c.get("model")
        self.state["version"] += 1
        return [
            self._start(
                model, time.time() if now is None else now, reason=f"model {old} -> {model}: the canary starts again"
            )
        ]

    # ------------------------------------------------------------------ reading

    @property
    def weights(self) -> dict[str, float]:
        return self.state["weights"]

    @property
    def version(self) -> int:
        return self.state["version"]

    # ------------------------------------------------------------------ updates

    def observe(self, stats: dict[str, dict], now: float | None = None) -> list[dict]:
        """Adds per-variant counts ({variant: {requests, errors, latencies_ms}}) and re-evaluates;
        returns the events this caused (step, hold, rollback, complete)."""
        c = self.state["canary"]
        if c is None or c["status"] != "running":
            return []
        for name, s in stats.items():  # the canary is judged on its current model's requests only
            self.windows.setdefault(name, Window()).add(s, c.get("model") if name == c["variant"] else None)
        return self.evaluate(now)

    def evaluate(self, now: float | None = None) -> list[dict]:
        """Rolls back on a breach as soon as the interval has enough canary requests; steps up (or holds,
        when traffic was too thin to judge) once the interval is over."""
        c = self.state["canary"]
        if c is None or c["status"] != "running":
            return []
        now = time.time() if now is None else now
        rules = self.cfg["rollback_on"]
        win = self.windows.get(c["variant"], Window())
        s = win.summary()
        # Judged over the whole interval and over the latest requests, so a canary that breaks late in a
        # long, healthy interval is caught too.
        for judged in (s, win.summary(last=max(RECENT, rules["min_requests"]))):
            why = self._breach(judged, rules) if judged["requests"] >= rules["min_requests"] else None
            if why:
                return [self._rollback(why, judged, now)]
        if now - c["step_started"] < self.cfg["interval_s"]:
            return []
        if s["requests"] < rules["min_requests"]:
            c["step_started"] = now  # judge again after another interval, keeping what was seen so far
            return [
                self._record(
                    "hold",
                    now,
                    s,
                    f"only {s['requests']} canary requests; {rules['min_requests']} needed to judge the step",
                )
            ]
        self.windows = {}
        steps = self.cfg["steps"]
        if c["step"] + 1 >= len(steps):
            c["status"] = "complete"
            return [self._record("complete", now, s)]
        c["step"] += 1
        c["percent"] = steps[c["step"]]
        c["step_started"] = now
        self.state["weights"] = spread(self.base, c["variant"], c["percent"])
        self.state["version"] += 1
        return [self._record("step", now, s)]

    def operate(self, action: str, by: str, reason: str | None = None, now: float | None = None) -> list[dict]:
        """An operator's ``pause``, ``resume`` or ``rollback`` of the canary (the console, `raymlops serving
        canary`); [] when it does not apply to the canary's status. A paused canary keeps its weights and is
        neither judged nor stepped; resuming starts its step's interval afresh."""
        c = self.state["canary"]
        if c is None:
            return []
        now = time.time() if now is None else now
        why = f"{action} by {by}" + (f": {reason}" if reason else "")
        if action == "pause" and c["status"] == "running":
            c["status"], c["reason"] = "paused", why
            self.state["version"] += 1
            return [self._record("pause", now, reason=why)]
        if action == "resume" and c["status"] == "paused":
            c["status"], c["reason"], c["step_started"] = "running", None, now
            self.windows = {}
            self.state["version"] += 1
            return [self._record("resume", now, reason=why)]
        if action == "rollback" and c["status"] in ("running", "paused"):
            return [self._rollback(why, None, now)]
        return []

    @staticmethod
    def _breach(s: dict, rules: dict) -> str | None:
        if (
            rules.get("error_rate") is not None
            and s["error_rate"] is not None
            and s["error_rate"] > rules["error_rate"]
        ):
            return f"error rate {s['error_rate']:.3f} > {rules['error_rate']} ({s['errors']}/{s['requests']})"
        if rules.get("p99_ms") is not None and s["p99_ms"] is not None and s["p99_ms"] > rules["p99_ms"]:
            return f"p99 latency {s['p99_ms']:.1f} ms > {rules['p99_ms']} ms over {s['requests']} requests"
        return None

    def _rollback(self, why: str, s: dict, now: float) -> dict:
        c = self.state["canary"]
        c["status"], c["reason"], c["percent"] = "rolled_back", why, 0.0
        self.state["weights"] = spread(self.base, c["variant"], 0.0)
        self.state["version"] += 1
        self.windows = {}
        return self._record("rollback", now, s, why)

    def _record(self, event: str, now: float, stats: dict | None = None, reason: str | None = None) -> dict:
        c = self.state["canary"] or {}
        entry: dict[str, Any] = {
            "at": now,
            "event": event,
            "variant": c.get("variant"),
            "model": c.get("model"),
            "step": c.get("step"),
            "percent": c.get("percent"),
            "weights": dict(self.state["weights"]),
        }
        if stats is not None:
            entry["stats"] = stats
        if reason is not None:
            entry["reason"] = reason
        self.state["history"] = (self.state["history"] + [entry])[-MAX_HISTORY:]
        return entry
