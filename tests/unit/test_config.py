import json
import subprocess
import sys
from pathlib import Path

import pytest

from raymlops.config import load_config
from raymlops.config.models import SearchSpace
from raymlops.errors import ConfigError
from tests.conftest import ROOT, cli_env

BASE = """\
name: demo
sources:
  events:
    format: parquet
    path: data/x.parquet
    timestamp: ts
training:
  source: events
  label: y
  task: binary
  model:
    type: xgboost
    params:
      max_depth: {randint: [3, 8]}
      eta: 0.1
  tune:
    num_samples: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def issues(path, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return [str(i) for i in e.value.issues]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.name


def test_defaults_and_search_space(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.storage == "./.raymlops"
    assert cfg.training.tune.metric == "auc" and cfg.training.tune.mode == "max"
    assert isinstance(cfg.training.model.params["max_depth"], SearchSpace)
    assert cfg.training.model.params["eta"] == 0.1


def test_misspelled_key_and_wrong_type_name_file_line_and_path(tmp_path):
    text = BASE.replace("num_samples: 2", "num_sample: 2").replace(
        "type: xgboost", "type: xgboost\n    num_workers: two"
    )
    p = write(tmp_path, text)
    got = issues(p)
    assert f"{p}:18: training.tune.num_sample: unknown key; did you mean 'num_samples'?" in got
    assert any(g.startswith(f"{p}:13: training.model.num_workers: got 'two'") for g in got), got


def test_wrong_variant_tag_suggests(tmp_path):
    p = write(tmp_path, BASE.replace("type: xgboost", "type: xgbost"))
    (msg,) = issues(p)
    assert msg.startswith(f"{p}:12: training.model.type: got 'xgbost'; did you mean 'xgboost'?")


def test_bad_search_space(tmp_path):
    p = write(
        tmp_path, BASE.replace("{randint: [3, 8]}", "{randint: [8, 3]}").replace("eta: 0.1", "eta: {unifrom: [0, 1]}")
    )
    got = issues(p)
    assert any(":14: training.model.params.max_depth: randint: lower bound must be < upper bound" in g for g in got), (
        got
    )
    assert any(":15: training.model.params.eta: unknown search space 'unifrom'" in g for g in got), got


def test_env_interpolation_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/srv/data")
    monkeypatch.delenv("MISSING_VAR", raising=False)
    text = BASE.replace("data/x.parquet", "${DATA_ROOT}/x.parquet").replace("num_samples: 2", "num_samples: ${N:-5}")
    cfg = load_config(write(tmp_path, text), ["training.tune.scheduler=asha", "serving.port=9000"])
    assert cfg.sources["events"].path == "/srv/data/x.parquet"
    assert cfg.training.tune.num_samples == 5
    assert cfg.training.tune.scheduler == "asha"
    assert cfg.serving.port == 9000
    got = issues(write(tmp_path, BASE.replace("data/x.parquet", "${MISSING_VAR}")))
    assert any("sources.events.path: environment variable ${MISSING_VAR} is not set" in g for g in got)
    assert issues(write(tmp_path, BASE), ["training.tune.num_samples=-1"]) == [
        "--set: training.tune.num_samples: got -1; input should be greater than or equal to 1"
    ]


def test_cross_field_checks(tmp_path):
    p = write(tmp_path, BASE.replace("source: events", "source: evnts").replace("num_samples: 2", "metric: rmse"))
    got = issues(p)
    assert any(":8: training.source: unknown source 'evnts'" in g for g in got), got
    assert any(":17: training.tune.metric: got 'rmse'; task 'binary' supports" in g for g in got), got
    no_ts = BASE.replace("    timestamp: ts\n", "") + "  split:\n    type: time\n"
    assert any(
        "training.split.type: 'time' needs sources.events.timestamp" in g for g in issues(write(tmp_path, no_ts))
    )


def test_yaml_syntax_error_and_duplicates(tmp_path):
    (msg,) = issues(write(tmp_path, "name: x\nsources: [\n"))
    assert "invalid YAML" in msg and msg.startswith(str(tmp_path / "c.yaml") + ":")
    got = issues(write(tmp_path, BASE + "name: again\n"))
    assert any(":18: name: duplicate key" in g for g in got), got


def test_route_prefix_message(tmp_path):
    got = issues(write(tmp_path, BASE + "serving:\n  route_prefix: churn\n"))
    assert any('serving.route_prefix: got "churn"; route_prefix must start with "/"' in g for g in got), got


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "raymlops.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=120,
    )


def test_cli_validate_reports_every_error_with_exit_2(tmp_path):
    text = BASE.replace("num_samples: 2", "num_sample: 2").replace("task: binary", "task: binry")
    p = write(tmp_path, text)
    r = run_cli("validate", str(p))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{p}:10: training.task: got 'binry'") for line in lines), lines
    assert any(line.startswith(f"{p}:17: training.tune.num_sample: unknown key") for line in lines), lines
    ok = run_cli("validate", str(ROOT / "configs" / "quickstart.yaml"))
    assert ok.returncode == 0 and ok.stdout.strip() == "OK"


def test_cli_schema_is_json_schema():
    r = run_cli("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert {"name", "sources", "training", "serving", "monitoring"} <= set(schema["properties"])


def test_storage_takes_uris_and_a_uri_without_bucket_is_a_config_error(tmp_path):
    from raymlops.config import load_config

    cfg = load_config(
        write(
            tmp_path,
            BASE.replace(
                "name: demo",
                "name: demo\nstorage: s3://bucket/runs\nstorage_options: {endpoint_url: 'http://127.0.0.1:9'}",
            ),
        )
    )
    assert cfg.storage == "s3://bucket/runs" and cfg.storage_options == {"endpoint_url": "http://127.0.0.1:9"}
    (msg,) = issues(write(tmp_path, BASE.replace("name: demo", "name: demo\nstorage: s3://")))
    assert msg.startswith(f"{tmp_path / 'c.yaml'}:2: storage: got 's3://'; expected a path, file:///path, s3://")


def test_invalid_scalars_and_list_paths_are_issues_not_tracebacks(tmp_path):
    (msg,) = issues(write(tmp_path, BASE.replace("name: demo", "name: 2024-02-30")))
    assert msg == f"{tmp_path / 'c.yaml'}:1: name: invalid value: day is out of range for month"
    (msg,) = issues(write(tmp_path, BASE.replace("name: demo", "name: !env demo")))
    assert msg.startswith(f"{tmp_path / 'c.yaml'}:1: name: invalid value:")
    text = BASE + "  preprocessing:\n    - type: drop\n      columns: [a]\n"
    assert issues(write(tmp_path, text), ["training.preprocessing.first.columns=[b]"]) == [
        "--set: training.preprocessing.first: no such list item"
    ]


FEATURES = """\
name: feat
sources:
  tx: {format: parquet, path: data/tx.parquet, timestamp: t}
  labels: {format: parquet, path: data/l.parquet, timestamp: t}
