"""A real S3-compatible server for tests: moto's standalone server (as in Ray's own test suite) on a port of
this machine. It keeps objects in memory and speaks the S3 API that pyarrow, Ray Data, Ray Tune, MLflow and
boto3 use (directory markers and conditional PUTs included). It does not check credentials; the clients send
them anyway, as they would to a real store."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

KEY, SECRET = "raymlops-test", "raymlops-test-secret"


def start_s3(workdir: Path, port: int, address: str = "127.0.0.1", buckets=("raymlops",), logs: Path | None = None):
    """Starts the server with ``buckets`` created; returns a function that stops it. Raises RuntimeError when
    it does not answer within 60 s."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = (logs or workdir) / f"s3-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", address, "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )

    def stop() -> None:
        from tests.conftest import stop_process

        stop_process(proc, timeout=10)
        log.close()

    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop()
                raise RuntimeError(
                    f"the S3 server (moto) did not start on {address}:{port}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.1)
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(
        access_key=KEY,
        secret_key=SECRET,
        endpoint_override=f"{address}:{port}",
        scheme="http",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    for b in buckets:
        fs.create_dir(b)
    return stop


@contextmanager
def s3_server(workdir: Path, port: int, buckets=("raymlops",), address: str = "127.0.0.1"):
    """``start_s3`` as a context manager; yields the endpoint URL."""
    stop = start_s3(workdir, port, address, buckets)
    try:
        yield f"http://{address}:{port}"
    finally:
        stop()


def env(endpoint: str) -> dict[str, str]:
    """The standard AWS variables that point clients at the server."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
    }
