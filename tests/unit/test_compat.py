"""The private third-party APIs behind raymlops' ``_compat`` shims: each test fails when an upgrade of the
library moves or reshapes what its shim relies on (without starting Ray)."""

import importlib.util
import inspect
import pickle
from pathlib import Path
from types import SimpleNamespace

import pandas as pd


def _params(fn) -> list[str]:
    # Ray adds `_ray_trace_ctx` to an actor class's methods once the class has been made remote in this process
    # (a test run that started Serve before this one): not part of the API the shim relies on.
    return [p for p in inspect.signature(fn).parameters if p != "_ray_trace_ctx"]


# MLflow (raymlops/registry/_compat.py)


def test_mlflow_uri_globals_are_restored_by_kept_uri_globals(monkeypatch, tmp_path):
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from raymlops.registry._compat import kept_uri_globals

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)  # set_tracking_uri exports them; restored after the test
    before, inside = f"sqlite:///{tmp_path / 'before.db'}", f"sqlite:///{tmp_path / 'inside.db'}"
    # setattr fails when the attribute is gone; the test's changes are undone afterwards.
    monkeypatch.setattr(tracking_utils, "_tracking_uri", before)
    monkeypatch.setattr(registry_utils, "_registry_uri", before)
    with kept_uri_globals():
        mlflow.set_tracking_uri(inside)
        mlflow.set_registry_uri(inside)
        # the public setters and getters still go through these globals
        assert (tracking_utils._tracking_uri, registry_utils._registry_uri) == (inside, inside)
        assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == inside
    assert (tracking_utils._tracking_uri, registry_utils._registry_uri) == (before, before)
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == before


def test_mlflow_unset_uris_stay_unset_after_tracking_using(monkeypatch, tmp_path):
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from raymlops.registry.tracking import using

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    with using(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        assert mlflow.tracking.is_tracking_uri_set()
    assert tracking_utils._tracking_uri is None and registry_utils._registry_uri is None
    assert not mlflow.tracking.is_tracking_uri_set()


def test_mlflow_dataset_entity_equals_the_public_construction():
    from mlflow.data.dataset import Dataset
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.models import infer_signature

    from raymlops.registry._compat import dataset_entity

    assert _params(Dataset._to_mlflow_entity) == ["self"]
    schema = infer_signature(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})).inputs
    ds = MetaDataset(LocalArtifactDatasetSource("/tmp/train.parquet"), name="train", digest="abc123", schema=schema)
    got = dataset_entity(ds)
    assert isinstance(got, DatasetEntity)
    d = ds.to_dict()  # the public alternative, field by field
    public = DatasetEntity(
        name=d["name"],
        digest=d["digest"],
        source_type=d["source_type"],
        source=d["source"],
        schema=d.get("schema"),
        profile=d.get("profile"),
    )
    fields = ("name", "digest", "source_type", "source", "schema", "profile")
    assert {f: getattr(got, f) for f in fields} == {f: getattr(public, f) for f in fields}
    assert got.name == "train" and got.digest == "abc123" and got.schema


# Ray Serve (raymlops/serving/_compat.py)


def test_serve_http_options_reads_the_global_clients_http_config(monkeypatch):
    import ray.serve.context as context
    from ray.serve._private.client import ServeControllerClient

    from raymlops.serving._compat import serve_http_options

    # called without arguments: every parameter has a default
    assert all(p.default is not p.empty for p in inspect.signature(context._get_global_client).parameters.values())
    assert isinstance(inspect.getattr_static(ServeControllerClient, "http_config"), property)
    sentinel = SimpleNamespace(host="0.0.0.0", port=8123)
    monkeypatch.setattr(context, "_get_global_client", lambda: SimpleNamespace(http_config=sentinel))
    assert serve_http_options() is sentinel