features:
  online_store: {type: redis, url: "redis://127.0.0.1:6379/0"}
  entities:
    - {name: customer, join_keys: [customer_id]}
  views:
    - name: stats
      entity: customer
      source: tx
      timestamp: t
      ttl: 30d
      fields: [balance]
      aggregations:
        - {column: amount, function: sum, window: 7d}
training:
  dataset: {labels: labels, features: ["stats:amount_sum_7d", "stats:*"]}
  label: y
  task: binary
  model: {type: xgboost}
"""


def test_features_section_validates_and_names_features(tmp_path):
    cfg = load_config(write(tmp_path, FEATURES))
    view = cfg.features.views[0]
    assert view.feature_names == ["balance", "amount_sum_7d"] and view.ttl_seconds == 30 * 86400
    assert cfg.features.online_store.type == "redis" and cfg.training.source is None


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("entity: customer\n", "entity: custmer\n", ":11: features.views[0].entity: unknown entity 'custmer'"),
        ("ttl: 30d", "ttl: 30days", ":14: features.views[0].ttl: got '30days'; expected a positive duration"),
        ("function: sum", "function: median", "features.views[0].aggregations[0].function:"),
        (
            "stats:amount_sum_7d",
            "stats:amount_sum_8d",
            "training.dataset.features[0]: view 'stats' has no feature 'amount_sum_8d'",
        ),
        ("source: tx", "source: tz", "features.views[0].source: unknown source 'tz'"),
        ("fields: [balance]", "fields: [customer_id]", "features.views[0].fields[0]: 'customer_id' is a join key"),
        (
            'type: redis, url: "redis://127.0.0.1:6379/0"',
            'type: redis, url: "http://x"',
            "features.online_store.url: got 'http://x'; expected a redis://",
        ),
        ("dataset: {labels: labels,", "source: tx\n  dataset: {labels: labels,", "set exactly one of 'source'"),
    ],
)
def test_feature_config_errors_have_line_and_path(tmp_path, old, new, expected):
    assert old in FEATURES
    got = issues(write(tmp_path, FEATURES.replace(old, new)))
    assert any(expected in g for g in got), got


def test_monitoring_section_reads_on_keys_as_written_and_checks_across_sections(tmp_path):
    ok = (
        BASE
        + """\
monitoring:
  drift: {detector: cvm_online, ert: 500, features: [a, b]}
  data_quality: {schema: false, window: 200}
  alerts:
    - {type: webhook, url: "http://127.0.0.1:9/hook", on: [drift, canary], cooldown_s: 60}
    - {type: log, on: [performance]}
