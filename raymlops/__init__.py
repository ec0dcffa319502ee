"""raymlops: one declarative YAML from raw data to a monitored model endpoint, on Ray."""

from raymlops.artifacts import Predictor
from raymlops.config import PipelineConfig, load_config
from raymlops.errors import ConfigError, RaymlopsError
from raymlops.explore import explore  # raymlops.explore(data, ...): the function (the package stays importable)
from raymlops.features import FeatureStore
from raymlops.pipeline import Pipeline, RunResult
from raymlops.registry import load_model

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "FeatureStore",
    "explore",
    "Pipeline",
    "PipelineConfig",
    "Predictor",
    "RaymlopsError",
    "RunResult",
    "load_config",
    "load_model",
]
