"""Monitoring: drift and data-quality detectors in Ray actors, late-label performance, alerts, retraining."""

from __future__ import annotations


def stop(app: str, namespace: str) -> list[str]:
    """Kills the app's monitor actors (their state and history stay in storage); returns their names."""
    import ray

    from raymlops.monitoring.actor import _kill
    from raymlops.monitoring.app_monitor import app_monitor_name

    prefix = f"raymlops-monitor-{app}-"
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace and (a["name"].startswith(prefix) or a["name"] == app_monitor_name(app))
    ]
    for name in names:
        _kill(name, namespace)
    return names
