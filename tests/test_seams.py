"""The seams between the top-level packages, checked on their source (every import, also deferred)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "models": ("stream", "triton_repo", "faust", "aiokafka", "confluent_kafka"),  # models knows no Kafka
    "triton_repo": ("stream",),  # the serving side imports nothing of the stream
    "panther_common": ("stream", "models", "triton_repo", "torch"),
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_across_its_seam(package: str) -> None:
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    }
    assert not bad, sorted(bad)
