"""Ray Serve's private APIs used by raymlops' Serve helpers (`raymlops.serving.runtime`), each behind one
name (tests/unit/test_compat.py fails when a Ray upgrade moves one).
"""

from __future__ import annotations


def serve_http_options():
    """The running Serve's ``HTTPOptions``: what its HTTP proxies run with, which a later ``serve.start``
    does not change.

    Private: ``ray.serve.context._get_global_client`` (its ``http_config`` is public on a private class).
    Public alternative: the Serve REST API, ``GET /api/serve/applications/`` on the dashboard (its
    ``http_options``: ``ray.serve.schema.ServeInstanceDetails``), which needs the dashboard's address and
    an HTTP round trip; ``serve.status()`` does not report it.
    """
    from ray.serve.context import _get_global_client

    return _get_global_client().http_config


def serve_grpc_options():
    """The running Serve's ``gRPCOptions`` (port and servicer functions of its gRPC proxies).

    Private: the Serve client's ``_controller`` handle and ``ServeController.get_grpc_config``. Public
    alternative: as for `serve_http_options`, ``grpc_options`` of ``GET /api/serve/applications/``.
    """
    import ray
    from ray.serve.context import _get_global_client

    return ray.get(_get_global_client()._controller.get_grpc_config.remote(), timeout=30)


def delete_app_nowait(name: str) -> None:
    """Asks Serve to delete app ``name`` without waiting until it is gone.

    Private: the ``_blocking`` argument of ``ray.serve.delete``. Public alternative: ``serve.delete(name)``,
    which waits until the app's replicas are gone.
    """
    from ray import serve

    serve.delete(name, _blocking=False)
