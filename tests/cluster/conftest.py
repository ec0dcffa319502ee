"""A real 2-node Ray cluster whose nodes share no disk, with the services a cluster needs, started once for
all cluster tests (inside the private namespaces of run.sh):

- head node: ``ray start --head --num-cpus=0`` (as KubeRay recommends) at 10.77.0.1, in the test namespace;
- worker node: its own mount, pid and network namespaces (a veth to the head), fresh tmpfs over /tmp, the
  storage mount point and /dev/shm: nothing either node writes to its local disk is visible to the other;
- a real S3-compatible server, a real ``mlflow server`` (artifacts on S3, started with ``raymlops
  tracking-server``) and a real redis-server, all on the head's address.

Every node gets the storage endpoint and credentials from its own environment (as pods get them from a
secret); jobs get the storage URI, tracking URI and address from the submitting environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.s3server import KEY, SECRET

HEAD_IP, SUBNET = "10.77.0.1", "10.77.0"
S3_PORT, MLFLOW_PORT, REDIS_PORT, GCS_PORT, DASH_PORT, SERVE_PORT = 9000, 5000, 6380, 6379, 8265, 8000
BUCKET = "raymlops"
VENV = Path(sys.executable).parent


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.cluster)


def _wait(pred, timeout: float, what: str, interval: float = 0.2):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            got = pred()
            if got:
                return got
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def _http(url: str, headers: dict | None = None, data: bytes | None = None, timeout: float = 30):
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Cluster:
    """The running cluster: its addresses, the environment a job is submitted with, and the worker node."""

    def __init__(self, work: Path):
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.token = secrets.token_hex(32)
        self.s3 = f"http://{HEAD_IP}:{S3_PORT}"
        self.tracking = f"http://{HEAD_IP}:{MLFLOW_PORT}"
        self.redis = f"redis://{HEAD_IP}:{REDIS_PORT}/0"
        self.dashboard = f"http://{HEAD_IP}:{DASH_PORT}"
        self.storage = f"s3://{BUCKET}/store"
        self.worker_gen = 0
        self.workers: dict[str, subprocess.Popen] = {}  # worker node name -> its namespace's init
        self.worker_name = ""  # the node the tests kill and replace

    # ------------------------------------------------------------------ environment

    def node_env(self) -> dict[str, str]:
        """What every node's processes have (credentials and endpoint as a pod's secret would give them)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "RAYMLOPS_STORAGE"))}
        env.update(
            {
                "AWS_ENDPOINT_URL": self.s3,
                "AWS_ACCESS_KEY_ID": KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_REGION": "us-east-1",
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": self.token,
                "PATH": f"{VENV}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        return env

    def job_env(self) -> dict[str, str]:
        """The submitting shell: the storage URI, tracking URI and cluster address come from here."""
        return {
            **self.node_env(),
            "RAYMLOPS_STORAGE": self.storage,
            "MLFLOW_TRACKING_URI": self.tracking,
            "RAYMLOPS_ONLINE_STORE": self.redis,
            "RAY_ADDRESS": self.dashboard,
        }

    def start(self, name: str, argv: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env or self.node_env(), **kw)
        self.procs[name] = p
        return p

    # ------------------------------------------------------------------ services

    def start_services(self) -> None:
        subprocess.run(["ip", "link", "add", "br0", "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{HEAD_IP}/24", "dev", "br0"], check=True)
        subprocess.run(["ip", "link", "set", "br0", "up"], check=True)
        from tests.s3server import start_s3

        self.s3_stop = start_s3(self.work / "s3", S3_PORT, HEAD_IP, (BUCKET,), self.logs)
        self.start(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(REDIS_PORT),
                "--bind",
                HEAD_IP,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
        )
        self.start(
            "mlflow",
            [
                str(VENV / "raymlops"),
                "tracking-server",
                "--storage",
                f"s3://{BUCKET}/tracking",
                "--backend-store-uri",
                f"sqlite:///{self.work}/mlflow.db",
                "--host",
                HEAD_IP,
                "--port",
                str(MLFLOW_PORT),
            ],
        )
        # This process is a client of the cluster like any other: the token and the storage's endpoint.
        os.environ.update({k: v for k, v in self.node_env().items() if k.startswith(("RAY_AUTH", "AWS_"))})
        r = subprocess.run(
            [
                str(VENV / "ray"),
                "start",
                "--head",
                "--num-cpus=0",
                f"--node-ip-address={HEAD_IP}",
                f"--port={GCS_PORT}",
                "--dashboard-host=0.0.0.0",
                f"--dashboard-port={DASH_PORT}",
                "--object-store-memory=400000000",
                "--disable-usage-stats",
            ],
            env=self.node_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        (self.logs / "ray-head.log").write_text(r.stdout + r.stderr)
        assert r.returncode == 0, f"ray start --head failed:\n{r.stdout}\n{r.stderr}"
        import ray

        ray.init(address=f"{HEAD_IP}:{GCS_PORT}", log_to_driver=False)  # this process watches the nodes
        self.start_worker()
        _wait(lambda: _http(f"{self.tracking}/health")[0] == 200, 180, "the MLflow tracking server")

    def start_worker(self, replaceable: bool = True) -> str:
        """Starts a worker node with an empty disk (a new name each time); waits until it is alive. The
        ``replaceable`` one is the node ``kill_worker`` kills."""
        self.worker_gen += 1
        name, ip = f"node{self.worker_gen}", f"{SUBNET}.{10 + self.worker_gen}"
        worker = self.workers[name] = self.start(
            name,
            [
                "unshare",
                "--mount",
                "--pid",
                "--net",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "--kill-child=SIGKILL",
                "bash",
                str(ROOT / "tests" / "cluster" / "node.sh"),
                str(ROOT),
                name,
                ip,
                HEAD_IP,
                "2",
                "1200000000",
            ],
            start_new_session=True,
        )
        child = _wait(
            lambda: open(f"/proc/{worker.pid}/task/{worker.pid}/children").read().split(), 20, "the node's namespace"
        )[0]
        peer = f"h{name}"
        subprocess.run(["ip", "link", "add", peer, "type", "veth", "peer", "name", name], check=True)
        subprocess.run(["ip", "link", "set", name, "netns", child], check=True)
        subprocess.run(["ip", "link", "set", peer, "master", "br0"], check=True)
        subprocess.run(["ip", "link", "set", peer, "up"], check=True)
        if replaceable:
            self.worker_name = name
        _wait(
            lambda: any(n["alive"] and n["resources"].get(name) for n in self.nodes()),
            180,
            f"worker node {name} to join",
            interval=0.5,
        )
        return name

    def worker_nodes(self) -> set[str]:
        """The ids of the alive worker nodes."""
        return {n["id"] for n in self.nodes() if n["alive"] and n["ip"] != HEAD_IP}

    def ensure_workers(self, count: int) -> set[str]:
        """Starts worker nodes (not the replaceable one) until ``count`` are alive; returns their ids."""
        while len(self.worker_nodes()) < count:
            self.start_worker(replaceable=False)
        return self.worker_nodes()

    def kill_worker(self) -> None:
        """SIGKILLs the worker node's namespace init: every process of that node dies at once, its disk is gone."""
        name = self.worker_name
        worker = self.workers.pop(name)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        subprocess.run(["ip", "link", "del", f"h{name}"], capture_output=True)
        _wait(
            lambda: not any(n["alive"] and n["resources"].get(name) for n in self.nodes()),
            180,
            f"the cluster to see {name} dead",
            interval=0.5,
        )

    # ------------------------------------------------------------------ using it

    def nodes(self) -> list[dict]:
        """Every node the cluster knows: {id, alive, ip, resources}."""
        import ray

        return [
            {"id": n["NodeID"], "alive": n["Alive"], "ip": n["NodeManagerAddress"], "resources": n["Resources"]}
            for n in ray.nodes()
        ]

    def submit(
        self,
        entrypoint: str,
        working_dir: Path,
        timeout: float = 600,
        env: dict | None = None,
        name: str = "job",
        env_vars: dict | None = None,
    ) -> subprocess.CompletedProcess:
        """``ray job submit --working-dir`` (waits for the job; its output is in the result and the logs; the
        result's ``submission_id`` names it). The storage and tracking URIs of ``env`` (default ``job_env()``)
        and ``env_vars`` go to the job as a user passes them: ``--runtime-env-json '{"env_vars": {...}}'``."""
        env = env or self.job_env()
        sub = f"{name}-{secrets.token_hex(3)}"
        passed = {k: env[k] for k in ("RAYMLOPS_STORAGE", "MLFLOW_TRACKING_URI", "RAYMLOPS_ONLINE_STORE") if k in env}
        passed.update(env_vars or {})
        r = subprocess.run(
            [
                str(VENV / "ray"),
                "job",
                "submit",
                "--address",
                self.dashboard,
                "--submission-id",
                sub,
                "--working-dir",
                str(working_dir),
                "--runtime-env-json",
                json.dumps({"env_vars": passed}),
                "--",
                *entrypoint.split(),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        (self.logs / f"{sub}.log").write_text(r.stdout + r.stderr)
        r.submission_id = sub
        return r

    def task_nodes(self, submission_id: str, function: str) -> set[str]:
        """The node ids on which the job's tasks of ``function`` ran (Ray's State API; task events reach
        it within a few seconds of the task)."""
        from ray.job_submission import JobSubmissionClient
        from ray.util.state import list_tasks

        job_id = JobSubmissionClient(self.dashboard).get_job_info(submission_id).job_id
        tasks = list_tasks(
            address=self.dashboard,
            filters=[("job_id", "=", job_id), ("name", "=", function)],
            detail=True,
            limit=10_000,
            raise_on_missing_output=False,
        )
        return {t.node_id for t in tasks if t.state == "FINISHED"}

    def stop(self) -> None:
        import ray

        ray.shutdown()
        for worker in self.workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        getattr(self, "s3_stop", lambda: None)()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.environ.get("RAYMLOPS_CLUSTER_NS") != "1":
        pytest.fail("the cluster tests run inside their own namespaces: `bash tests/cluster/run.sh`", pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_services()
        yield c
    except BaseException:
        for f in sorted(c.logs.glob("*.log")):
            print(f"----- {f.name}\n{f.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        c.stop()


@pytest.fixture(scope="session")
def job_dir(tmp_path_factory) -> Path:
    """A job's working directory, as a user would submit it: the example configs, the job entrypoint and
    the demo data (Ray ships it to every node that runs part of the job)."""
    from raymlops.data.demo import write_demo_data

    d = tmp_path_factory.mktemp("job")
    shutil.copytree(ROOT / "configs", d / "configs")
    shutil.copytree(ROOT / "jobs", d / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    write_demo_data(d / "data" / "demo", rows=6000, seed=7)
    return d
