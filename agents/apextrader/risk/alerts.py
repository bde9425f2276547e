"""The active `market.alert`s the gate obeys, by scope: an alert with exchange and symbol covers
that instrument, one with only an exchange covers every symbol there, one with neither covers all."""

from __future__ import annotations

from dataclasses import dataclass, field

from apextrader.contracts.payloads import MarketAlert, Severity
from apextrader.risk.portfolio import Instrument

_RANK: dict[Severity, int] = {"info": 0, "reduce": 1, "halt": 2}
AlertKey = tuple[str, str | None, str | None]


@dataclass
class ActiveAlerts:
    active: dict[AlertKey, MarketAlert] = field(default_factory=dict)

    def apply(self, alert: MarketAlert) -> None:
        key: AlertKey = (alert.kind, alert.exchange, alert.symbol)
        if alert.active:
            self.active[key] = alert
        else:
            self.active.pop(key, None)

    def severity(self, instrument: Instrument) -> Severity | None:
        """The most severe active alert covering `instrument`."""
        exchange, symbol = instrument
        best: MarketAlert | None = None
        for (_, ex, sym), alert in self.active.items():
            covers = ex in (None, exchange) and sym in (None, symbol)
            if covers and (best is None or _RANK[alert.severity] > _RANK[best.severity]):
                best = alert
        return best.severity if best else None

    def reason(self, instrument: Instrument, severity: Severity) -> str:
        exchange, symbol = instrument
        for (_, ex, sym), alert in self.active.items():
            if alert.severity == severity and ex in (None, exchange) and sym in (None, symbol):
                return f"{alert.kind}: {alert.reason}"
        return ""
