from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.market.fake_exchanges import FakeExchanges
from tests.market.fake_streams import FakeStreams


@pytest.fixture
async def fake_exchanges() -> AsyncIterator[FakeExchanges]:
    server = FakeExchanges()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fake_streams(fake_exchanges: FakeExchanges) -> AsyncIterator[FakeStreams]:
    server = FakeStreams(fake_exchanges)
    await server.start()
    yield server
    await server.stop()
