"""Pipeline: the only package that composes data, training, serving and monitoring."""

from raymlops.pipeline.runner import Pipeline, RunResult

__all__ = ["Pipeline", "RunResult"]
