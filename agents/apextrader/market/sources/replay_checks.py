"""The optional columns of a replay file, checked before anything is published: a bad value fails
`apex up` at start with the file, the column and the row (as the file counts them, from 0) named,
instead of stopping the replay mid-stream after rows went out. Nulls mean "not recorded"."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import polars as pl

from apextrader.quant.market_data import InvalidMarketData

ROW: Final = "_file_row"

#: column -> (lowest allowed value or None, whether the bound itself is allowed)
OPTIONAL: Final[dict[str, tuple[float | None, bool]]] = {
    "buy_volume": (0.0, True),
    "funding_rate": (None, True),
    "spread_bps": (0.0, True),
    "depth": (0.0, False),
    "liq_long": (0.0, True),
    "liq_short": (0.0, True),
}


def check_optional(frame: pl.DataFrame, path: Path) -> None:
    """Raise `InvalidMarketData` naming the first bad optional value (`frame` carries `ROW`)."""
    for name, (low, inclusive) in OPTIONAL.items():
        if name not in frame.columns:
            continue
        col = frame.get_column(name)
        if not (col.dtype.is_numeric() or col.dtype == pl.Null):
            raise InvalidMarketData(
                "invalid", f"{path}: column '{name}' has type {col.dtype}: numbers expected"
            )
        values = col.cast(pl.Float64)
        bad = values.is_not_null() & ~values.is_finite()
        if low is not None:
            bad = bad | (values < low if inclusive else values <= low).fill_null(False)
        hits = frame.filter(bad.fill_null(False))
        if hits.height:
            row, value = int(hits.get_column(ROW)[0]), hits.get_column(name)[0]
            when = hits.get_column("timestamp")[0]
            need = "finite" if low is None else f"{'>=' if inclusive else '>'} {low:g}"
            raise InvalidMarketData(
                "invalid",
                f"{path}: column '{name}' is {value} at row {row} (timestamp {when}): must be {need}",
            )
    if "buy_volume" in frame.columns and "volume" in frame.columns:
        over = frame.filter((pl.col("buy_volume") > pl.col("volume") * (1 + 1e-9)).fill_null(False))
        if over.height:
            row = int(over.get_column(ROW)[0])
            raise InvalidMarketData(
                "invalid",
                f"{path}: column 'buy_volume' exceeds 'volume' at row {row}: buys are part of the volume",
            )
