"""A local websocket server speaking Binance USDⓈ-M and Bybit v5 public streams from recorded frames.

Unmodified ccxt.pro clients are pointed at it by rewriting their `urls['api']['ws']` hosts (their
REST calls, for markets, history, the Binance book snapshot and funding, go to `FakeExchanges`).
The frames are tests/fixtures/ccxt/<exchange>/ws/<topic>.json in each venue's wire format. Like
the venue, the server acknowledges subscriptions in its own protocol, publishes each frame when
the shared clock (`FakeExchanges.now_ms`) passes its event time to whoever is subscribed then
(a frame published while nobody listens is gone), sends Bybit's book snapshot on subscription,
numbers Binance's book diffs so they chain onto its REST snapshot, and misbehaves on demand:
`drop()` closes every connection, `refuse` answers the upgrade with 503, `silent` keeps
connections open but sends nothing.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import defaultdict
from typing import Any

import ccxt.async_support as ccxt_async
from aiohttp import WSMsgType, web

from apextrader.contracts.payloads import Exchange
from apextrader.market.sources.ccxt_client import make_exchange, point_at, point_ws_at
from tests.market.fake_exchanges import FIXTURES, FakeExchanges

_TIME_KEY = {"binance": "E", "bybit": "ts"}


def _frames(exchange: str, topic: str) -> list[dict[str, Any]]:
    path = FIXTURES / exchange / "ws" / f"{topic}.json"
    return json.loads(path.read_text()) if path.exists() else []


class FakeStreams:
    def __init__(self, rest: FakeExchanges) -> None:
        self.rest = rest
        self.refuse = False
        self.silent = False
        self.connections: dict[str, list[web.WebSocketResponse]] = defaultdict(list)
        self.subscriptions: dict[str, list[str]] = defaultdict(list)  # every SUBSCRIBE, in order
        self.dials: dict[str, int] = defaultdict(int)
        self._subscribers: dict[tuple[str, str], set[web.WebSocketResponse]] = defaultdict(set)
        self._published: dict[tuple[str, str], int] = {}  # frames of a topic already out
        self._cursor = rest.now_ms
        self._update_id: dict[str, int] = {}  # Binance book diff ids per market id
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{exchange}/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"ws://127.0.0.1:{port}"

    async def stop(self) -> None:
        for exchange in list(self.connections):
            await self.drop(exchange)
        if self._runner:
            await self._runner.cleanup()

    def client(self, exchange: Exchange) -> ccxt_async.Exchange:
        """An unmodified ccxt.pro client: REST at `FakeExchanges`, websockets here."""
        client = make_exchange(exchange, timeout_ms=1_000, rate_limit_ms=2, streaming=True)
        point_at(client, f"{self.rest.base}/{exchange}")
        point_ws_at(client, f"{self.base}/{exchange}")
        return client

    def subscribed(self, exchange: str, topics: int) -> bool:
        return sum(len(s) for (e, _), s in self._subscribers.items() if e == exchange) >= topics

    # -- the market moves -----------------------------------------------------------------------
    async def advance(self, seconds: float, step_s: float = 10.0) -> None:
        """Move the shared clock in steps, publishing the frames that fall due at each."""
        end = self.rest.now_ms + int(seconds * 1000)
        while self.rest.now_ms < end:
            self.rest.now_ms = min(end, self.rest.now_ms + int(step_s * 1000))
            await self.publish_due()
            await asyncio.sleep(0.05)  # let the client take them in, as a network would

    async def publish_due(self) -> None:
        for exchange, key in _TIME_KEY.items():
            for (e, topic), subs in list(self._subscribers.items()):
                if e != exchange:
                    continue
                frames = _frames(exchange, topic)
                sent = self._published.get((e, topic), 0)
                while sent < len(frames) and frames[sent][key] <= self.rest.now_ms:
                    if frames[sent][key] > self._cursor:  # not before the subscription
                        await self._send(exchange, topic, subs, frames[sent])
                    sent += 1
                self._published[(e, topic)] = sent
        self._cursor = self.rest.now_ms

    async def inject(self, exchange: str, topic: str, name: str) -> None:
        """Publish the frames of `<topic>_<name>.json` now (a crossed book, say)."""
        for frame in _frames(exchange, f"{topic}_{name}"):
            frame[_TIME_KEY[exchange]] = self.rest.now_ms
            await self._send(exchange, topic, self._subscribers[(exchange, topic)], frame)

    async def drop(self, exchange: str) -> None:
        for ws in self.connections.pop(exchange, []):
            await ws.close()

    # -- serving --------------------------------------------------------------------------------
    async def _send(
        self, exchange: str, topic: str, subs: set[web.WebSocketResponse], frame: dict[str, Any]
    ) -> None:
        if self.silent:
            return
        frame = copy.deepcopy(frame)
        if exchange == "binance" and frame.get("e") == "depthUpdate":
            self._chain(frame)
        for ws in list(subs):
            if not ws.closed:
                await ws.send_str(json.dumps(frame))

    def _chain(self, frame: dict[str, Any]) -> None:
        """Binance diff ids: `pu` = the previous diff's `u`, the first one spans the REST snapshot's id."""
        market = frame["s"]
        last = self._update_id.get(market, self.rest.binance_book_id(market))
        frame["pu"], frame["U"], frame["u"] = last, last + 1, last + 9
        self._update_id[market] = self.rest.book_update_ids[market] = last + 9

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = request.match_info["exchange"]
        self.dials[exchange] += 1
        if self.refuse:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections[exchange].append(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_message(exchange, ws, json.loads(msg.data))
        finally:
            for subs in self._subscribers.values():
                subs.discard(ws)
        return ws

    async def _on_message(self, exchange: str, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        if exchange == "binance" and msg.get("method") == "SUBSCRIBE":
            await ws.send_str(json.dumps({"result": None, "id": msg["id"]}))
            topics = list(msg["params"])
        elif exchange == "bybit" and msg.get("op") == "subscribe":
            ack = {
                "success": True,
                "ret_msg": "",
                "conn_id": "fake",
                "req_id": msg.get("req_id"),
                "op": "subscribe",
            }
            await ws.send_str(json.dumps(ack))
            topics = list(msg["args"])
        elif exchange == "bybit" and msg.get("op") == "ping":
            pong = {
                "success": True,
                "ret_msg": "pong",
                "conn_id": "fake",
                "req_id": msg.get("req_id"),
                "op": "ping",
            }
            await ws.send_str(json.dumps(pong))
            return
        else:
            return
        for topic in topics:
            self.subscriptions[exchange].append(topic)
            self._subscribers[(exchange, topic)].add(ws)
            first = _frames(exchange, topic)[:1]
            if exchange == "bybit" and first and first[0].get("type") == "snapshot" and "orderbook" in topic:
                snapshot = {**first[0], "ts": self.rest.now_ms, "cts": self.rest.now_ms - 3}
                await self._send(exchange, topic, {ws}, snapshot)
