"""Run artifacts: the run directory layout, atomic writes, and the Predictor loaded from a run."""

from raymlops.artifacts.predictor import Predictor, load_predictor
from raymlops.artifacts.run import RunWriter, find_run, new_run_id

__all__ = ["Predictor", "RunWriter", "find_run", "load_predictor", "new_run_id"]
