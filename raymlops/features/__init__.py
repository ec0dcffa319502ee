"""Feature store: offline definitions, materialization and online serving of features."""
