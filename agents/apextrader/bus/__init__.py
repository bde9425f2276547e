"""The bus: JetStream client, middleware chain, DLQ, tracing, KV, and the topology of names."""
