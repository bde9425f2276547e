"""The `apex up` supervisor: embedded nats-server, agents as `apex agent` subprocesses."""
