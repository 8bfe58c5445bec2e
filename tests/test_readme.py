"""README.md as a user reads it: every ``python`` block runs as pasted, every reference resolves in the repo."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def blocks(language: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced block in README.md tagged ``language``."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == language]


PYTHON_BLOCKS = blocks("python")


def test_readme_has_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 2  # the fused ops and the DAGCell example


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(("line", "code"), PYTHON_BLOCKS, ids=[f"README.md:{n}" for n, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_pasted(line: int, code: str, capsys: pytest.CaptureFixture) -> None:
    """Each block on its own, in a fresh namespace, as a user pasting it into a new interpreter would."""
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip(), "an example should show its result"


def test_every_fence_is_labelled() -> None:
    """An unlabelled block would escape the test above unnoticed (shell blocks are ``bash``/``text``)."""
    text = README.read_text(encoding="utf-8")
    assert [m.group(1) for m in FENCE.finditer(text) if not m.group(1)] == []


def _references(text: str) -> set[str]:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    paths = re.findall(r"`((?:\.\./|docs/|goldnas_fast/|scripts/|tests/|bench/)[^`\s]*)`", text)
    return {r for r in links + paths if not re.match(r"[a-z]+://", r)}


def test_references_resolve_inside_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    refs = _references(text)
    assert refs, "the README should point to its docs"
    for ref in sorted(refs):
        target = (REPO / ref).resolve()
        assert target.is_relative_to(REPO), f"{ref} points outside the repository"
        assert target.exists(), f"{ref} does not exist in the repository"


@pytest.mark.parametrize("page", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_references_resolve_inside_the_repository(page: Path) -> None:
    for ref in sorted(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+://", ref):
            continue
        target = (page.parent / ref).resolve()
        assert target.is_relative_to(REPO) and target.exists(), f"{page.name}: {ref} does not resolve"