def test_serve_grpc_options_asks_the_controller(monkeypatch):
    import ray
    import ray.serve.context as context
    from ray.serve._private.client import ServeControllerClient
    from ray.serve._private.controller import ServeController

    from raymlops.serving._compat import serve_grpc_options

    assert "self._controller" in inspect.getsource(ServeControllerClient.__init__)
    assert _params(ServeController.get_grpc_config) == ["self"]
    assert "gRPCOptions" in str(inspect.signature(ServeController.get_grpc_config).return_annotation)
    options = SimpleNamespace(port=9000, grpc_servicer_functions=["x"])
    ref = object()
    controller = SimpleNamespace(get_grpc_config=SimpleNamespace(remote=lambda: ref))
    monkeypatch.setattr(context, "_get_global_client", lambda: SimpleNamespace(_controller=controller))
    monkeypatch.setattr(ray, "get", lambda r, timeout=None: options if r is ref else None)
    assert serve_grpc_options() is options


def test_delete_app_nowait_passes_blocking_false(monkeypatch):
    from ray import serve
    from ray.serve import api
    from ray.serve._private.client import ServeControllerClient

    from raymlops.serving._compat import delete_app_nowait

    blocking = inspect.signature(serve.delete).parameters["_blocking"]
    assert blocking.default is True
    assert "blocking" in _params(ServeControllerClient.delete_apps)
    calls = []
    monkeypatch.setattr(
        api,
        "_get_global_client",
        lambda: SimpleNamespace(delete_apps=lambda names, blocking: calls.append((names, blocking))),
    )
    delete_app_nowait("app")
    assert calls == [(["app"], False)]


# Ray (raymlops/data/_compat.py)


def test_the_muted_notice_loggers_are_modules_that_log_under_their_name():
    from raymlops.data._compat import NOTICE_LOGGERS

    for name in NOTICE_LOGGERS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        assert "logging.getLogger(__name__)" in Path(spec.origin).read_text(), name


# alibi-detect (raymlops/monitoring/detectors/_compat.py)


def test_alibi_detect_online_internals_that_fast_online_classes_override():
    from raymlops.monitoring.detectors.base import numba_cache

    numba_cache()
    from alibi_detect.cd import CVMDriftOnline, FETDriftOnline
    from alibi_detect.cd.cvm_online import _normalise_stats

    assert _params(CVMDriftOnline._simulate_streams) == ["self", "t_max"]
    assert _params(FETDriftOnline._simulate_streams) == ["self", "x_ref", "pbar"]
    assert _params(_normalise_stats) == ["stats", "n", "ws"]
    assert isinstance(inspect.getattr_static(FETDriftOnline, "_exp_moving_avg"), staticmethod)
    assert _params(FETDriftOnline._exp_moving_avg) == ["arr", "lam"]
    for cls in (CVMDriftOnline, FETDriftOnline):  # the overrides are what the threshold search calls
        assert "self._simulate_streams(" in inspect.getsource(cls._configure_thresholds)
        # the state alibi.py trims and saves
        assert {"t", "test_stats", "drift_preds", "xs"} <= set(cls.online_state_keys)


def test_fast_online_classes_override_with_the_same_signatures_and_pickle_by_alibi_module():
    from raymlops.monitoring.detectors import alibi
    from raymlops.monitoring.detectors._compat import fast_online_classes

    classes = fast_online_classes("some.module")
    assert set(classes) == {"FastCVMDriftOnline", "FastFETDriftOnline"}
    for name, cls in classes.items():
        base = cls.__mro__[1]
        assert base.__module__.startswith("alibi_detect.") and "_simulate_streams" in vars(cls)
        assert (
            inspect.signature(cls._simulate_streams).parameters.keys()
            == inspect.signature(base._simulate_streams).parameters.keys()
        )
        assert (cls.__module__, cls.__qualname__) == ("some.module", name)
    for name in classes:  # alibi.py's classes, as pickled detectors name them
        cls = alibi._fast(name)
        assert cls.__module__ == alibi.__name__ and pickle.loads(pickle.dumps(cls)) is cls
