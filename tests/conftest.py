"""Shared fixtures; markers follow the folder (unit / integration / e2e)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# Tests use their own stores: never a developer's tracking server.
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "RAYMLOPS_STORAGE"):
    os.environ.pop(_var, None)


# The cluster tests run in their own namespaces (`bash tests/cluster/run.sh`, also run by scripts/test.sh).
collect_ignore = [] if os.environ.get("RAYMLOPS_CLUSTER_NS") == "1" else ["cluster"]


def pytest_collection_modifyitems(items):
    for item in items:
        kind = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo dataset (the quickstart's generator, fewer rows)."""
    from raymlops.data.demo import write_demo_data

    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, rows=6000, seed=7)
    return out


def wait_http(url: str, proc=None, log=None, seconds: float = 90) -> None:
    """Waits until ``url`` answers 200; fails with the tail of the server's ``log`` (a file opened "w+") if
    the process exits first or nothing answers in time."""
    import time

    import httpx

    def tail() -> str:
        if log is None:
            return ""
        log.flush()
        log.seek(0)
        return ":\n" + log.read()[-3000:]

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{proc.args[:3]} exited with {proc.returncode}{tail()}", pytrace=False)
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds} s{tail()}", pytrace=False)


def stop_process(proc, timeout: float = 20) -> None:
    """Terminates a server the tests started, killing it if it does not exit in time."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A private redis-server on a free loopback port (no persistence) for the session: yields its redis:// URL.

    Fails (never skips) when redis-server is not installed: `bash scripts/redis.sh` installs it.
    """
    import shutil
    import subprocess
    import time

    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not on PATH; install it with `bash scripts/redis.sh`", pytrace=False)
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = open(workdir / "redis.log", "wb")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"redis-server on port {port} did not answer PING:\n"
                        + (workdir / "redis.log").read_text(errors="replace"),
                        pytrace=False,
                    )
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        stop_process(proc)
        log.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A real S3-compatible server (moto's standalone server) for the session, with bucket 'raymlops'; yields its URL."""
    from tests.s3server import s3_server

    root = tmp_path_factory.mktemp("s3")
    try:
        with s3_server(root, free_port()) as url:
            yield url
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
