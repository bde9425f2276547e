"""MarketScanner agent: market data sources (ccxt, replay, synthetic) -> market.snapshot."""
