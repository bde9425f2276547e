"""Market data sources behind one interface: `synthetic`, `replay` and `ccxt`."""
