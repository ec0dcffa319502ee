"""Feature platform: feature views, pipelines, the offline store with point-in-time joins, online stores."""

from raymlops.features.store import FeatureStore, OnlineFeatures

__all__ = ["FeatureStore", "OnlineFeatures"]
