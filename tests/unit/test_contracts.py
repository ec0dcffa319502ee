"""The typed contracts between processes: built by the pipeline, validated on arrival, JSON round-trips."""

from __future__ import annotations

import json
import typing

import pytest
from pydantic import ValidationError

from raymlops.config.monitoring import DriftConfig
from raymlops.config.serving import BatchingConfig, CanaryConfig
from raymlops.contracts import Call, CanaryEvent, Event, EventKind, Watch, import_object, make_event
from raymlops.contracts.monitoring import (
    AppMonitorSpec,
    MonitorSpec,
    RetrainResult,
    RetrainRun,
    RetrainSpec,
    RetrainStatus,
)
from raymlops.contracts.serving import AppSpec, FeaturesSpec, ModelEntry, ReplicaSpec

pytestmark = pytest.mark.unit


def _app(**over) -> AppSpec:
    base = dict(
        app="a",
        namespace="ns",
        state_dir="/tmp/s",
        max_batch_rows=100,
        request_timeout_s=30,
        router_replicas=1,
        replica=ReplicaSpec(num_replicas=1, num_cpus=1, batching=BatchingConfig()),
        models=[
            ModelEntry(
                name="v",
                role="variant",
                weight=1,
                model_version="m/1",
                run_dir=Call(call="raymlops.registry.models:bundle_for", args=["models:/m/1", "u"]),
                watch=Watch(call="raymlops.registry.models:pinned_for", args=["x"], every=5),
            )
        ],
        canary=CanaryConfig(variant="v", steps=[10, 100]),
    )
    return AppSpec(**{**base, **over})


def test_event_kinds_are_the_configs_event_names():
    from raymlops.config.monitoring import Event as ConfigEvent

    assert {k.value for k in EventKind} == set(typing.get_args(ConfigEvent))


def test_an_app_spec_survives_an_exported_files_json_round_trip():
    spec = _app()
    again = AppSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json"))))
    assert again == spec
    assert isinstance(again.models[0].run_dir, Call) and isinstance(again.models[0].watch, Watch)
    assert again.canary.steps == [10, 100] and again.replica.batching.max_batch_size == 64


def test_unknown_keys_and_bad_values_are_refused_on_arrival_naming_the_field():
    doc = _app().model_dump(mode="json")
    with pytest.raises(ValidationError, match="surprise"):
        AppSpec.model_validate({**doc, "surprise": 1})
    with pytest.raises(ValidationError, match="max_batch_rows"):
        AppSpec.model_validate({**doc, "max_batch_rows": 0})
    with pytest.raises(ValidationError, match="first model must be a variant"):
        AppSpec.model_validate({**doc, "models": [{**doc["models"][0], "role": "shadow"}]})


def test_features_carry_exactly_one_config_source_and_dump_only_it():
    with pytest.raises(ValidationError, match="exactly one"):
        FeaturesSpec(refs=["v:f"])
    dumped = FeaturesSpec(refs=["v:f"], config_file="/s/features.json").model_dump(mode="json")
    assert dumped == {"refs": ["v:f"], "config_file": "/s/features.json"}


def test_calls_import_by_dotted_path_and_refuse_other_forms():
    assert Call(call="json:dumps", args=[[1]])() == "[1]"
    assert Call(call="os.path:join", args=["a"])("b") == "a/b"
    assert import_object("json.dumps") is json.dumps is import_object("json:dumps")
    with pytest.raises(ValidationError, match="module:function"):
        Call(call="dumps")
    with pytest.raises(ValueError, match="module:name"):
        import_object("dumps")


def test_events_validate_their_kind_and_severity():
    e = Event.model_validate(make_event("drift", "app", "moved", variant="v", subject="plan"))
    assert e.type is EventKind.DRIFT and e.to_dict()["type"] == "drift" and e.to_dict()["severity"] == "warning"
    with pytest.raises(ValueError):
        make_event("nope", "app", "x")
    with pytest.raises(ValidationError):
        Event.model_validate({**e.to_dict(), "severity": "fatal"})


def test_canary_events_read_what_the_controller_writes():
    line = CanaryEvent(
        app="a",
        at=1.0,
        event="rollback",
        variant="c",
        model="m/2",
        step=1,
        percent=10.0,
        weights={"c": 0.0, "v": 1.0},
        reason="p99",
    ).model_dump_json(exclude_none=True)
    assert CanaryEvent.model_validate_json(line).model == "m/2"
    with pytest.raises(ValidationError):
        CanaryEvent.model_validate({"event": "exploded"})


def test_monitor_specs_compare_equal_across_the_export_and_keep_their_sections_typed():
    spec = MonitorSpec(
        app="a",
        variant="v",
        namespace="ns",
        run_dir="/runs/r",
        model_version="r",
        state_dir="/s",
        drift=DriftConfig(window=200),
        history=10,
        checkpoint_s=1,
    )
    again = MonitorSpec.model_validate(json.loads(spec.model_dump_json()))
    assert again == spec and again.drift.window == 200 and again.rotation() == (None, 5)
    assert MonitorSpec.model_validate({**spec.model_dump(), "history_rotate_mb": 2}).rotation() == (2 * 1024 * 1024, 5)


