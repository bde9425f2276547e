"""The fake Binance server of tests/execution, for the venue tests."""

from tests.execution.conftest import Served, fake_binance, tls_files

__all__ = ["Served", "fake_binance", "tls_files"]
