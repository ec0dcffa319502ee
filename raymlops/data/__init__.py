"""Data: sources read with Ray Data, splits, fitted preprocessing, and the input schema."""
