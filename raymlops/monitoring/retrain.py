"""Drift-triggered retraining, as a state machine over `RetrainRun` records: a trigger submits the retrain
job; the job's `RetrainResult` (a JSON record it writes in storage) registers the challenger; the challenger
is observed (shadow or canary) for ``observe_s``; then the registry gate promotes it or keeps the champion.

SUBMITTED -> RUNNING -> OBSERVING -> PROMOTED | KEPT, and FAILED from any unfinished state."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from raymlops.contracts.events import Event, EventKind
from raymlops.contracts.monitoring import PromotionOutcome, RetrainResult, RetrainRun, RetrainSpec, RetrainStatus
from raymlops.monitoring.hub import StateFile
from raymlops.storage.files import join, read_file

log = logging.getLogger("raymlops.monitoring")

STATUS_ERRORS = 30  # consecutive failed job-status reads before a retrain is failed
KEEP = 20  # retrain records kept in the state file
RESULTS = "retrains"  # the retrain jobs' result records, under the app monitor's state dir
Status = RetrainStatus


def job_status(job_id: str, address: str | None) -> tuple[str, str]:
    """(status, message) of a Ray job."""
    from raymlops.data.ray_env import job_client

    info = job_client(address).get_job_info(job_id)
    return info.status.value, info.message or ""


def stop_job(job_id: str, address: str | None) -> None:
    from raymlops.data.ray_env import job_client

    try:
        job_client(address).stop_job(job_id)
    except Exception as e:
        log.warning("could not stop retrain job %s: %s", job_id, e)


class RetrainLoop:
    """``spec``: the app's retrain section; ``state``: the app monitor's state file (records under
    ``retrains``); ``alert``: sends a retrain-step event to the alert sinks."""

    def __init__(self, app: str, spec: RetrainSpec, state_dir: str, state: StateFile, alert: Callable[[Event], None]):
        self.app, self.spec, self.state, self.alert = app, spec, state, alert
        self.results_dir = join(state_dir, RESULTS)
        self.runs: list[RetrainRun] = []
        for raw in state.doc.get("retrains") or []:
            try:
                self.runs.append(RetrainRun.model_validate(raw))
            except ValidationError as e:  # a record from an incompatible version: dropped, said once
                log.warning("app monitor %s: dropping an unreadable retrain record: %s", app, e)

    def records(self) -> list[dict[str, Any]]:
        """The records in their JSON shape (a snapshot)."""
        with self.state.lock:
            return copy.deepcopy([r.model_dump(mode="json") for r in self.runs])

    def _save(self) -> None:
        with self.state.lock:
            self.runs = self.runs[-KEEP:]
            self.state.doc["retrains"] = [r.model_dump(mode="json") for r in self.runs]
            self.state.save()

    def _current(self) -> RetrainRun | None:
        return self.runs[-1] if self.runs else None

    # ------------------------------------------------------------------ trigger

    def maybe_start(self, event: Event) -> None:
        """Starts a retrain on an event the policy names, unless one is running or the last one started
        less than ``min_interval_s`` ago."""
        if event.type.value not in self.spec.on:
            return
        with self.state.lock:
            last = self._current()
            if last is not None and (last.status.active or time.time() - last.started < self.spec.min_interval_s):
                return
            rid = f"raymlops-retrain-{self.app}-{int(time.time())}"
            run = RetrainRun(
                id=rid,
                started=time.time(),
                status=Status.SUBMITTED,
                result_path=join(self.results_dir, f"{rid}.json"),
                trigger={
                    "type": event.type.value,
                    "variant": event.variant,
                    "subject": event.subject,
                    "message": event.message,
                },
            )
            self.runs.append(run)
            self._step(run, "triggered", event.message)
        try:  # the job id is the record's id, saved before submitting: a restart in between finds the job
            job_id = self.spec.submit(run.id, run.result_path)
            self._step(run, "job_submitted", job_id, job_id=job_id)
        except Exception as e:
            self._fail(run, f"submit failed: {type(e).__name__}: {e}")

    def _step(self, run: RetrainRun, step: str, detail: Any = None, **updates: Any) -> None:
        """Records a step (and the record's new fields) at once, under the lock that ``records`` reads with."""
        from raymlops.contracts.monitoring import RetrainStep

        with self.state.lock:
            for k, v in updates.items():
                setattr(run, k, v)
            run.steps.append(RetrainStep(step=step, at=time.time(), detail=detail))
            self._save()
        self.alert(
            Event(
                type=EventKind.RETRAIN,
                app=self.app,
                subject=f"{run.id}:{step}",
                message=f"{run.id}: {step}" + (f" ({detail})" if detail else ""),
                details={"retrain": run.id, "step": step, "detail": detail},
            )
        )

    def _fail(self, run: RetrainRun, why: str) -> None:
        self._step(run, "failed", why, status=Status.FAILED, error=why)

    # ------------------------------------------------------------------ advance

    def advance(self, canary_rollbacks: dict[str, str]) -> None:
        """Moves the current retrain along: job finished -> challenger registered -> observed -> gate.
        ``canary_rollbacks``: {model: why} of the canaries that rolled back."""
        run = self._current()
        if run is None or not run.status.active:
            return
        if run.status in (Status.SUBMITTED, Status.RUNNING):
            return self._follow_job(run)
        # Canary events name the model as serving does: NAME/VERSION when it follows the registry.
        rolled_back = canary_rollbacks.get(run.model or "") or canary_rollbacks.get(run.run_id or "")
        if self.spec.deploy == "canary" and rolled_back:
            why = f"the canary of {run.model} (run {run.run_id}) rolled back: {rolled_back}"
            return self._step(
                run,
                "kept",
                why,
                status=Status.KEPT,
                outcome=PromotionOutcome(promoted=False, version=run.version or 0, reason=why),
            )
        if run.observe_until is not None and time.time() >= run.observe_until:
            try:
                outcome = PromotionOutcome.model_validate(self.spec.promote(run.version))
            except Exception as e:
                return self._fail(run, f"gate failed: {type(e).__name__}: {e}")
            status = Status.PROMOTED if outcome.promoted else Status.KEPT
            self._step(run, status.value, outcome.reason, status=status, outcome=outcome)

    def _follow_job(self, run: RetrainRun) -> None:
        address = self.spec.address
        try:
            status, info = job_status(run.id, address)
            run.status_errors = 0
        except Exception as e:  # the job is unknown (never submitted, or the cluster restarted)
            run.status_errors += 1
            if run.status_errors >= STATUS_ERRORS:
                self._fail(run, f"job {run.id} status unavailable: {type(e).__name__}: {e}")
            return
        if status in ("PENDING", "RUNNING") and time.time() - run.started > self.spec.timeout_s:
            stop_job(run.id, address)
            return self._fail(run, f"job {run.id} still {status} after {self.spec.timeout_s:g} s: stopped")
        if status in ("PENDING", "RUNNING"):
            if run.status != Status.RUNNING and status == "RUNNING":
                self._step(run, "job_running", status=Status.RUNNING)
            return
        if status != "SUCCEEDED":
            return self._fail(run, f"job {run.id} {status}: {info}")
        if run.result_path is None:  # submitted by a version that read the job's logs instead
            return self._fail(
                run,
                f"job {run.id} succeeded, but it was submitted before retrain jobs wrote result records: its "
                "challenger (if it registered one) holds @challenger; promote it with `raymlops models promote`",
            )
        try:
            result = RetrainResult.model_validate_json(read_file(run.result_path))
        except (OSError, ValueError) as e:
            return self._fail(
                run,
                f"job {run.id} succeeded but wrote no readable result at {run.result_path}: {type(e).__name__}: {e}",
            )
        model = f"{result.model}/{result.version}"
        self._step(
            run,
            "challenger_registered",
            f"models:/{model} (run {result.run_id}, gate {'passed' if result.gate_passed else 'failed'})",
            version=result.version,
            run_id=result.run_id,
            model=model,
        )
        self._step(
            run,
            f"challenger_{self.spec.deploy}",
            f"observing for {self.spec.observe_s:g} s",
            status=Status.OBSERVING,
            observe_until=time.time() + self.spec.observe_s,
        )