"""
    )
    m = load_config(write(tmp_path, ok)).monitoring
    assert m.alerts[0].on == ["drift", "canary"] and m.alerts[1].on == ["performance"]  # not {True: [...]}
    assert m.data_quality.schema_check is False and m.drift.features == ["a", "b"]
    bad = (
        BASE
        + """\
monitoring:
  drift: {detector: psi}
  performance: {labels: nowhere, metric: rmse}
  alerts:
    - {type: pager}
  retrain: {on: [performance], deploy: shadow}
"""
    )
    got = issues(write(tmp_path, bad))
    assert any(":19: monitoring.drift.detector: got 'psi'" in g and "'ks'" in g for g in got), got
    assert any(":22: monitoring.alerts[0].type: got 'pager'; expected one of webhook, log" in g for g in got), got
    got = issues(
        write(
            tmp_path,
            bad.replace("detector: psi", "detector: ks")
            .replace("    - {type: pager}\n", "")
            .replace("  alerts:\n", ""),
        )
    )
    assert any(":20: monitoring.performance.labels: unknown source 'nowhere'" in g for g in got), got
    assert any("monitoring.performance.metric: got 'rmse'; task 'binary' supports" in g for g in got), got
    assert any("monitoring.performance: joining late labels needs serving.request_log" in g for g in got), got
    assert any(
        "monitoring.retrain.deploy: 'shadow' needs a serving.shadow entry with model: models:/demo@challenger" in g
        for g in got
    ), got


def test_positive_class_is_for_binary_tasks(tmp_path):
    assert (
        load_config(
            write(tmp_path, BASE.replace("task: binary", "task: binary\n  positive_class: 'Yes'"))
        ).training.positive_class
        == "Yes"
    )
    got = issues(write(tmp_path, BASE.replace("task: binary", "task: multiclass\n  positive_class: 'Yes'")))
    assert any(":11: training.positive_class: got 'Yes'; positive_class is for task 'binary' only" in g for g in got), (
        got
    )


def test_skew_check_needs_entity_serving_with_a_request_log(tmp_path):
    text = (ROOT / "configs" / "features.yaml").read_text()
    assert load_config(ROOT / "configs" / "features.yaml").monitoring.skew.max_rate == 0.01
    path = tmp_path / "f.yaml"
    path.write_text(text.replace("  request_log: {}", "  request_log: null"))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "monitoring.skew: the skew check compares the features served by entity key" in str(e.value)
    path.write_text(
        text.replace("      ttl: 30d\n", "      ttl: 30d\n      tile: 1h\n").replace(
            "- {column: amount, function: sum, window: 7d}", "- {column: amount, function: sum, window: 30m}"
        )
    )
    with pytest.raises(ConfigError, match="features.views\\[0\\].*tile '1h' is longer than the windows \\['30m'\\]"):
        load_config(path)


def test_drift_alert_after_defaults_to_two_of_three_and_checks_its_bounds():
    from raymlops.config.monitoring import DriftConfig

    assert DriftConfig().alert_after.model_dump() == {"windows": 2, "of": 3}
    with pytest.raises(ValueError, match="windows must be <= of; got windows=3, of=2"):
        DriftConfig(alert_after={"windows": 3, "of": 2})


def test_search_algorithms_check_their_spaces(tmp_path):
    p = write(tmp_path, BASE)
    (msg,) = issues(p, ["training.tune.search=grid"])
    assert msg.startswith(f"{p}:14: training.model.params.max_depth.randint: search: grid tries every combination"), msg
    grid = BASE.replace("{randint: [3, 8]}", "{grid: [3, 8]}")
    (msg,) = issues(write(tmp_path, grid), ["training.tune.search=optuna"])
    assert "training.model.params.max_depth.grid: search: optuna suggests each value" in msg, msg
    assert load_config(write(tmp_path, grid), ["training.tune.search=grid"]).training.tune.search == "grid"
    assert load_config(write(tmp_path, BASE), ["training.tune.search=optuna"]).training.tune.search == "optuna"
    assert "got 'bayes'" in " ".join(issues(write(tmp_path, BASE), ["training.tune.search=bayes"]))


def test_the_tuned_metric_is_checked_with_a_training_dataset_too(tmp_path):
    ds = BASE.replace("  source: events\n", "  dataset:\n    labels: events\n    features: ['v:*']\n")
    got = issues(write(tmp_path, ds), ["training.tune.metric=rmse"])
    assert any("training.tune.metric: got 'rmse'; task 'binary' supports" in g for g in got), got


def test_a_metric_the_task_lacks_is_rejected_with_file_and_line_on_the_dataset_path(tmp_path):
    # training.dataset (a feature set) instead of source: the metric settings are checked all the same.
    text = FEATURES + "  tune:\n    metric: rmse\nregistry:\n  promotion:\n    metric: r2\n"
    p = write(tmp_path, text)
    lines = text.splitlines()
    tune_line, promotion_line = lines.index("    metric: rmse") + 1, lines.index("    metric: r2") + 1
    supported = "task 'binary' supports ['auc', 'logloss', 'accuracy', 'f1']"
    expected = [
        f"{p}:{tune_line}: training.tune.metric: got 'rmse'; {supported}",
        f"{p}:{promotion_line}: registry.promotion.metric: got 'r2'; {supported}",
    ]
    assert issues(p) == expected
    r = run_cli("validate", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == expected
    assert load_config(write(tmp_path, FEATURES + "  tune:\n    metric: f1\n")).training.tune.mode == "max"


def test_an_error_in_a_union_of_values_names_the_key_not_the_member_tried(tmp_path):
    p = write(tmp_path, BASE + "monitoring:\n  drift: {features: everything, min_effect: {age: x}}\n")
    got = issues(p)
    assert f"{p}:19: monitoring.drift.features: got 'everything'; input should be 'all'" in got, got
    assert f"{p}:19: monitoring.drift.features: got 'everything'; input should be a valid list" in got, got
    assert any(g.startswith(f"{p}:19: monitoring.drift.min_effect.age: got 'x'") for g in got), got
    assert not any("literal[" in g or "list[str]" in g or "dict[" in g for g in got), got


def test_decision_and_scale_pos_weight_are_for_binary_tasks(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        [
            "training.decision.optimize=precision_at_recall",
            "training.decision.min_recall=0.9",
            "training.model.params.scale_pos_weight=auto",
        ],
    )
    d = cfg.training.decision
    assert d.threshold == "auto" and d.min_recall == 0.9 and d.folds == 5 and d.cost.false_negative == 1
    assert load_config(write(tmp_path, BASE), ["training.decision.threshold=0.3"]).training.decision.threshold == 0.3
    got = " ".join(issues(write(tmp_path, BASE), ["training.decision.threshold=1.5"]))
    assert "training.decision.threshold" in got, got
    reg = BASE.replace("task: binary", "task: regression")
    got = issues(
        write(tmp_path, reg),
        ["training.decision.threshold=0.3", "training.tune.metric=rmse", "training.model.params.scale_pos_weight=auto"],
    )
    assert any(
        "training.decision: a decision threshold is for task 'binary'; this task is 'regression'" in g for g in got
    ), got
    assert any("training.model.params.scale_pos_weight: auto (negatives / positives" in g for g in got), got


def test_grpc_port_and_ingress_are_checked_with_the_line_they_are_on(tmp_path):
    text = (ROOT / "configs" / "quickstart.yaml").read_text()
    assert "\nserving:\n" in text
    path = tmp_path / "q.yaml"
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.serving.ingress == "proxy" and cfg.serving.grpc_port is None
    path.write_text(text.replace("\nserving:\n", "\nserving:\n  ingress: haproxy\n  grpc_port: 9000\n"))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{path}:" in str(e.value) and "serving.grpc_port: needs ingress: proxy" in str(e.value)
    path.write_text(text.replace("\nserving:\n", "\nserving:\n  ingress: nginx\n"))
    with pytest.raises(ConfigError, match="serving.ingress"):
        load_config(path)
    port = cfg.serving.port
    path.write_text(text.replace("\nserving:\n", f"\nserving:\n  grpc_port: {port}\n"))
    with pytest.raises(ConfigError, match="serving.grpc_port: must differ from serving.port"):
        load_config(path)


def test_an_exported_serve_config_carries_the_grpc_proxy(tmp_path):
    import yaml

    from raymlops.contracts.serving import AppSpec
    from raymlops.serving.deploy import export

    args = AppSpec.model_validate(
        {
            "app": "a",
            "namespace": "ns",
            "state_dir": str(tmp_path),
            "max_batch_rows": 10,
            "request_timeout_s": 30,
            "router_replicas": 1,
            "replica": {"num_cpus": 0.5, "num_replicas": 1},
            "models": [{"name": "default", "role": "variant", "run_dir": "/runs/r", "model_version": "r"}],
        }
    )
    doc = yaml.safe_load(export(args, "127.0.0.1", 8000, "/a", tmp_path / "s.yaml", grpc_port=9000).read_text())
    assert doc["grpc_options"] == {
        "port": 9000,
        "grpc_servicer_functions": ["raymlops.serving.grpc_api.predict_pb2_grpc.add_ModelServerServicer_to_server"],
    }
    assert "grpc_options" not in yaml.safe_load(export(args, "127.0.0.1", 8000, "/a", tmp_path / "t.yaml").read_text())
    import importlib

    module, _, name = doc["grpc_options"]["grpc_servicer_functions"][0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))  # what Serve's proxy imports
