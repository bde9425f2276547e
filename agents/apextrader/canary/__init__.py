"""The pure canary state machine (steps, phases) and the Go/No-Go analysis (operator and apex up)."""