def test_the_app_monitor_spec_takes_the_config_sections_with_their_calls():
    spec = AppMonitorSpec.model_validate(
        {
            "app": "a",
            "namespace": "ns",
            "state_dir": "/s",
            "alert_log": "/s/alerts.jsonl",
            "alerts": [{"type": "log", "on": ["drift"]}],
            "retrain": {"on": ["drift"], "submit": {"call": "m:submit", "args": ["c"]}, "promote": {"call": "m:p"}},
        }
    )
    assert isinstance(spec.retrain, RetrainSpec) and spec.retrain.min_interval_s == 3600
    assert spec.alerts[0].type == "log"
    with pytest.raises(ValidationError, match="submit"):
        AppMonitorSpec.model_validate(
            {
                "app": "a",
                "namespace": "ns",
                "state_dir": "/s",
                "alert_log": "/s/a",
                "retrain": {"on": ["drift"], "promote": {"call": "m:p"}},
            }
        )


def test_retrain_records_keep_their_status_as_an_enum_and_their_json_shape():
    run = RetrainRun(id="r1", trigger={"type": "drift"}, started=1.0, status="submitted")
    assert run.status is RetrainStatus.SUBMITTED and run.status.active
    doc = run.model_dump(mode="json")
    assert doc["status"] == "submitted" and RetrainRun.model_validate(doc) == run
    assert not RetrainStatus.KEPT.active
    result = RetrainResult(model="churn", version=3, run_id="abc", gate_passed=True)
    assert RetrainResult.model_validate_json(result.model_dump_json()) == result
    with pytest.raises(ValidationError):
        RetrainResult.model_validate({"model": "churn", "version": 0, "run_id": "abc", "gate_passed": True})
    with pytest.raises(ValidationError, match="status"):  # a record without one is unreadable, never "active"
        RetrainRun.model_validate({"id": "r2", "trigger": {}, "started": 1.0})


def test_a_plan_fingerprints_the_same_deployed_in_process_or_from_an_exported_file():
    """The canary section's unset float defaults (interval_s: 60) come back validated (60.0) from an exported
    file: the plan must not change, or a redeploy the other way restarts the canary."""
    from raymlops.config.serving import ServingConfig
    from raymlops.serving.app import router_spec
    from raymlops.serving.controller import canary_plan, plan_fingerprint

    canary = ServingConfig.model_validate(
        {"variants": [{"name": "v"}, {"name": "c"}], "canary": {"variant": "c", "steps": [10, 100]}}
    ).canary
    assert isinstance(canary.interval_s, int)  # a default pydantic does not validate
    spec = _app(canary=canary)
    exported = AppSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json"))))

    def fp(s):
        r = router_spec(s)
        return plan_fingerprint({v.name: v.weight for v in r.variants}, canary_plan(r.canary), {})

    assert fp(spec) == fp(exported)


def test_records_from_another_version_are_read_not_refused():
    line = json.dumps({"type": "canary", "event": "rollback", "model": "m/2", "added_later": 1})
    assert CanaryEvent.model_validate_json(line).model == "m/2"  # its rollback still vetoes a promotion
    from raymlops.contracts.traffic import OperatorRequest

    old = OperatorRequest.model_validate({"action": "stop", "by": "ana"})  # recorded as ignored, not dropped
    assert old.ts == 0.0 and old.id is None
    with pytest.raises(ValueError, match="action must be"):
        OperatorRequest.new("stop", "ana")  # type: ignore[arg-type]


def test_an_events_details_that_json_cannot_hold_are_written_as_text_not_lost():
    import numpy as np

    e = Event(type="drift", app="a", message="m", details={"n": np.int64(3), "ok": np.bool_(True), "x": 1.5})
    assert e.to_dict()["details"] == {"n": "3", "ok": "True", "x": 1.5}


def test_every_contract_model_and_field_is_described():
    """As Serve's schemas: what crosses a boundary says what it is, so the models document themselves."""
    import inspect

    from pydantic import BaseModel

    import raymlops.contracts.calls as calls
    import raymlops.contracts.events as events
    import raymlops.contracts.monitoring as monitoring
    import raymlops.contracts.serving as serving
    import raymlops.contracts.traffic as traffic

    missing, models = [], 0
    for mod in (calls, events, monitoring, serving, traffic):
        for name, cls in vars(mod).items():
            if inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__module__ == mod.__name__:
                models += 1
                missing += [name] if not (cls.__doc__ or "").strip() else []
                missing += [f"{name}.{f}" for f, info in cls.model_fields.items() if not info.description]
    assert models >= 25 and not missing, missing
