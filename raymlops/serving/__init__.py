"""Serving: a router (A/B split, sticky keys, shadows, canary) in front of one batched model deployment
per variant on Ray Serve, with a request log and Prometheus metrics."""

from raymlops.serving.deploy import deploy, export, shutdown

__all__ = ["deploy", "export", "shutdown"]
