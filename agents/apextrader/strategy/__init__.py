"""StrategyBuilder agent: breakout and mean-reversion -> signal.proposed."""
