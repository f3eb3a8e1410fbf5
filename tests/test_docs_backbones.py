"""Every ```python block of docs/backbones.md runs as written (blocks after a
``<!-- skip-snippet -->`` line need the network and are left out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "backbones.md"
_BLOCK = re.compile(r"(<!-- skip-snippet -->\s*\n)?```python\n(.*?)```", re.S)


def _snippets() -> list[object]:
    out: list[object] = []
    for i, match in enumerate(_BLOCK.finditer(DOC.read_text()), 1):
        marks = [pytest.mark.skip(reason="skip-snippet: needs the network")] if match[1] else []
        out.append(pytest.param(match[2], id=f"block{i}", marks=marks))
    return out


@pytest.mark.parametrize("code", _snippets())
def test_snippet_runs(code: str) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
    finally:
        torch.set_num_threads(previous)
