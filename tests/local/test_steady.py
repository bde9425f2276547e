"""When `apex up` calls the start-up backlog over: at most one event per consumer at a trickle,
about `STEADY_LAG_S` of market data per consumer at high rates (where messages are always in
flight and "one" is never observed)."""

from __future__ import annotations

from apextrader.bus.topology import declare
from apextrader.contracts import TradingPipeline
from apextrader.local.up import STEADY_LAG_S, shed_since, steady_backlog


def _flow_consumers(tp: TradingPipeline) -> int:
    """Every consumer: the decision agents' market data (deliver new) catches up last."""
    return len(declare(tp.spec, tp.name).consumers)


def test_one_event_per_flow_consumer_at_a_trickle(example_pipeline: TradingPipeline) -> None:
    spec = example_pipeline.spec.model_copy(
        update={"source": example_pipeline.spec.source.model_copy(update={"snapshot_hz": 1.0})}
    )
    tp = example_pipeline.model_copy(update={"spec": spec})
    assert steady_backlog(spec, declare(spec, tp.name)) == _flow_consumers(tp)


def test_a_fraction_of_a_second_of_market_data_at_high_rates(example_pipeline: TradingPipeline) -> None:
    spec = example_pipeline.spec.model_copy(
        update={"source": example_pipeline.spec.source.model_copy(update={"snapshot_hz": 80.0})}
    )
    markets = len(spec.symbols) * len(spec.exchanges)
    per_consumer = steady_backlog(spec, declare(spec, example_pipeline.name)) // _flow_consumers(
        example_pipeline
    )
    assert per_consumer == round(80.0 * markets * STEADY_LAG_S) > 1


def test_shed_counted_from_the_steady_window_survives_a_restart() -> None:
    before = {"feature-engineer": 40, "event-watcher": 10}
    now = {"feature-engineer": 45, "event-watcher": 3, "execution-stable": 2}
    # event-watcher restarted (its counter began again at 0): its 3 are all after `before`
    assert shed_since(before, now) == {"feature-engineer": 5, "event-watcher": 3, "execution-stable": 2}
