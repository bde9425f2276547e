"""The pure coalescing rule (`bus.coalesce.superseded`): which messages of a fetched batch are shed."""

from __future__ import annotations

from apextrader.bus.coalesce import coalesce_key, superseded

A = coalesce_key("binance", "BTC/USDT:USDT", "1m")
B = coalesce_key("bybit", "BTC/USDT:USDT", "1m")


def test_key_names_the_market() -> None:
    assert A == "binance|BTC/USDT:USDT|1m"
    assert coalesce_key("binance", "BTC/USDT:USDT", "5m") != A


def test_a_single_message_is_never_shed() -> None:
    assert superseded([A]) == frozenset()
    assert superseded([]) == frozenset()


def test_the_latest_snapshot_of_each_market_wins() -> None:
    #        0  1  2  3  4
    keys = [A, B, A, A, B]
    assert superseded(keys) == {0, 1, 2}


def test_unmarked_messages_are_never_shed_nor_supersede() -> None:
    # a closed bar (None) between two forming snapshots of the same market: the earlier forming
    # one is still superseded by the later forming one, and the closed bar is kept
    assert superseded([A, None, A]) == {0}
    # a closed bar after the last forming snapshot does not supersede it
    assert superseded([A, None]) == frozenset()
    assert superseded([None, None, None]) == frozenset()


def test_distinct_markets_in_a_batch_are_all_kept() -> None:
    assert superseded([A, B, None]) == frozenset()
