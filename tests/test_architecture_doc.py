"""docs/architecture.md shows the same layers that tests/test_layers.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_layers import LAYERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def documented_layers() -> dict[str, int]:
    """``{module: layer}`` from the table rows ``| N | `a`, `b` | … |``."""
    layers: dict[str, int] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row:
            for module in re.findall(r"`([A-Za-z_]+)`", row.group(2)):
                layers[module] = int(row.group(1))
    return layers


def test_the_page_lists_every_module_at_its_enforced_layer() -> None:
    assert documented_layers() == LAYERS
