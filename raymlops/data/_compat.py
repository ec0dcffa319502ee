"""Ray's private APIs used by raymlops' Ray helpers (`raymlops.data.ray_env`), each behind one name
(tests/unit/test_compat.py fails when a Ray upgrade moves one). Serve's are in `raymlops.serving._compat`.
"""

from __future__ import annotations

# Loggers of Ray's private modules whose notices say nothing about a run (see ray_env._mute_known_notices).
# A renamed module only lets its notice through again. Public alternative: none; Ray has no switch for
# the token-auth notice, and the "Progress bars disabled" one follows from DataContext.enable_progress_bars.
NOTICE_LOGGERS = ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress")
