"""The managed bus as rendered holds every stream of its pipeline on a real nats-server.

JetStream reserves each stream's `max_bytes` against `max_file_store` and refuses a stream that does
not fit (err_code 10047). These tests run the nats.conf the operator renders (only ports and the
store dir changed, as in a pod) and create the pipeline's whole topology on it; the example once
shipped `storage: 1Gi` with six 256 MiB streams, and SIGNALS, ORDERS and the DLQ were refused.
"""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js.errors import APIError

from apextrader.bus.client import ensure_topology
from apextrader.bus.topology import declare
from apextrader.contracts import PipelineError, load_pipeline, parse_pipeline
from apextrader.contracts.names import DOMAINS
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.contracts.spec import STREAMS_PER_PIPELINE, ManagedBus
from apextrader_operator.builders.nats import build_nats_config
from tests.fixtures.nats_pod import nats_pod

ROOT = Path(__file__).resolve().parents[2]
MANAGED_EXAMPLES = [
    p for p in sorted((ROOT / "manifests").glob("pipeline*.yaml")) if "url:" not in p.read_text()
]
pytestmark = pytest.mark.timeout(60)


async def provision(tp: TradingPipeline, bus: ManagedBus, tmp: Path) -> list[str]:
    """Create the topology on the rendered server; return the streams it holds afterwards."""
    with nats_pod(tmp, build_nats_config(tp, bus)["data"]["nats.conf"], None) as url:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await ensure_topology(js, declare(tp.spec, tp.name))
            names = [info.config.name or "" for info in await js.streams_info()]
            return sorted(n for n in names if not n.startswith("KV_"))
        finally:
            await nc.close()


def test_the_stream_count_is_the_topologys(example_pipeline: TradingPipeline) -> None:
    assert len(declare(example_pipeline.spec, example_pipeline.name).streams) == STREAMS_PER_PIPELINE


@pytest.mark.parametrize("path", MANAGED_EXAMPLES, ids=lambda p: p.name)
async def test_example_topology_fits_the_rendered_server(path: Path, tmp_path: Path) -> None:
    tp = load_pipeline(path)
    assert tp.spec.bus.managed is not None
    streams = await provision(tp, tp.spec.bus.managed, tmp_path)
    assert streams == sorted(s.name for s in declare(tp.spec, tp.name).streams)


def doc(storage: str, max_bytes: str) -> dict[str, object]:
    return {
        "apiVersion": "apextrader.io/v1alpha1",
        "kind": "TradingPipeline",
        "metadata": {"name": "fit", "namespace": "default"},
        "spec": {
            "symbols": ["BTC/USDT:USDT"],
            "bus": {"managed": {"storage": storage}, "limits": {"maxBytes": max_bytes}},
        },
    }


def test_a_bus_too_small_for_its_streams_is_refused_with_the_numbers() -> None:
    with pytest.raises(PipelineError) as err:
        parse_pipeline(doc("1Gi", "256Mi"))
    text = " ".join(err.value.errors)
    assert "spec.bus" in text and "922Mi" in text and "1536Mi" in text
    assert "at least 1707Mi" in text and "153Mi" in text


async def test_the_refusal_matches_what_the_server_refuses(tmp_path: Path) -> None:
    """The validator's arithmetic is the server's: the volume it refuses, nats-server refuses too
    (insufficient storage resources), and the storage its message suggests is enough."""
    tp = parse_pipeline(doc("1707Mi", "256Mi"))
    with pytest.raises(APIError) as err:
        await provision(tp, ManagedBus(storage="1Gi"), tmp_path / "small")
    assert err.value.err_code == 10047
    assert len(await provision(tp, ManagedBus(storage="1707Mi"), tmp_path / "fits")) == len(DOMAINS)
