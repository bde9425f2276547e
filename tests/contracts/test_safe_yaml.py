"""Pipeline YAML is loaded with bounded expansion: alias bombs and oversized files are refused with
a clear error naming the bound, before anything walks the expanded document."""

from __future__ import annotations

from pathlib import Path

import pytest

from apextrader.contracts.pipeline import PipelineError, load_pipeline
from apextrader.contracts.safe_yaml import YamlTooLarge, safe_load_all_bounded

ROOT = Path(__file__).resolve().parents[2]


def bomb(levels: int, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    with pytest.raises(YamlTooLarge, match=r"nest|values once aliases"):
        safe_load_all_bounded(bomb(9))  # 9**8 = 43 million values once expanded


def test_wide_alias_use_is_refused() -> None:
    text = "x: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(200))
    with pytest.raises(YamlTooLarge, match="more than 100 aliases"):
        safe_load_all_bounded(text)


def test_oversized_files_are_refused() -> None:
    with pytest.raises(YamlTooLarge, match="at most 1,048,576"):
        safe_load_all_bounded("a: " + "x" * (1 << 20) + "\n")


def test_ordinary_anchors_still_work() -> None:
    (doc,) = safe_load_all_bounded("base: &b {cpu: 1}\nx: *b\ny: {<<: *b, mem: 2}\n")
    assert doc == {"base": {"cpu": 1}, "x": {"cpu": 1}, "y": {"cpu": 1, "mem": 2}}


def test_the_pipeline_loader_reports_the_bound_as_a_spec_error(tmp_path: Path) -> None:
    text = (ROOT / "manifests" / "pipeline.yaml").read_text() + "\n---\n" + bomb(9)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError, match="YAML too large"):
        load_pipeline(path)
    assert load_pipeline(ROOT / "manifests" / "pipeline.yaml").metadata.name
