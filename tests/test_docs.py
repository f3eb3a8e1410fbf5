"""The documentation runs as written.

Every ```python block in README.md and docs/**/*.md is executed, on its own, in a fresh
namespace, from a scratch folder that looks like the repository root (``hubconf.py``,
``resnet_pl/``, ``benchmarks/``, ``configs/`` are linked there), so a block may read committed
files by their repository paths and write files without touching the checkout. Network access
is switched off for the hub (``RESNET_PL_OFFLINE``, ``HF_HUB_OFFLINE``).

A comment line right before a block changes how it runs:

- ``<!-- skip-snippet -->`` (optionally ``<!-- skip-snippet: why -->``): not run. Only for
  blocks that need the network, a GPU or a long training run.
- ``<!-- slow-snippet -->``: run only with ``-m slow`` (it takes more than a few seconds).

The other checks keep the prose honest: the README stays a front page, figures name committed
results files that exist, and the architecture table is the one ``benchmarks.model_table``
prints today.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# What a snippet may use by its repository path.
LINKED = ("hubconf.py", "resnet_pl", "benchmarks", "configs")

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(skip|slow)-snippet\b.*-->\s*$")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    marker: str | None  # "skip", "slow" or None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract_snippets(path: Path) -> list[Snippet]:
    """The ```python blocks of a Markdown file, each with the marker comment before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].strip())
        if match is None:
            i += 1
            continue
        lang, start = match.group(1), i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path}:{start + 1}: code block is never closed")
        i += 1
        if lang != "python":
            continue
        # The marker is the nearest non-blank line above the fence.
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = _MARKER.match(lines[j].strip()) if j >= 0 else None
        snippets.append(
            Snippet(path, start + 1, "\n".join(body) + "\n", marker.group(1) if marker else None)
        )
    return snippets


SNIPPETS = [s for p in DOC_FILES for s in extract_snippets(p)]


def _params() -> list[object]:
    params: list[object] = []
    for s in SNIPPETS:
        marks = []
        if s.marker == "skip":
            marks.append(pytest.mark.skip(reason="marked skip-snippet (network, GPU or long run)"))
        elif s.marker == "slow":
            marks.append(pytest.mark.slow)
        params.append(pytest.param(s, id=s.id, marks=marks))
    return params


@pytest.fixture
def repo_like_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNET_PL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RESNET_PL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize("snippet", _params())
def test_snippet_runs(snippet: Snippet, repo_like_dir: Path) -> None:
    code = compile(snippet.code, snippet.id, "exec")
    # A fresh namespace per block: each block must be complete on its own.
    exec(code, {"__name__": "__docs_snippet__"})


def test_there_are_snippets_and_few_skips() -> None:
    assert len(SNIPPETS) >= 10
    skipped = [s.id for s in SNIPPETS if s.marker == "skip"]
    # Skips are for the network, GPUs and long runs only; a growing list means untested docs.
    assert len(skipped) <= len(SNIPPETS) // 4, skipped


def test_extract_snippets_reads_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\na = 1\n```\n<!-- skip-snippet: network -->\n\n```python\nb = 2\n```\n"
        "<!-- slow-snippet -->\n```python\nc = 3\n```\n```bash\necho no\n```\n",
        encoding="utf-8",
    )
    got = [(s.line, s.code, s.marker) for s in extract_snippets(page)]
    assert got == [(2, "a = 1\n", None), (7, "b = 2\n", "skip"), (11, "c = 3\n", "slow")]


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


# A figure must name the committed file it comes from; these are the places such files live.
_RESULTS_PATH = re.compile(r"`((?:benchmarks/results|resnet_pl/weights)/[^`*{}<>\s]+)`")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_results_files_exist(path: Path) -> None:
    named = _RESULTS_PATH.findall(path.read_text(encoding="utf-8"))
    missing = [n for n in named if not (ROOT / n).exists()]
    assert not missing, f"{path.name} names results files that are not committed: {missing}"


@pytest.mark.slow  # builds every architecture on the meta device: ~15 s on 2 shared cores
def test_architecture_table_is_current() -> None:
    from benchmarks.model_table import markdown_table

    page = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    table = markdown_table()
    assert table in page, (
        "docs/models.md's architecture table is out of date; paste the output of "
        "`python -m benchmarks.model_table` into it"
    )
