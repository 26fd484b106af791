"""Every link of the README and the docs leads somewhere, on GitHub and on the package index.

The package index shows README.md as the project's description, far from the
repository: there a relative link points nowhere, and headings get no ids, so an
``#anchor`` goes nowhere either. So the README's links are all absolute, and those
into the repository (``blob/main/PATH``, ``tree/main/PATH``) must name a path of
this checkout (and an anchor one of its headings). The docs pages link each other
relatively: GitHub and the sdist both hold them side by side.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from .conftest import ROOT

REPOSITORY = "https://github.com/django-dbtasks/django-dbtasks"
INTO_REPOSITORY = re.compile(
    re.escape(REPOSITORY) + r"/(?P<kind>blob|tree)/(?P<branch>[^/]+)/(?P<path>[^#?]*)"
    r"(?:#(?P<anchor>.*))?$"
)
DOCS = sorted(path.name for path in (ROOT / "docs").glob("*.md") if path.name != "README.md")
PAGES = ["README.md", "CHANGELOG.md", "docs/README.md", *[f"docs/{page}" for page in DOCS]]
PAGES.append("example_project/README.md")

FENCED = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]+`")
INLINE = re.compile(r"\]\(\s*<?([^)\s>]+)>?")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)[\s#]*$", re.M)
HTML_ID = re.compile(r"""<a\s[^>]*\b(?:id|name)\s*=\s*["']([^"']+)["']""")


def prose(text: str) -> str:
    """The text without code: no fenced block, each code span a word."""
    return CODE_SPAN.sub("code", FENCED.sub("", text))


def links(page: str) -> list[str]:
    """Every link target of a Markdown page: inline, reference-style and HTML."""
    text = prose((ROOT / page).read_text())
    return [match for pattern in (INLINE, REFERENCE, HTML) for match in pattern.findall(text)]


def slug(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as dashes."""
    words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    return re.sub(r"[^\w\- ]", "", words.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file: its headings' ids (repeats numbered), its <a id>s."""
    text = FENCED.sub("", path.read_text())
    found: set[str] = set(HTML_ID.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(text):
        base = slug(CODE_SPAN.sub(lambda m: m[0].strip("`"), heading))
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def project_urls() -> dict[str, str]:
    """The home page and the project URLs of setup.cfg, which the package index shows."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    metadata = config["metadata"]
    lines = [line.split("=", 1) for line in metadata["project_urls"].strip().splitlines()]
    return {"Home-page": metadata["url"], **{k.strip(): url.strip() for k, url in lines}}


def test_every_readme_link_is_absolute() -> None:
    targets = links("README.md")
    assert len(targets) > 10, "the README's links were not found"
    for target in targets:
        assert not target.startswith("#"), (
            f"README.md links {target!r}: the package index gives headings no id, so an"
            f" anchor goes nowhere there; link the page on GitHub ({REPOSITORY}{target})"
            " or name the section in words"
        )
        assert target.startswith(("https://", "http://", "mailto:")), (
            f"README.md links {target!r}, a relative path: the package index shows the"
            f" README far from the repository; write {REPOSITORY}/blob/main/{target}"
        )


def test_setup_cfg_names_the_repository_and_its_pages() -> None:
    urls = project_urls()
    assert list(urls) == ["Home-page", "Documentation", "Changelog", "Issues", "Source"]
    assert urls["Home-page"] == urls["Source"] == REPOSITORY
    assert urls["Issues"] == f"{REPOSITORY}/issues"


@pytest.mark.parametrize("page", [*PAGES, "setup.cfg"])
def test_every_link_into_the_repository_names_a_path_of_the_checkout(page: str) -> None:
    targets = list(project_urls().values()) if page == "setup.cfg" else links(page)
    for target in targets:
        if not target.startswith(REPOSITORY + "/"):
            continue
        match = INTO_REPOSITORY.match(target)
        if match is None:
            continue  # issues, releases, the repository's front page
        assert match["branch"] == "main", f"{page}: {target} should follow main"
        path = ROOT / match["path"]
        if match["kind"] == "blob":
            assert path.is_file(), f"{page} links {target}, but {match['path']} is no file here"
        else:
            assert path.is_dir(), f"{page} links {target}, but {match['path']} is no folder here"
        if match["anchor"] and path.suffix == ".md":
            assert match["anchor"] in anchors(path), f"{page}: {target}: no such heading"


@pytest.mark.parametrize("page", [page for page in PAGES if page != "README.md"])
def test_every_relative_link_of_the_docs_names_a_path_of_the_checkout(page: str) -> None:
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (ROOT / page).parent / path_part if path_part else ROOT / page
        assert path.exists(), f"{page} links {target}, but {path.relative_to(ROOT)} is not here"
        if anchor:
            assert anchor in anchors(path), f"{page} links {target}: no such heading"


def test_every_docs_page_is_linked_from_the_readme_and_the_docs_index() -> None:
    readme = {target.split("#")[0] for target in links("README.md")}
    index = {target.split("#")[0] for target in links("docs/README.md")}
    for page in DOCS:
        assert f"{REPOSITORY}/blob/main/docs/{page}" in readme, f"README.md never links {page}"
        assert page in index, f"docs/README.md, the docs' index, never lists {page}"


@pytest.mark.parametrize("page", PAGES)
def test_installs_name_the_distribution_not_the_other_project(page: str) -> None:
    """``django-dbtasks`` on the package index is another project: ours is -queue."""
    text = (ROOT / page).read_text()
    commands = [block[0] for block in FENCED.finditer(text)]
    for line in "\n".join(commands).splitlines():
        if "pip install" in line:
            for name in re.findall(r"django[-_.]dbtasks[\w.-]*", line.split("#")[0]):
                assert name == "django-dbtasks-queue", f"{page}: {line.strip()}"
    extra = re.search(r"django-dbtasks(?!-queue)\[\w+\]", text)
    assert extra is None, (
        f"{page} names {extra and extra[0]}: the extras are django-dbtasks-queue's"
    )
