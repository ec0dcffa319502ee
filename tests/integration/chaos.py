"""Estimators that misbehave on purpose: a worker that dies mid-fit, and a slow fit that logs itself."""

import os
import signal
import time

from sklearn.linear_model import LogisticRegression


class DieOnceClassifier(LogisticRegression):
    """SIGKILLs its own worker process the first time it fits (creating ``marker``); fits normally after."""

    def __init__(self, marker="", C=1.0, max_iter=300):
        super().__init__(C=C, max_iter=max_iter)
        self.marker = marker

    def fit(self, X, y, sample_weight=None):
        if self.marker and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(X, y, sample_weight)


class SlowLogClassifier(LogisticRegression):
    """Appends 'start C' and 'done C' lines to ``log`` around a fit that first sleeps ``delay`` seconds."""

    def __init__(self, log="", delay=0.0, C=1.0, max_iter=300):
        super().__init__(C=C, max_iter=max_iter)
        self.log, self.delay = log, delay

    def _say(self, what: str) -> None:
        with open(self.log, "a") as f:
            f.write(f"{what} C={self.C} pid={os.getpid()}\n")

    def fit(self, X, y, sample_weight=None):
        self._say("start")
        time.sleep(self.delay)
        out = super().fit(X, y, sample_weight)
        self._say("done")
        return out


class FlakyBooster:
    """A scikit-learn-style classifier over a saved XGBoost model that raises on every call while ``flag``
    exists: a model version that starts failing in production."""

    def __init__(self, model_path: str, flag: str):
        self.model_path, self.flag = model_path, flag
        self._booster = None

    def __getstate__(self):
        return {"model_path": self.model_path, "flag": self.flag, "_booster": None}

    def predict_proba(self, X):
        import numpy as np
        import xgboost

        if os.path.exists(self.flag):
            raise RuntimeError("injected failure: the flag file exists")
        if self._booster is None:
            self._booster = xgboost.Booster()
            self._booster.load_model(self.model_path)
        p = np.asarray(self._booster.inplace_predict(np.asarray(X, dtype=np.float32)), dtype=np.float64)
        return np.c_[1 - p, p]


def flaky_copy(run_dir, dst, flag: str, suffix: str = "flaky"):
    """A copy of an XGBoost run whose model is a `FlakyBooster` (a new run id, ``<id>-<suffix>``)."""
    import json
    import pickle
    import shutil
    from pathlib import Path

    dst = Path(dst)
    shutil.copytree(run_dir, dst)
    meta = json.loads((dst / "meta.json").read_text())
    meta.update(run_id=f"{meta['run_id']}-{suffix}", model_type="sklearn")
    (dst / "meta.json").write_text(json.dumps(meta))
    with open(dst / "model.pkl", "wb") as f:
        pickle.dump(FlakyBooster(str(dst / "model.ubj"), flag), f)
    return dst
