"""`apex data download` runs against the recorded exchanges of the market tests."""

from tests.market.conftest import fake_exchanges

__all__ = ["fake_exchanges"]
