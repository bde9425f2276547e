"""The event watcher's rules: snapshots in, alert changes out (raised, severity changed, cleared).

Each alert is keyed by (kind, exchange, symbol) and published only when its state changes, so the
risk managers see one `market.alert` when a condition starts and one (`active: false`) when it
normalises. Conditions clear below `CLEAR_RATIO` x threshold so a value hovering at the threshold
does not flap. Snapshots whose `quality` is not `ok` feed no statistic (bad data is alerted as
such, never measured); backfill snapshots warm the statistics up but raise nothing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apextrader.contracts.payloads import AlertKind, MarketAlert, MarketSnapshot, Severity
from apextrader.contracts.spec import WatcherThresholds
from apextrader.contracts.units import TIMEFRAME_SECONDS, parse_duration
from apextrader.watcher.detectors import InstrumentState, LiquidationState

CLEAR_RATIO = 0.8

Key = tuple[AlertKind, str | None, str | None]


@dataclass
class Watcher:
    thresholds: WatcherThresholds
    timeframe: str = "1m"
    instruments: dict[tuple[str, str], InstrumentState] = field(default_factory=dict)
    active: dict[Key, MarketAlert] = field(default_factory=dict)
    source_seen: dict[str, datetime] = field(default_factory=dict)
    last_closed: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tf = TIMEFRAME_SECONDS.get(self.timeframe, 60)
        self.day_bars = max(2, 86400 // tf)
        window_s = parse_duration(self.thresholds.liquidation_window).total_seconds()
        self.window_bars = max(1, round(window_s / tf))
        self.stale_after: timedelta = parse_duration(self.thresholds.stale_after)

    # --- state changes -------------------------------------------------------------------------
    def _set(
        self,
        out: list[MarketAlert],
        key: Key,
        raised: bool,
        cleared: bool,
        severity: Severity,
        reason: str,
        value: float | None = None,
        threshold: float | None = None,
    ) -> None:
        """Raise (or re-grade) when `raised`; clear when `cleared`; otherwise keep the state."""
        kind, exchange, symbol = key
        current = self.active.get(key)
        if raised and (current is None or current.severity != severity):
            alert = MarketAlert(
                kind=kind,
                severity=severity,
                exchange=exchange,
                symbol=symbol,  # type: ignore[arg-type]
                reason=reason,
                value=value,
                threshold=threshold,
            )
            self.active[key] = alert
            out.append(alert)
        elif cleared and current is not None:
            del self.active[key]
            out.append(
                current.model_copy(update={"active": False, "reason": f"cleared: {reason}", "value": value})
            )

    def _state(self, exchange: str, symbol: str) -> InstrumentState:
        st = self.instruments.get((exchange, symbol))
        if st is None:
            st = InstrumentState(LiquidationState(self.day_bars, self.window_bars))
            self.instruments[(exchange, symbol)] = st
        return st

    # --- inputs --------------------------------------------------------------------------------
    def on_snapshot(self, snap: MarketSnapshot, now: datetime) -> list[MarketAlert]:
        out: list[MarketAlert] = []
        ex, sym = snap.exchange, snap.symbol
        st = self._state(ex, sym)
        quiet = snap.backfill  # warm up only
        if not quiet:
            self.source_seen[ex] = max(now, self.source_seen.get(ex, now))
            out += self._recover_source(ex)
            self._quality_rules(out, snap)
        if snap.quality != "ok" or (snap.depth is not None and snap.depth.crossed):
            return [] if quiet else out
        last = self.last_closed.get((ex, sym))
        if snap.closed and last is not None and snap.bar.open_time <= last:
            return [] if quiet else out  # a bar seen before (history, then redelivery): measured once
        st.liquidations.add(snap)
        mid = snap.depth.mid if snap.depth is not None else None
        st.price, st.price_seen, st.price_bar = (mid or snap.bar.close), now, snap.bar.open_time
        if snap.closed:
            self.last_closed[(ex, sym)] = snap.bar.open_time
            z24, zwin, wsum = st.liquidations.close_bar()
            ztr, zret = st.volatility.close_bar(snap.bar.high, snap.bar.low, snap.bar.close)
            if not quiet:
                self._liquidation_rule(out, ex, sym, z24, zwin, wsum)
                self._volatility_rule(out, ex, sym, ztr, zret)
        if not quiet:
            self._funding_rule(out, snap)
            self._divergence_rule(out, sym, now, snap.bar.open_time)
        return [] if quiet else out

    def check_stale(self, now: datetime) -> list[MarketAlert]:
        """Sources (exchanges) with no snapshot for `staleAfter`; run on a timer."""
        out: list[MarketAlert] = []
        limit = self.stale_after.total_seconds()
        for ex, seen in self.source_seen.items():
            age = (now - seen).total_seconds()
            self._set(
                out,
                ("stale_data", ex, None),
                age > limit,
                False,
                "halt",
                f"no data from {ex} for {age:.1f}s",
                age,
                limit,
            )
        return out

    def _recover_source(self, ex: str) -> list[MarketAlert]:
        out: list[MarketAlert] = []
        self._set(out, ("stale_data", ex, None), False, True, "halt", f"data from {ex} again")
        return out

    # --- rules ---------------------------------------------------------------------------------
    def _quality_rules(self, out: list[MarketAlert], snap: MarketSnapshot) -> None:
        ex, sym = snap.exchange, snap.symbol
        stale = snap.quality == "stale"
        self._set(
            out, ("stale_data", ex, sym), stale, not stale, "halt", f"scanner flags {sym} on {ex} stale"
        )
        book = snap.depth
        locked = bool(book and book.bids and book.asks and book.bids[0].price >= book.asks[0].price)
        crossed = snap.quality == "crossed" or locked
        self._set(
            out,
            ("crossed_book", ex, sym),
            crossed,
            not crossed,
            "halt",
            f"{sym} on {ex}: best bid >= best ask" if crossed else "book normal",
        )
        gap = snap.quality == "gap"
        self._set(out, ("data_gap", ex, sym), gap, not gap, "info", f"{sym} on {ex}: bars missing")

    def _liquidation_rule(
        self, out: list[MarketAlert], ex: str, sym: str, z24: float | None, zwin: float | None, wsum: float
    ) -> None:
        th = self.thresholds.liquidation_z
        hits = [z for z in (z24, zwin) if z is not None and z >= th]
        worst = max((z for z in (z24, zwin) if z is not None), default=0.0)
        severity: Severity = "halt" if len(hits) == 2 else "reduce"
        self._set(
            out,
            ("liquidation_cascade", ex, sym),
            bool(hits),
            worst < th * CLEAR_RATIO,
            severity,
            f"liquidations z24={z24 or 0:.1f} z{self.window_bars}bars={zwin or 0:.1f} ({wsum:,.0f} notional)",
            worst,
            th,
        )

    def _volatility_rule(
        self, out: list[MarketAlert], ex: str, sym: str, ztr: float | None, zret: float | None
    ) -> None:
        th = self.thresholds.volatility_z
        worst = max((z for z in (ztr, zret) if z is not None), default=0.0)
        self._set(
            out,
            ("volatility_spike", ex, sym),
            worst >= th,
            worst < th * CLEAR_RATIO,
            self.thresholds.spike_severity,
            f"true range z={ztr or 0:.1f}, |return| z={zret or 0:.1f}",
            worst,
            th,
        )

    def _funding_rule(self, out: list[MarketAlert], snap: MarketSnapshot) -> None:
        if snap.funding_rate is None:
            return
        th, f = self.thresholds.funding_abs, abs(snap.funding_rate)
        self._set(
            out,
            ("funding_extreme", snap.exchange, snap.symbol),
            f >= th,
            f < th * CLEAR_RATIO,
            self.thresholds.spike_severity,
            f"funding {snap.funding_rate:+.4%} per 8h",
            snap.funding_rate,
            th,
        )

    def _divergence_rule(self, out: list[MarketAlert], sym: str, now: datetime, bar: datetime) -> None:
        # Only prices of the same bar (market time) and fresh by wall time are compared: under an
        # accelerated clock a few wall seconds are many bars, and real prices move in between.
        fresh = {
            ex: st.price
            for (ex, s), st in self.instruments.items()
            if s == sym
            and st.price is not None
            and st.price_bar == bar
            and st.price_seen is not None
            and now - st.price_seen <= self.stale_after
        }
        if len(fresh) < 2:
            return
        ref = statistics.median(fresh.values())
        th = self.thresholds.divergence_bps
        for ex, price in fresh.items():
            bps = abs(price - ref) / ref * 1e4
            self._set(
                out,
                ("exchange_divergence", ex, sym),
                bps > th,
                bps < th * CLEAR_RATIO,
                "reduce",
                f"{sym} on {ex} is {bps:.0f} bps from the cross-exchange median",
                bps,
                th,
            )
