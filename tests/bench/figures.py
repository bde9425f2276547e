"""Benchmark figures printed next to their goal and the previous measurement.

The previous measurement is this machine's last run of the same figure (`.apex/bench/figures.json`,
written by every run); on a machine that never ran it, the figure recorded in
`tests/bench/reference.json` (the numbers docs/performance.md starts from). Nothing is asserted:
a busy machine is not a bug.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("reference.json")
LAST = ROOT / ".apex" / "bench" / "figures.json"


@dataclass(frozen=True)
class Goal:
    """A figure's goal: `value < limit` (`below=True`) or `value >= limit`."""

    limit: float
    below: bool = True
    #: How the goal reads, when not `< limit` / `≥ limit` (e.g. "≤ 150" for a limit of 150.5).
    text: str | None = None

    def met(self, value: float) -> bool:
        return value < self.limit if self.below else value >= self.limit

    def __str__(self) -> str:
        return self.text or f"{'<' if self.below else '≥'} {self.limit:,g}"


def _load(path: Path) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


def previous(key: str) -> tuple[float | None, str]:
    """The figure's previous value and where it comes from."""
    last = _load(LAST)
    if key in last:
        return last[key], "last run here"
    reference = _load(REFERENCE)
    return (reference[key], "reference") if key in reference else (None, "")


def record(key: str, label: str, value: float | None, unit: str, goal: Goal | None = None) -> str:
    """Print one figure with its goal and previous value, remember it for the next run; returns
    the printed line."""
    before, where = previous(key)
    shown = "N/A" if value is None or math.isnan(value) else f"{value:,.1f} {unit}"
    parts = [f"[bench] {label}: {shown}"]
    if goal is not None:
        verdict = "" if value is None else (" met" if goal.met(value) else " NOT met")
        parts.append(f"goal {goal} {unit}{verdict}")
    if before is not None:
        parts.append(f"previous {before:,.1f} {unit} ({where})")
    line = parts[0] + (" — " + "; ".join(parts[1:]) if len(parts) > 1 else "")
    print(line)
    if value is not None and not math.isnan(value):
        LAST.parent.mkdir(parents=True, exist_ok=True)
        LAST.write_text(json.dumps({**_load(LAST), key: value}, indent=1, sort_keys=True))
    return line
