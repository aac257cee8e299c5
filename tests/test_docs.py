"""Every doc path the code, configs, templates, scripts, README and docs cite is a file of this repository.

A citation is a `docs/...` path, a bare or partial `.md` path (`protocols.md`, `methods/cad.md`: resolved beside the
citing file, at the root or under docs/), or a Markdown link in README.md or docs/ (resolved beside the linking
file). A `§N` after a cited page must name one of its numbered headings. Each paper card has its page, and the page
names every value the card leaves to the user.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("vismech", "configs", "templates", "scripts", "docs", "README.md")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".txt", ".sh", ".cfg"}
DOCS_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]*[\w])")
RELATIVE_MD = re.compile(r"(?<![\w/.-])((?!docs/)(?:[\w-]+/)+[\w-]+\.md)\b")
BARE_MD = re.compile(r"(?<![\w/.{-])([\w-]+\.md)\b")
SECTION = re.compile(r"(?<![\w/.-])((?:docs/)?[\w/-]*[\w-]+\.md)\s*§\s*(\d+(?:\.\d+)?)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            files.append(path)
        else:
            files += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES
                      and "__pycache__" not in p.parts and "weights" not in p.relative_to(REPO).parts]
    return files


def resolve(cited: str, citing: Path) -> Path | None:
    """The file or folder a citation names: a docs/ path from the root; a bare or partial path beside the citing
    file, at the root, or under docs/ (so a bare name finds only docs/ itself: a sub-folder's page needs its path)."""
    candidates = [REPO / cited] if cited.startswith("docs/") else [citing.parent / cited, REPO / cited,
                                                                   REPO / "docs" / cited]
    return next((c for c in candidates if c.exists()), None)


def citations(text: str) -> list[str]:
    return DOCS_PATH.findall(text) + RELATIVE_MD.findall(text) + BARE_MD.findall(text)


def test_citation_pattern_finds_what_it_must():
    text = ("Implements docs/methods/difflens.md. See protocols.md §2 and (docs/img/concepts.png); "
            "f'{stem}.md' is no citation, and methods/cad.md is one by a partial path")
    assert citations(text) == ["docs/methods/difflens.md", "docs/img/concepts.png", "methods/cad.md", "protocols.md"]
    assert SECTION.findall(text) == [("protocols.md", "2")]
    assert resolve("docs/no_such_page.md", REPO / "README.md") is None
    assert resolve("submitting.md", REPO / "vismech" / "x.py") == REPO / "docs" / "submitting.md"
    assert resolve("difflens.md", REPO / "vismech" / "x.py") is None  # docs/methods/difflens.md, by its path
    assert resolve("methods/cad.md", REPO / "vismech" / "x.py") == REPO / "docs" / "methods" / "cad.md"


def test_every_cited_doc_path_exists():
    missing = []
    for file in scanned_files():
        text = file.read_text(encoding="utf-8", errors="replace")
        for cited in citations(text):
            if resolve(cited, file) is None:
                missing.append(f"{file.relative_to(REPO)}: {cited}")
    assert not missing, "cited doc paths that do not exist:\n" + "\n".join(missing)


def numbered_headings(page: Path) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#+\s+(\d+(?:\.\d+)?)[.\s]", page.read_text(), re.MULTILINE)}


def test_every_cited_section_exists():
    missing = []
    for file in scanned_files():
        for cited, number in SECTION.findall(file.read_text(encoding="utf-8", errors="replace")):
            page = resolve(cited, file)
            if page is not None and page.is_file() and number not in numbered_headings(page):
                missing.append(f"{file.relative_to(REPO)}: {cited} §{number}")
    assert not missing, "cited sections that the page does not have:\n" + "\n".join(missing)


def test_markdown_links_point_to_files():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


CARDS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("paper_*.yaml"))


@pytest.mark.parametrize("card", CARDS)
def test_each_paper_card_has_a_page_naming_what_the_user_supplies(card):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    page = REPO / "docs" / "cards" / f"{card}.md"
    assert page.is_file(), f"paper card {card} has no page docs/cards/{card}.md"
    with initialize_config_module("vismech.configs", version_base=None):
        cfg = compose("config", overrides=[f"experiment={card}"])
    # the logger's paths exist only inside a Hydra run; the user's values are all outside it
    required = sorted(OmegaConf.missing_keys(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "logger"])))
    supply = page.read_text().split("## What you supply", 1)[-1].split("\n## ", 1)[0]
    assert [key for key in required if f"`{key}" not in supply] == [], \
        f"the 'What you supply' section of docs/cards/{card}.md must name every ??? key of the card"


def test_readme_documentation_section_links_every_page():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    pages = sorted(str(p.relative_to(REPO)) for d in ("methods", "tasks", "cards")
                   for p in (REPO / "docs" / d).glob("*.md"))
    pages.append("docs/protocols.md")
    assert [p for p in pages if f"({p})" not in section] == []
