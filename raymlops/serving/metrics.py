"""Prometheus metrics of the serving path, through ``ray.serve.metrics`` (Serve adds the application,
deployment and replica tags; Ray exports them with a ``ray_`` prefix on each node's metrics port)."""

from __future__ import annotations

import functools

LATENCY_MS = [1, 2, 3, 5, 8, 12, 20, 35, 50, 100, 200, 500, 1000, 2000, 5000]
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


@functools.cache
def router_metrics() -> dict:
    """Created once per replica process (metric objects register themselves with Ray)."""
    from ray.serve.metrics import Counter, Gauge, Histogram

    by = ("variant", "role")
    return {
        "requests": Counter("raymlops_requests_total", "Requests answered per variant (role: primary|shadow).", by),
        "errors": Counter("raymlops_request_errors_total", "5xx answers per variant.", by),
        "latency": Histogram("raymlops_request_latency_ms", "Router-side latency per variant (ms).", LATENCY_MS, by),
        "shadow_disagreements": Counter(
            "raymlops_shadow_disagreements_total",
            "Rows where a shadow's prediction differs from the answer.",
            ("variant",),
        ),
        "shadow_dropped": Counter(
            "raymlops_shadow_dropped_total", "Shadow copies skipped (too many in flight).", ("variant",)
        ),
        "log_dropped": Counter("raymlops_request_log_dropped_rows_total", "Request-log rows dropped."),
        "log_written": Counter("raymlops_request_log_rows_total", "Request-log rows written."),
        "weight": Gauge("raymlops_variant_weight", "Percent of traffic each variant gets.", ("variant",)),
    }


@functools.cache
def model_metrics() -> dict:
    from ray.serve.metrics import Histogram

    return {
        "batch_requests": Histogram(
            "raymlops_batch_requests", "Requests scored together in one model call.", BATCH_SIZES, ("variant",)
        ),
        "batch_rows": Histogram(
            "raymlops_batch_rows",
            "Rows scored together in one model call.",
            [1, 4, 16, 64, 256, 1024, 4096, 16384],
            ("variant",),
        ),
    }
