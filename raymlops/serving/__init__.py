"""Serving: the Ray Serve application (FastAPI ingress) for one run's model."""

from raymlops.serving.deploy import deploy, shutdown

__all__ = ["deploy", "shutdown"]
