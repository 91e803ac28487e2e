"""The README and the documents in docs/ point at each other by section name: every name pointed at exists."""

import re

from tests.conftest import ROOT

# `docs/results.md`, "Section" or (docs/method.md, "Section"): a pointer into a document of docs/
POINTER = re.compile(r"docs/(\w+)\.md`?,\s+\"([^\"]+)\"")
DOCUMENTS = ("README.md", "docs/method.md", "docs/experiments.md", "docs/benchmarks.md", "docs/results.md", "benchmarks/crf_sweep.py")


def _sections(text: str) -> set:
    """Headings, and the bold lead-ins that open a paragraph (**0 mm with the new stage 1.**)."""
    names = {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    names |= {m.group(1).strip().rstrip(".") for m in re.finditer(r"^\*\*([^*(]+?)[.(*]", text, flags=re.MULTILINE)}
    return names


def _pointers(path) -> list:
    return POINTER.findall(re.sub(r"\s+", " ", path.read_text(encoding="utf-8")))


def test_pointers_into_docs_name_their_sections():
    pointers = {(f, doc, name) for f in DOCUMENTS for doc, name in _pointers(ROOT / f)}
    assert len({p for p in pointers if p[0] == "README.md"}) >= 2  # the README's pointers were found at all
    assert len(pointers) >= 10
    missing = sorted((f, doc, name) for f, doc, name in pointers
                     if name not in _sections((ROOT / f"docs/{doc}.md").read_text(encoding="utf-8")))
    assert not missing, f"pointed at, not in that document: {missing}"


def test_docs_results_names_its_own_sections_as_they_are():
    text = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    sections = _sections(text)
    intro = text.split("\n## ", 1)[0]
    own = re.sub(r"\s+", " ", intro).split("one of this file's:", 1)[1].split("Inside a section", 1)[0]
    listed = re.findall(r"\"([^\"]+)\"", own)
    assert listed and all(name in sections for name in listed), listed
    assert {h for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)} == set(listed)
