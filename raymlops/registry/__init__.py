"""Tracking and registry on MLflow, fingerprints and lineage, and the step cache."""

from raymlops.registry.cache import StepCache, StepOutput
from raymlops.registry.fingerprint import Fingerprinter
from raymlops.registry.models import (ModelRegistry, NotRegistered, PromotionRefused, RegistryError, check_gate,
                                      load_model, parse_uri)
from raymlops.registry.tracking import Tracker, TrackingError, tracking_uri

__all__ = ["Fingerprinter", "ModelRegistry", "NotRegistered", "PromotionRefused", "RegistryError", "StepCache", "StepOutput", "Tracker",
           "TrackingError", "check_gate", "load_model", "parse_uri", "tracking_uri"]
