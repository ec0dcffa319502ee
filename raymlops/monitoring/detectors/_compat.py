"""alibi-detect's private APIs used by raymlops, behind one function (tests/unit/test_compat.py fails when an
alibi-detect upgrade moves one)."""

from __future__ import annotations

from typing import Any

import numpy as np


def fast_online_classes(module: str) -> dict[str, type]:
    """``FastCVMDriftOnline`` and ``FastFETDriftOnline``: alibi-detect's ``CVMDriftOnline`` and
    ``FETDriftOnline`` with the null streams their thresholds are calibrated on simulated by
    `raymlops.monitoring.detectors.calibration` (the same statistics for the same random draws, much
    faster). The classes say they live in ``module`` (pickled detectors name them there).

    Private: the overridden ``_simulate_streams`` of both (called by their ``_configure_thresholds`` when
    constructed), ``alibi_detect.cd.cvm_online._normalise_stats`` and ``FETDriftOnline._exp_moving_avg``.
    Public alternative: none that is fast; the plain ``CVMDriftOnline`` / ``FETDriftOnline`` calibrate to the
    same thresholds for the same seed (~100 s for a 2,000-row reference at ERT 1000 on 2 cores). alibi-detect
    has no hook for supplying the null streams (its online detectors came with SeldonIO/alibi-detect#359).
    """
    from alibi_detect.cd import CVMDriftOnline, FETDriftOnline
    from alibi_detect.cd.cvm_online import _normalise_stats

    from raymlops.monitoring.detectors.calibration import cvm_streams, fet_streams

    class FastCVMDriftOnline(CVMDriftOnline):
        def _simulate_streams(self, t_max: int) -> np.ndarray:
            return cvm_streams(self.n, t_max, self.window_sizes, self.n_bootstraps, self.batch_size, _normalise_stats)

    class FastFETDriftOnline(FETDriftOnline):
        def _simulate_streams(self, x_ref: np.ndarray, pbar: Any) -> np.ndarray:
            return fet_streams(
                x_ref,
                self.t_max,
                self.window_sizes,
                self.n_bootstraps,
                self.alternative,
                lambda a: self._exp_moving_avg(a, self.lam),
            )

    classes = (FastCVMDriftOnline, FastFETDriftOnline)
    for cls in classes:
        cls.__module__, cls.__qualname__ = module, cls.__name__  # pickled by reference to ``module``
    return {cls.__name__: cls for cls in classes}
