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
