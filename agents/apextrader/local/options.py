"""`apex up` options and the effective pipeline file the agents read (the user's YAML with the
command line's source/speed overrides applied)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from apextrader.contracts import PipelineError, TradingPipeline, parse_pipeline
from apextrader.contracts.units import timeframe_seconds

#: Offline sources run an accelerated clock: this many bars per wall-clock second by default, so the
#: 60 s demo sees several hundred bars per symbol (docs/conventions.md §6).
DEFAULT_BARS_PER_SECOND = 6.0


@dataclass(frozen=True)
class UpOptions:
    pipeline_file: Path
    data_dir: Path
    duration_s: float | None = None
    source: str | None = None  # synthetic | replay:PATH | ccxt
    speed: float | None = None
    report: Path | None = None
    ui: bool = True
    #: nats-servers of the local bus (1 or 3); None: the spec's `bus.managed.replicas`.
    bus_replicas: int | None = None


def parse_source(text: str) -> dict[str, Any]:
    """`synthetic`, `ccxt` or `replay:PATH` → the spec's `source` keys to override."""
    if text in ("synthetic", "ccxt"):
        return {"kind": text}
    if text.startswith("replay:") and len(text) > len("replay:"):
        path = Path(text.removeprefix("replay:")).expanduser().resolve()
        if not path.exists():
            raise PipelineError([f"--source: replay file not found: {path}"])
        return {"kind": "replay", "path": str(path)}
    raise PipelineError([f"--source: expected synthetic, ccxt or replay:PATH, got {text!r}"])


def effective_pipeline(tp: TradingPipeline, opts: UpOptions) -> TradingPipeline:
    """The pipeline with `--source`/`--speed` applied and an accelerated clock for offline data."""
    doc = tp.model_dump(by_alias=True, exclude_none=True, mode="json")
    source = doc["spec"].setdefault("source", {})
    if opts.source:
        source.update(parse_source(opts.source))
        if source["kind"] != "replay":
            source.pop("path", None)
    if opts.speed is not None:
        source["speed"] = opts.speed
    elif source.get("kind", "synthetic") != "ccxt" and "speed" not in source:
        source["speed"] = DEFAULT_BARS_PER_SECOND * timeframe_seconds(doc["spec"].get("timeframe", "1m"))
    bus = doc["spec"].setdefault("bus", {})
    if opts.bus_replicas is not None:
        # the local bus is always "managed": a 3-server cluster carries R3 streams by default
        bus.pop("url", None)
        bus.pop("credentialsSecret", None)
        bus.setdefault("managed", {})["replicas"] = opts.bus_replicas
        if bus.get("streamReplicas", 1) > opts.bus_replicas:
            bus["streamReplicas"] = opts.bus_replicas
    doc.pop("status", None)
    return parse_pipeline(doc, str(opts.pipeline_file))


def write_pipeline(tp: TradingPipeline, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = tp.model_dump(by_alias=True, exclude_none=True, mode="json")
    path.write_text(
        "# written by apex up: the effective pipeline the agents read\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return path


def default_data_dir(pipeline_name: str) -> Path:
    """Where `apex up` keeps a pipeline's store, logs and runtime.json, and where `--local` looks."""
    return Path(".apex") / pipeline_name
