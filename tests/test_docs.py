"""The README and docs/results.md point at each other by section name: every name pointed at exists."""

import re

from tests.conftest import ROOT

# `docs/results.md`, "Section" or (docs/results.md, "Section"): a pointer into the lab notebook
POINTER = re.compile(r"docs/results\.md`?,\s+\"([^\"]+)\"")


def _sections(text: str) -> set:
    """Headings, and the bold lead-ins that open a paragraph (**0 mm with the new stage 1.**)."""
    names = {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    names |= {m.group(1).strip().rstrip(".") for m in re.finditer(r"^\*\*([^*(]+?)[.(*]", text, flags=re.MULTILINE)}
    return names


def _pointers(path) -> list:
    return POINTER.findall(re.sub(r"\s+", " ", path.read_text(encoding="utf-8")))


def test_pointers_into_docs_results_name_its_sections():
    sections = _sections((ROOT / "docs/results.md").read_text(encoding="utf-8"))
    files = [ROOT / "README.md", ROOT / "benchmarks/crf_sweep.py"]
    pointers = {(f.name, name) for f in files for name in _pointers(f)}
    assert len(pointers) >= 5  # the README's pointers were found at all
    missing = sorted((f, name) for f, name in pointers if name not in sections)
    assert not missing, f"pointed at, not in docs/results.md: {missing}"


def test_docs_results_names_its_own_sections_as_they_are():
    text = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    sections = _sections(text)
    intro = text.split("\n## ", 1)[0]
    own = re.sub(r"\s+", " ", intro).split("one of this file's:", 1)[1].split("Inside a section", 1)[0]
    listed = re.findall(r"\"([^\"]+)\"", own)
    assert listed and all(name in sections for name in listed), listed
    assert {h for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)} == set(listed)
