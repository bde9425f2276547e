"""`quant.live.BarBuffer.copy`: the backtester refreshes on a copy while its handler keeps adding bars."""

from __future__ import annotations

from apextrader.quant.live import INPUT_COLUMNS, BarBuffer


def _values(x: float) -> dict[str, float | None]:
    return dict.fromkeys(INPUT_COLUMNS, x)


def test_a_copy_does_not_see_later_bars_and_keeps_the_cadence_count() -> None:
    buffer = BarBuffer(3)
    for t in range(1, 5):
        buffer.add(t * 60_000, _values(float(t)))
    frozen = buffer.copy()
    buffer.add(5 * 60_000, _values(5.0))
    assert list(frozen.times) == [120_000, 180_000, 240_000]  # the last 3 of 4, not the 5th
    assert frozen.added == 4 and buffer.added == 5
    assert frozen.arrays()[0].close.tolist() == [2.0, 3.0, 4.0]
    frozen.add(9 * 60_000, _values(9.0))
    assert list(buffer.times)[-1] == 300_000  # and the original does not see the copy's bars
