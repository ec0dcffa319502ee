"""Pipeline configuration: pydantic models mirroring the YAML, and the loader."""

from raymlops.config.loader import json_schema, load_config
from raymlops.config.models import PipelineConfig, SearchSpace

__all__ = ["PipelineConfig", "SearchSpace", "json_schema", "load_config"]
