"""Durations ("500ms", "30s", "5m", "1h", "7d") and Kubernetes quantities ("512Mi", "1G")."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_QUANTITY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_DURATION_RE = re.compile(DURATION_PATTERN)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def parse_duration(text: str) -> timedelta:
    """`"5m"` → 5 minutes. Raises ValueError naming the accepted form."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(
            f"invalid duration {text!r}: use a whole number with ms, s, m, h or d (e.g. 30s, 5m)"
        )
    unit = m.group(1)
    return timedelta(seconds=int(text.strip()[: -len(unit)]) * _DURATION_UNITS[unit])


def parse_quantity(text: str | int) -> int:
    """`"512Mi"` → 536870912 bytes."""
    if isinstance(text, int):
        return text
    m = _QUANTITY_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid quantity {text!r}: use e.g. 512Mi, 1Gi or a number of bytes")
    unit = m.group(2) or ""
    number = text.strip()[: len(text.strip()) - len(unit)]
    return int(float(number) * _QUANTITY_UNITS[unit])


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, Field(pattern=DURATION_PATTERN), AfterValidator(_check_duration)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]


#: Seconds per bar of each timeframe the spec allows (`contracts.spec.Timeframe`).
TIMEFRAME_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                     "4h": 14400, "1d": 86400}  # fmt: skip


def timeframe_seconds(timeframe: str) -> int:
    """Seconds per bar; ValueError naming the allowed timeframes otherwise."""
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAME_SECONDS)}"
        ) from None
