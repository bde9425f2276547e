"""Process-free quant library: indicators, strategies, backtest engine, walk-forward, stats."""
