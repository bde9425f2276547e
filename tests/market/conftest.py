from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.market.fake_exchanges import FakeExchanges


@pytest.fixture
async def fake_exchanges() -> AsyncIterator[FakeExchanges]:
    server = FakeExchanges()
    await server.start()
    yield server
    await server.stop()
