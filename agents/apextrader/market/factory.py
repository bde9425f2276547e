"""The source a pipeline spec asks for (`spec.source.kind`), with the scanner's settings applied.

`ccxt` streams over websockets or polls REST as `source.transport` says.

Scanner settings (`agents.market-scanner`, typed in `contracts.agent_spec.MarketScannerSpec`):
- `pace`: `clock` (default) runs offline sources on the accelerated clock (`source.speed`, default
  `DEFAULT_OFFLINE_SPEED`); `max` publishes as fast as the bus takes it.
"""

from __future__ import annotations

from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.units import parse_duration
from apextrader.market.sources.base import MarketSource
from apextrader.market.sources.pacing import DEFAULT_OFFLINE_SPEED
from apextrader.market.sources.synthetic import SyntheticSource


def offline_speed(spec: TradingPipelineSpec) -> float | None:
    if spec.agent("market-scanner").pace == "max":
        return None
    return spec.source.speed or DEFAULT_OFFLINE_SPEED


def build_source(spec: TradingPipelineSpec) -> MarketSource:
    src = spec.source
    common = {
        "exchanges": list(spec.exchanges),
        "symbols": list(spec.symbols),
        "timeframe": spec.timeframe,
        "backfill_bars": src.backfill_bars,
        "hz": src.snapshot_hz,
        "depth_levels": src.depth_levels,
    }
    if src.kind == "synthetic":
        return SyntheticSource(
            seed=src.seed,
            speed=offline_speed(spec),
            structure=src.structure(),
            **common,  # type: ignore[arg-type]
        )
    if src.kind == "replay":
        assert src.path is not None  # the spec model requires it
        from apextrader.market.sources.replay import ReplaySource  # polars: only to read the file

        return ReplaySource(src.path, speed=offline_speed(spec), **common)  # type: ignore[arg-type]
    stale_after = parse_duration(spec.watcher.stale_after).total_seconds()
    if src.transport == "websocket":  # ccxt (~100 MB) is imported only when used
        from apextrader.market.sources.websocket_source import CcxtStreamSource

        return CcxtStreamSource(stale_after_s=stale_after, **common)  # type: ignore[arg-type]
    from apextrader.market.sources.rest_source import CcxtSource

    return CcxtSource(stale_after_s=stale_after, **common)  # type: ignore[arg-type]
