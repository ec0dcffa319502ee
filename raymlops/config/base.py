"""What every config section shares: strictness, the registry URI and import path forms, and the shape of a cross-field issue."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

Issue = tuple[tuple[str | int, ...], str]  # a cross-field problem: (key path, message)
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # 'package.module:function'
MODEL_URI = re.compile(r"models:/([^/@]+)(?:@([A-Za-z0-9_-]+)|/(\d+))")


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
