"""The README and the pages under docs/ name only what exists: files of the repository, fbcache's options
and verbs, the commands of the README walk. (The site's own links and anchors: ``mkdocs build --strict``
in .ci/run.)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env
from fbcache.cli import build_parser

#: the hand-written pages; generated tables under docs/results are data, not prose
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "results").rglob("README.md")])
PATH_PREFIXES = ("fbcache/", "tests/", "tools/", "scripts/", "benchmarks/", "docs/")
#: a span with one of these is a pattern or a placeholder, not a path
PLACEHOLDER = re.compile(r"[*<>{}$]|\.\.\.|\bNAME\b|\bDIR\b")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def spans(page: Path) -> list[str]:
    """Inline code spans, outside fenced blocks."""
    return SPAN.findall(FENCE.sub("", text(page)))


def commands(page: Path) -> list[str]:
    """The lines of the fenced blocks, with backslash continuations joined and comments dropped."""
    lines = []
    for block in FENCE.findall(text(page)):
        joined = re.sub(r"\\\n\s*", " ", "\n".join(block.splitlines()[1:-1]))
        lines += [line.split(" # ")[0].strip() for line in joined.splitlines()]
    return lines


def repo_paths(page: Path) -> list[str]:
    found = []
    for span in spans(page):
        candidate = span.split("::")[0].rstrip(".,:;")
        if candidate.startswith(PATH_PREFIXES) and not re.search(r"\s", candidate) and not PLACEHOLDER.search(candidate):
            found.append(candidate)
    return found


def verb_options() -> dict[str, set[str]]:
    parser = build_parser()
    verbs = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {name: {option for action in sub._actions for option in action.option_strings}
            for name, sub in verbs.choices.items()}


@pytest.fixture(scope="module")
def pytest_options() -> set[str]:
    """Every option `pytest benchmarks --help` lists: pytest's, pytest-benchmark's, fbcache's."""
    done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "--help"], cwd=ROOT,
                          env=subprocess_env({}), capture_output=True, text=True, timeout=300, check=True)
    return set(OPTION.findall(done.stdout))


def test_the_pages_are_found():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "docs/guide.md", "docs/runner.md", "docs/results/README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_file_a_page_names_exists(page: Path):
    missing = [path for path in repo_paths(page) if not (ROOT / path).exists()]
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_path_check_sees_a_moved_file(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("SSIM is in `fbcache/metrics.py`; `fbcache/backends/NAME.py` is a pattern.\n"
                    "```bash\nfbcache/not/a/span.py\n```\n", encoding="utf-8")
    assert repo_paths(page) == ["fbcache/metrics.py"]


def test_every_module_a_page_runs_exists():
    """`python -m tools.X` and `python -m fbcache.X` name a module of this repository."""
    named = {module for page in PAGES for line in commands(page) + spans(page)
             for module in re.findall(r"python -m ((?:fbcache|tools)(?:\.\w+)*)", line)}
    assert "tools.verdict_rates" in named
    missing = [m for m in sorted(named) if not (ROOT / (m.replace(".", "/") + ".py")).exists()
               and not (ROOT / m.replace(".", "/") / "__main__.py").exists()]
    assert missing == []


def test_every_readme_link_exists():
    """The README is not part of the mkdocs site, so its links are checked here."""
    local = [link.split("#")[0] for link in LINK.findall(text(ROOT / "README.md")) if "://" not in link]
    assert local, "the README links into docs/"
    assert [link for link in local if link and not (ROOT / link).exists()] == []


def test_the_readme_stays_short():
    assert len(text(ROOT / "README.md").splitlines()) <= 200


def test_the_readme_keeps_the_walk_the_walk_test_runs():
    """tests/test_readme_walk.py runs these commands; the README must still show them."""
    shown = commands(ROOT / "README.md")
    for command in ("scripts/sweep", "scripts/test", ". .venv/bin/activate", "fbcache compare --json result.json",
                    "fbcache report", "fbcache alert result.json"):
        assert command in shown, command


def test_every_fbcache_verb_and_its_options_exist():
    verbs = verb_options()
    checked = 0
    for page in PAGES:
        for line in commands(page) + spans(page):
            match = re.search(r"(?:^|\s)(?:python -m )?fbcache (\w+)(.*)", line)
            if not match or match.group(1).isupper():  # `fbcache VERB --help`: a placeholder
                continue
            verb, rest = match.groups()
            assert verb in verbs, f"{page.relative_to(ROOT)}: no verb fbcache {verb}"
            unknown = set(OPTION.findall(rest)) - verbs[verb]
            assert not unknown, f"{page.relative_to(ROOT)}: fbcache {verb} has no {sorted(unknown)}"
            checked += 1
    assert checked >= 20


def test_every_option_the_pages_name_exists(pytest_options: set[str]):
    """Options in pytest command lines, and options standing alone in a code span, are real options of
    `pytest benchmarks` or of an fbcache verb."""
    known = pytest_options | set().union(*verb_options().values())
    assert "--fbcache-thresholds" in pytest_options and "--benchmark-autosave" in pytest_options
    wrong = []
    for page in PAGES:
        for line in commands(page):
            sweep = re.search(r"(?:pytest benchmarks|scripts/sweep)(.*)", line)
            if sweep:
                wrong += [(page.name, o) for o in OPTION.findall(sweep.group(1)) if o not in pytest_options]
        for span in spans(page):
            alone = re.fullmatch(r"(--[a-z][a-z0-9-]*)(?:[ =].*)?", span)
            if alone and alone.group(1) not in known:
                wrong.append((page.name, alone.group(1)))
            wrong += [(page.name, o) for o in re.findall(r"--fbcache-[a-z0-9-]+", span) if o not in pytest_options]
    assert wrong == []
