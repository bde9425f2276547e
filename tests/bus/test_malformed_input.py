"""Must hold: malformed input (not JSON, wrong schema, unknown type, oversized, missing correlation id)
goes to the DLQ with a reason and the original bytes, and the consumer keeps handling valid events.
Property-tested with hypothesis against a real nats-server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apextrader.bus import dlq
from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.middleware import build_chain
from apextrader.bus.publisher import event_headers
from apextrader.bus.topology import Topology, stream_name, subject
from apextrader.contracts import EVENT_TYPES, Envelope
from apextrader.local.nats_server import EmbeddedNats
from tests.bus.helpers import chain_config, consumer_decl, fast_topology, snapshot

MAX_BYTES = 4096
SUBJECT = subject("btc-perp", "market.snapshot", "shared")


def valid_doc(i: int = 1) -> dict[str, Any]:
    return orjson.loads(snapshot(i).to_json())  # type: ignore[no-any-return]


not_json = st.binary(min_size=1, max_size=200).filter(lambda b: _not_json(b)).map(lambda b: (b, "invalid"))


def _not_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    return False


@st.composite
def wrong_schema(draw: st.DrawFn) -> tuple[bytes, str]:
    doc = valid_doc()
    field = draw(st.sampled_from(["id", "timestamp", "data", "source_agent", "track", "pipeline"]))
    # Values no field listed accepts (an int would pass as a unix timestamp, any text as a pipeline).
    value = draw(st.one_of(st.none(), st.lists(st.integers(-1000, 1000), max_size=3), st.just({"x": 1})))
    doc[field] = value
    if field == "data":
        doc["data"] = {"exchange": "nowhere", "bar": value}
    return orjson.dumps(doc), "invalid"


@st.composite
def unknown_type(draw: st.DrawFn) -> tuple[bytes, str]:
    doc = valid_doc()
    doc["type"] = draw(st.text(min_size=1, max_size=20).filter(lambda t: t not in EVENT_TYPES))
    return orjson.dumps(doc), "unknown_type"


@st.composite
def oversized(draw: st.DrawFn) -> tuple[bytes, str]:
    doc = valid_doc()
    doc["padding"] = "x" * draw(st.integers(MAX_BYTES, 3 * MAX_BYTES))
    return orjson.dumps(doc), "oversized"


@st.composite
def missing_correlation(draw: st.DrawFn) -> tuple[bytes, str]:
    doc = valid_doc()
    if draw(st.booleans()):
        del doc["correlation_id"]
    else:
        doc["correlation_id"] = draw(st.sampled_from(["", None]))
    return orjson.dumps(doc), "invalid"


malformed = st.one_of(not_json, wrong_schema(), unknown_type(), oversized(), missing_correlation())


async def check_one(server: EmbeddedNats, topo: Topology, raw: bytes, reason: str, n: int) -> None:
    nc = await connect(server.url, name="hypothesis")
    try:
        js = nc.jetstream()
        decl = consumer_decl(topo, "feature-engineer")
        handled: list[str] = []

        async def handle(ev: Envelope) -> None:
            handled.append(ev.id)

        on_message = build_chain(
            chain_config(js, topo, decl, {"market.snapshot": handle}, max_event_bytes=MAX_BYTES)
        )
        sub = await js.pull_subscribe_bind(durable=decl.durable, stream=decl.stream)
        info = await js.consumer_info(decl.stream, decl.durable)
        if info.num_pending or info.num_ack_pending:  # left over by an earlier failing example
            for msg in await sub.fetch(1000, timeout=0.5):
                await msg.term()
        await js.publish(SUBJECT, raw, headers={"Nats-Msg-Id": f"bad-{n}"})
        good = snapshot(n)
        await js.publish(SUBJECT, good.to_json(), headers=event_headers(good))
        (bad_msg,) = await sub.fetch(1, timeout=5)
        bad = await on_message(bad_msg)
        assert bad.outcome == "invalid" and bad.dlq_reason == reason
        (good_msg,) = await sub.fetch(1, timeout=5)
        ok = await on_message(good_msg)
        assert ok.outcome == "acked" and handled == [good.id]  # the consumer stays healthy
        last = (await js.stream_info(stream_name("btc-perp", "DLQ"))).state.last_seq
        entry = await dlq.get_entry(js, stream_name("btc-perp", "DLQ"), last)
        assert entry is not None
        assert entry.data == raw and entry.reason == reason and entry.error
        assert entry.original_subject == SUBJECT and entry.deliveries == 1
    finally:
        await nc.close()


def test_malformed_events_go_to_dlq_with_reason(nats_server: EmbeddedNats, topology: Topology) -> None:
    topo = fast_topology(topology)

    async def setup() -> None:
        nc = await connect(nats_server.url)
        await ensure_topology(nc.jetstream(), topo)
        await nc.close()

    asyncio.run(setup())
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=malformed)
    def prop(case: tuple[bytes, str]) -> None:
        raw, reason = case
        asyncio.run(check_one(nats_server, topo, raw, reason, next(counter)))

    prop()
