"""The lineage tree's node: what a lineage walk returns, printed and serialised alike.

The walk itself crosses every stage, so it lives above them (``chainkeeper.chain.lineage``);
a stage that traces its own objects (``annotation.trace``) returns the same nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LineageNode:
    kind: str
    id: str
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)
    children: list[LineageNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "label": self.label, "attrs": self.attrs,
                "children": [c.to_dict() for c in self.children]}

    def walk(self) -> list[LineageNode]:
        out = [self]
        for child in self.children:
            out += child.walk()
        return out
