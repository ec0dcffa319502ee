"""Serving: a router (A/B split, sticky keys, shadows, canary) in front of one batched model deployment
per variant on Ray Serve, with a request log and Prometheus metrics."""

from raymlops.serving.deploy import delete_apps, deploy, export, shutdown

__all__ = ["delete_apps", "deploy", "export", "shutdown"]
