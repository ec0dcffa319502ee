"""Starts Serve's proxies and deploys Serve applications, waiting (with a deadline) until they run."""

from __future__ import annotations

import time

SERVE_POLL_S = 0.25
GRPC_SERVICER = "raymlops.serving.grpc_api.predict_pb2_grpc.add_ModelServerServicer_to_server"


def start_serve(host: str, port: int, grpc_port: int | None = None) -> str:
    """Starts Serve's HTTP proxy (if not running), with its gRPC proxy on ``grpc_port`` when given, and
    returns the HTTP base URL.

    A running proxy keeps the host and port it started with, so the URL is read back from Serve rather
    than assumed from the arguments.

    Raises:
        SetupError: ``grpc_port`` is asked for but the running Serve has no gRPC proxy on it (Serve ignores
            the options of a later start).
    """
    from ray import serve

    from raymlops.errors import SetupError
    from raymlops.serving._compat import serve_grpc_options, serve_http_options

    grpc = {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]} if grpc_port else None
    serve.start(http_options={"host": host, "port": port}, grpc_options=grpc)
    try:
        cfg = serve_http_options()
        host, port = cfg.host, cfg.port
        if grpc_port:
            got = serve_grpc_options()
            if got.port != grpc_port or GRPC_SERVICER not in got.grpc_servicer_functions:
                raise SetupError(
                    f"serving.grpc_port: Serve is already running here without a gRPC proxy on port "
                    f"{grpc_port} (its gRPC port: {got.port}); a running Serve keeps its proxies: "
                    "shut Serve down first (`serve shutdown`) or deploy where it is not running"
                )
    except SetupError:
        raise
    except Exception:  # private API moved: fall back to what was asked for
        pass
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{port}"


def run_serve_app(app, name: str, route_prefix: str, timeout_s: float, timeout_key: str) -> None:
    """Deploys a bound Serve application and waits until it is RUNNING.

    Serve is asked not to wait (its own wait has no deadline and, left in a thread after a timeout, kept
    polling the cluster until the process exited); the app's status is polled here instead.

    Raises:
        RaymlopsError: when the app failed to deploy, or is not running within ``timeout_s`` (e.g. its
            replicas ask for more CPUs than the cluster has: a new app is then deleted, one that existed
            before is left to Serve); Serve's own explanation is in the message.
    """
    from ray import serve

    from raymlops.errors import RaymlopsError
    from raymlops.serving._compat import delete_app_nowait

    deadline = time.monotonic() + timeout_s
    existed = name in serve.status().applications
    serve.run_many(
        [serve.RunTarget(app, name=name, route_prefix=route_prefix)],
        wait_for_ingress_deployment_creation=False,
        wait_for_applications_running=False,
    )
    while True:
        status = serve.status().applications.get(name)
        state = getattr(status, "status", None)  # a str enum: NOT_STARTED, DEPLOYING, RUNNING, DEPLOY_FAILED...
        if state == "RUNNING":
            return
        failed = state == "DEPLOY_FAILED"
        if failed or time.monotonic() > deadline:
            why = " | ".join(
                m
                for m in [
                    getattr(status, "message", ""),
                    *(d.message for d in getattr(status, "deployments", {}).values()),
                ]
                if m
            )
            if not failed and not existed:  # a new app stuck for resources would hold them: removed
                delete_app_nowait(name)
            kept = (
                " (not deleted: it existed before this deploy; `serve status` shows it)"
                if existed and not failed
                else ""
            )
            raise RaymlopsError(
                f"Serve app {name!r} "
                + ("failed to deploy" if failed else f"was not running after {timeout_s:g} s ({timeout_key})")
                + kept
                + (f": {why}" if why else "")
            )
        time.sleep(SERVE_POLL_S)
