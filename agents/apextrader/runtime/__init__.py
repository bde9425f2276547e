"""Agent runtime: settings, NATS connection, handler loop, /health /ready /metrics, graceful stop."""
