"""EventWatcher agent: market conditions -> market.alert."""
