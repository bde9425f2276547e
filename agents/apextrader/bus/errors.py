"""Exceptions a handler may raise to steer the bus."""

from __future__ import annotations


class Reject(Exception):
    """Send the event to the DLQ at once, without retries: bad input that will never succeed.

    `reason` is one of `apex_dlq_total`'s reasons (`invalid`, `unknown_type`, `oversized`, ...) or a
    short word of the agent's own; `message` says what was wrong.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message or reason


class BusError(RuntimeError):
    """The bus could not do what was asked (e.g. a publish was not acknowledged)."""


class NotYet(Exception):
    """The event cannot be handled *yet* (e.g. the state it needs has not arrived on another stream):
    it is redelivered with back-off like any failure, and dead-lettered only after `max_deliver`."""
