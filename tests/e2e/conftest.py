"""The e2e tests' shared CLI quickstart: trained, served, probed (drift) once, read by the README-path test
and by the console's browser tests."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT, cli_env, free_port


def run(cmd, timeout, **env):
    return subprocess.run(cmd, cwd=ROOT, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e-demo")
    r = run(["raymlops", "demo-data", str(out), "--rows", "8000"], 120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def cli_quickstart(demo, tmp_path_factory):
    """`raymlops run configs/quickstart.yaml --quiet --probe holdout --probe shifted` (1 trial), into its own
    storage: (the completed process, the storage path, the env the CLI ran with)."""
    store = tmp_path_factory.mktemp("e2e-store") / "store"
    env = {"DEMO_DATA": str(demo), "RAYMLOPS_STORAGE": str(store)}
    r = run(
        [
            "raymlops",
            "run",
            "configs/quickstart.yaml",
            "--quiet",
            "--probe",
            str(demo / "holdout.parquet"),
            "--probe",
            str(demo / "shifted.parquet"),
            "--set",
            "training.tune.num_samples=1",
            "--set",
            f"serving.port={free_port()}",
        ],
        900,
        **env,
    )
    return r, store, env
