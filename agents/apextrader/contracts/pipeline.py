"""The whole TradingPipeline resource, loading it from YAML with errors that name the field, and the
per-track view of the spec (`track_spec`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apextrader.contracts.names import Track
from apextrader.contracts.safe_yaml import YamlTooLarge, safe_load_all_bounded
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import TradingPipelineStatus

API_GROUP: Final = "apextrader.io"
API_VERSION: Final = "v1alpha1"
API_GROUP_VERSION: Final[Literal["apextrader.io/v1alpha1"]] = "apextrader.io/v1alpha1"
KIND: Final = "TradingPipeline"
PLURAL = "tradingpipelines"
#: DNS-1035 label, short enough for `<name>-strategy-builder-canary` to stay a valid name.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 39


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=NAME_MAX)]
    namespace: str | None = None


class TradingPipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["apextrader.io/v1alpha1"] = Field(default=API_GROUP_VERSION, alias="apiVersion")
    kind: Literal["TradingPipeline"] = KIND
    metadata: Metadata
    spec: TradingPipelineSpec
    status: TradingPipelineStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


class PipelineError(ValueError):
    """A spec that does not validate; `errors` are one line each, naming the field."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(errors))


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per error: `spec.canary.weight: Input should be less than or equal to 100`."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after[")]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


def parse_pipeline(doc: Any, source: str = "") -> TradingPipeline:
    if not isinstance(doc, dict):
        raise PipelineError(["the document must be a mapping (a TradingPipeline resource)"], source)
    try:
        return TradingPipeline.model_validate(doc)
    except ValidationError as exc:
        raise PipelineError(format_errors(exc), source) from None


def load_pipeline(path: str | Path) -> TradingPipeline:
    """Read one TradingPipeline from a YAML file (the first document of kind TradingPipeline)."""
    p = Path(path)
    try:
        docs = [d for d in safe_load_all_bounded(p.read_text()) if d is not None]
    except YamlTooLarge as exc:
        raise PipelineError([f"YAML too large: {exc}"], str(p)) from None
    except OSError as exc:
        raise PipelineError([f"cannot read file: {exc.strerror}"], str(p)) from None
    except yaml.YAMLError as exc:
        raise PipelineError([f"not valid YAML: {exc}".replace("\n", " ")], str(p)) from None
    pipelines = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if not pipelines:
        raise PipelineError([f"no document of kind {KIND} found"], str(p))
    return parse_pipeline(pipelines[0], str(p))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def track_spec(spec: TradingPipelineSpec, track: Track) -> TradingPipelineSpec:
    """The spec as a track sees it: the canary track's is `canary.template` merged into the base.

    Raises PipelineError naming `spec.canary.template...` when the merged spec is invalid.
    """
    if track != "canary" or spec.canary is None:
        return spec
    # Only what was written: defaults come back when the merge is validated, and a fold of the
    # template (`apex canary promote`) patches the CR with the user's keys only.
    base = spec.model_dump(by_alias=True, exclude_none=True, exclude_unset=True)
    patch = spec.canary.template.model_dump(by_alias=True, exclude_none=True, exclude_unset=True)
    merged = merge_patch(base, patch)
    try:
        return TradingPipelineSpec.model_validate(merged)
    except ValidationError as exc:
        raise PipelineError(format_errors(exc, "spec.canary.template")) from None
