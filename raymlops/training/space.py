"""Turns YAML search spaces into Ray Tune search spaces."""

from __future__ import annotations

from typing import Any

from raymlops.config.models import SearchSpace


def to_tune(params: dict[str, Any], grid: bool = False) -> dict[str, Any]:
    """Maps each SearchSpace value to its ``ray.tune`` sampler; plain values pass through. ``grid``: choice
    values become grid axes too (``training.tune.search: grid``)."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, v in params.items():
        if not isinstance(v, SearchSpace):
            out[key] = v
            continue
        kind = v.kind
        if kind == "uniform":
            out[key] = tune.uniform(*v.uniform)
        elif kind == "loguniform":
            out[key] = tune.loguniform(*v.loguniform)
        elif kind == "randint":
            lo, hi = v.randint
            out[key] = tune.randint(lo, hi + 1)  # inclusive upper bound, as written in the YAML
        elif kind == "choice" and not grid:
            out[key] = tune.choice(v.choice)
        else:
            out[key] = tune.grid_search(v.grid if kind == "grid" else v.choice)
    return out
