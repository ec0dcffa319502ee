"""Tracking and registry on MLflow, and lineage."""

from raymlops.registry.models import (
    ModelRegistry,
    NotRegistered,
    PromotionRefused,
    RegistryError,
    check_gate,
    load_model,
    parse_uri,
)
from raymlops.registry.tracking import Tracker, TrackingError, tracking_uri

__all__ = [
    "ModelRegistry",
    "NotRegistered",
    "PromotionRefused",
    "RegistryError",
    "Tracker",
    "TrackingError",
    "check_gate",
    "load_model",
    "parse_uri",
    "tracking_uri",
]
