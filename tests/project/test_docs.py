"""The README's view table and its tests: each row names the test that checks it,
and each test of tests/view/test_view_table.py is named by a row."""

from __future__ import annotations

import re
from pathlib import Path

from ..view import test_view_table

ROOT = Path(__file__).resolve().parents[2]


def view_table_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The mounted view") :]
    section = section[: section.index("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`test_\w+`", cells[3]):
            rows[cells[0]] = cells[3].strip("`")
    return rows


def test_every_row_of_the_view_table_names_its_test() -> None:
    rows = view_table_rows()
    tests = {name for name in dir(test_view_table) if name.startswith("test_")}
    assert len(rows) >= 10
    assert set(rows.values()) <= tests, set(rows.values()) - tests
    assert tests <= set(rows.values()), tests - set(rows.values())


def test_the_code_cites_the_projects_own_design_page() -> None:
    assert (ROOT / "docs/DESIGN.md").is_file()
    for path in [*(ROOT / "layerfs").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for cited in re.findall(r"[\w./-]*DESIGN\.md", path.read_text()):
            assert cited == "docs/DESIGN.md", (path, cited)


DOCUMENTS = {
    "docs/DESIGN.md": ROOT / "docs/DESIGN.md",
    "README": ROOT / "README.md",
    "README.md": ROOT / "README.md",
    "UPLOADS.md": ROOT / "layerfs/storage/UPLOADS.md",
}
CITATION = re.compile(r"(docs/DESIGN\.md|README(?:\.md)?|UPLOADS\.md),? \"([^\"]+)\"")


def headings(document: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in document.read_text().splitlines()
            if line.startswith("#")}  # fmt: skip


def test_every_section_the_code_cites_exists() -> None:
    """A citation such as (docs/DESIGN.md, "The view") names a heading of that page,
    read with the code's line breaks and comment marks taken out."""
    cited = 0
    files = [*(ROOT / "layerfs").rglob("*.py"), *(ROOT / "scripts").glob("*.py"),
             *(ROOT / "tests").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
             ROOT / "layerfs/storage/UPLOADS.md"]  # fmt: skip
    for path in files:
        text = re.sub(r"\s*\n\s*(#\s*)?", " ", path.read_text())
        for document, section in CITATION.findall(text):
            if path.name == "test_docs.py":
                continue  # the examples above
            cited += 1
            assert section in headings(DOCUMENTS[document]), (path.name, document, section)
    assert cited >= 8
