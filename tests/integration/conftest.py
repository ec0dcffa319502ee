"""One session-scoped local Ray (num_cpus=2) and the runs the integration tests share."""

from __future__ import annotations

import pytest

from raymlops import Pipeline
from tests.conftest import ROOT, free_port


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from raymlops.config.models import RayConfig
    from raymlops.data.ray_env import ensure_ray

    ensure_ray(RayConfig(num_cpus=2, object_store_memory_mb=768))
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    _refuse_ray_restarts()


def _refuse_ray_restarts() -> None:
    """After the session's Ray is shut down, a call to a Ray API from a leftover thread would auto-start a
    new local Ray while the interpreter exits (its GCS then dies with the process: a fatal error and a
    failed run). Refuse it loudly instead, naming the caller."""
    import sys
    import traceback

    import ray

    def refused(*_a, **_k):
        stack = "".join(traceback.format_stack(limit=12))
        print(f"\nERROR: Ray API called after the test session shut Ray down:\n{stack}", file=sys.stderr, flush=True)
        raise RuntimeError("Ray was shut down at the end of the test session")

    ray.init = refused


@pytest.fixture(scope="session")
def storage(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("store"))


def pipeline(config: str, demo_dir, storage: str, *overrides: str) -> Pipeline:
    base = [f"storage={storage}", f"sources.customers.path={demo_dir}/train.parquet", f"serving.port={free_port()}"]
    return Pipeline.from_yaml(ROOT / "configs" / config, [*base, *overrides], say=None)


@pytest.fixture(scope="session")
def quickstart(ray_session, demo_dir, storage):
    """The quickstart pipeline with a 2-trial search (real Ray Train XGBoost runs), trained once."""
    pipe = pipeline("quickstart.yaml", demo_dir, storage, "training.tune.num_samples=2", "monitoring.drift.p_val=0.01")
    return pipe, pipe.train(progress=False)
