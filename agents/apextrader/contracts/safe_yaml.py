"""YAML with bounded expansion: a pipeline file cannot make a reader do unbounded work.

PyYAML shares the object an alias points to, so an "alias bomb" (`a: &a [x, x]`, `b: &b [*a, *a]`,
...) costs nothing to load but grows exponentially for anything that walks it (validation, JSON,
merge patches). The composed node graph is measured before anything is constructed: the file size,
the number of aliases, how deeply aliases nest inside aliased nodes, and the node count with every
alias expanded (counted once per node, so the count itself stays linear).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

MAX_BYTES: Final = 1 << 20
MAX_ALIASES: Final = 100
MAX_ALIAS_DEPTH: Final = 3
MAX_EXPANDED_NODES: Final = 100_000


class YamlTooLarge(ValueError):
    """The document exceeds a bound; the message names which and by how much."""


class _Measure:
    def __init__(self, anchored: set[int]) -> None:
        self.anchored = anchored
        self.size: dict[int, int] = {}
        self.depth: dict[int, int] = {}

    def visit(self, node: yaml.Node) -> tuple[int, int]:
        """(expanded node count, alias nesting depth) below and including `node`."""
        key = id(node)
        if key in self.size:
            return self.size[key], self.depth[key]
        self.size[key], self.depth[key] = 1, 0  # a cycle counts once
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        size, depth = 1, 0
        for child in children:
            s, d = self.visit(child)
            size += s
            depth = max(depth, d + (1 if id(child) in self.anchored else 0))
        self.size[key], self.depth[key] = size, depth
        return size, depth


class _CountingLoader(yaml.SafeLoader):
    aliases = 0
    anchored: set[int] = set()  # noqa: RUF012 - replaced per document

    def compose_document(self) -> Any:
        # PyYAML's own steps, keeping which nodes carried an anchor before it forgets them.
        self.get_event()  # type: ignore[no-untyped-call]
        node = self.compose_node(None, None)
        self.get_event()  # type: ignore[no-untyped-call]
        self.anchored = {id(n) for n in self.anchors.values()}
        self.anchors = {}
        return node

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise YamlTooLarge(f"more than {MAX_ALIASES} aliases (*name): refusing to expand them")
        return super().compose_node(parent, index)


def safe_load_all_bounded(text: str) -> list[Any]:
    """Every document of `text`, like `yaml.safe_load_all`, within the bounds above."""
    if len(text.encode()) > MAX_BYTES:
        raise YamlTooLarge(f"{len(text.encode()):,} bytes: a pipeline file may have at most {MAX_BYTES:,}")
    loader = _CountingLoader(text)
    try:
        out = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            size, depth = _Measure(loader.anchored).visit(node)
            if depth > MAX_ALIAS_DEPTH:
                raise YamlTooLarge(f"aliases nest {depth} deep (at most {MAX_ALIAS_DEPTH})")
            if size > MAX_EXPANDED_NODES:
                raise YamlTooLarge(
                    f"{size:,} values once aliases are expanded (at most {MAX_EXPANDED_NODES:,})"
                )
            out.append(loader.construct_document(node))
        return out
    finally:
        loader.dispose()
