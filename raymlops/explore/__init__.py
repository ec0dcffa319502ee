"""Exploration of large datasets: one-pass distributed profiles with sketches, dataset comparison and
self-contained HTML reports (``raymlops explore``).

``raymlops.explore`` is the function (``raymlops/__init__`` binds it over this package's name, as the issue's
API asks); import this package's modules with ``from raymlops.explore.X import ...``, which always works.
"""

from raymlops.explore.api import Profile, explore

__all__ = ["Profile", "explore"]
