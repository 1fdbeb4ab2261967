"""Data-quality checks of observations: pure functions over plain data (docs/quality.md)."""
