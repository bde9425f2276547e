"""The ApexTrader kopf operator (import name never `operator`, which is the standard library)."""
