"""Pipeline configuration: pydantic models mirroring the YAML, the loader, and the generated reference."""

from raymlops.config.loader import json_schema, load_config
from raymlops.config.models import PipelineConfig, SearchSpace
from raymlops.config.reference import markdown_reference

__all__ = ["PipelineConfig", "SearchSpace", "json_schema", "load_config", "markdown_reference"]
