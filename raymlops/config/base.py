"""What every config section shares: strictness, and the registry URI form."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

MODEL_URI = re.compile(r"models:/([^/@]+)(?:@([A-Za-z0-9_-]+)|/(\d+))")


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
