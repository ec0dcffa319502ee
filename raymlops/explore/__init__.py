"""Exploration of large datasets: one-pass distributed profiles with sketches, dataset comparison and
self-contained HTML reports (``raymlops explore``)."""

from raymlops.explore.api import Profile, explore

__all__ = ["Profile", "explore"]
