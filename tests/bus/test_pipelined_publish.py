"""`Publisher.publish_many` on a real nats-server: every message stored once with its id and
headers, duplicates counted, a message without a good PubAck retried with the same id, and a
failure that persists raised, never dropped."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import APIError

from apextrader.bus.errors import BusError
from apextrader.bus.pipelined import Outgoing
from apextrader.bus.publisher import MSG_ID, Publisher
from apextrader.bus.topology import Topology, stream_name, subject
from tests.bus.helpers import snapshot


def _outgoing(n: int, start: int = 0) -> list[Outgoing]:
    events = [snapshot(i) for i in range(start, start + n)]
    subj = subject("btc-perp", "market.snapshot", "shared")
    return [Outgoing(subj, e.to_json(), e.id, e.correlation_id, e.type) for e in events]


async def test_every_message_is_stored_once_and_repeats_are_counted_as_duplicates(
    nc: NatsClient, bus: Topology
) -> None:
    js = nc.jetstream()
    publisher = Publisher(js)
    messages = _outgoing(700)
    assert await publisher.publish_many(messages, window=64) == 0  # window << messages: it waits
    assert await publisher.publish_many(messages[:300] + _outgoing(5, 700), window=64) == 300
    info = await js.stream_info(stream_name("btc-perp", "MARKET"))
    assert info.state.messages == 705
    first = await js.get_msg(stream_name("btc-perp", "MARKET"), seq=1)
    assert first.headers is not None and first.headers[MSG_ID] == messages[0].event_id
    assert first.data == messages[0].body


async def test_no_stream_is_retried_with_the_same_id_then_raised(nc: NatsClient, bus: Topology) -> None:
    # Nobody stores this subject: the server answers 503 (no responders) to every publish.
    lost = [m._replace(subject="apex.nowhere.market.snapshot") for m in _outgoing(3)]
    publisher = Publisher(nc.jetstream(), ack_timeout=0.5, give_up_s=0.3)
    with pytest.raises(BusError, match=lost[0].event_id):
        await publisher.publish_many(lost)


async def test_an_error_pubAck_is_raised_not_dropped(nc: NatsClient, bus: Topology) -> None:
    # The stream refuses a message whose expected last sequence is wrong: an error PubAck.
    js = nc.jetstream()
    publisher = Publisher(js)
    good = _outgoing(2)
    await publisher.publish_many(good)
    original = publisher._headers

    def wrong_sequence(m: Outgoing) -> dict[str, str]:
        return {**original(m), "Nats-Expected-Last-Sequence": "1"}

    publisher._headers = wrong_sequence  # type: ignore[method-assign]
    with pytest.raises(APIError, match="wrong last sequence"):
        await publisher.publish_many(_outgoing(1, 10))
