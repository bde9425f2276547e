"""Backtester agent: the walk-forward gate -> signal.validated / signal.rejected."""
