"""Training: search spaces, metrics, and Ray Tune searches over XGBoost (Ray Train) and scikit-learn."""

from raymlops.training.search import SearchResult, TrainSpec, run_search

__all__ = ["SearchResult", "TrainSpec", "run_search"]
