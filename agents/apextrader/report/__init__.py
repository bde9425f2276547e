"""Self-contained HTML reports and plots."""
