"""The documentation's examples run, so the docs cannot rot.

Every ```python block of docs/quickstart.md and docs/celery.md is one of:

- ``<!-- module: PATH -->``: code that belongs in a module (a ``tasks.py``); its
  text must be contained verbatim in PATH, a real module the worker imports;
- ``<!-- settings -->``: a settings block, executed and checked against the backend;
- ``<!-- not-run: reason -->``: an illustrative fragment, only compiled;
- anything else: executed, in order, in one namespace per page, against the
  test database, with ``myapp.tasks`` standing for the page's task module; the
  jobs it enqueued are then run by a real worker and must all succeed.

The ``bash`` blocks of every page we own name only existing ``manage.py``
commands and options those commands accept. Links are checked by test_links.py,
the installed package by scripts/package.sh.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import time
from typing import Any

import pytest
from django.core.management import get_commands, load_command_class
from django.db.models.signals import post_save
from django.utils import timezone
from django.utils.module_loading import import_string

from django_dbtasks.conf import Options
from django_dbtasks.models import Job

from .conftest import ROOT

DOCS = ROOT / "docs"
RUN_PAGES = ["quickstart.md", "celery.md"]
ALL_PAGES = [
    *RUN_PAGES,
    "configuration.md",
    "writing-tasks.md",
    "deployment.md",
    "testing.md",
    "tracing.md",
    "operations.md",
]
FINISHED = {"SUCCESSFUL", "FAILED", "CANCELLED"}

FENCE = re.compile(
    r"(?:<!--\s*(?P<marker>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)


def blocks(page: str, lang: str) -> list[tuple[str, str]]:
    """The page's ``lang`` code blocks as (marker, code), marker "" when unmarked."""
    text = (DOCS / page).read_text()
    return [(m["marker"] or "", m["code"]) for m in FENCE.finditer(text) if m["lang"] == lang]


def module_for(page: str) -> str:
    paths = {
        m.split(":", 1)[1].strip() for m, _ in blocks(page, "python") if m.startswith("module:")
    }
    assert len(paths) == 1, f"{page} must name exactly one task module, got {paths}"
    (path,) = paths
    return path.removesuffix(".py").replace("/", ".")


@pytest.mark.parametrize("page", ALL_PAGES)
def test_every_python_block_is_valid_and_every_skip_is_explained(page: str) -> None:
    for marker, code in blocks(page, "python"):
        tree = ast.parse(code)
        placeholder = any(
            isinstance(node, ast.Constant) and node.value is Ellipsis for node in ast.walk(tree)
        )
        if marker.startswith("not-run:"):
            assert marker.removeprefix("not-run:").strip(), f"{page}: say why a block is not run"
        elif page in RUN_PAGES:
            assert marker == "" or marker == "settings" or marker.startswith("module:"), marker
            # A placeholder body means an illustrative fragment: it must be marked.
            if marker != "settings":
                assert not placeholder, f"{page}: mark this fragment not-run:\n{code}"


@pytest.mark.parametrize("page", RUN_PAGES)
def test_module_blocks_are_the_tested_code(page: str) -> None:
    for marker, code in blocks(page, "python"):
        if marker.startswith("module:"):
            path = ROOT / marker.split(":", 1)[1].strip()
            assert code in path.read_text(), f"{page}: this block differs from {path}:\n{code}"


@pytest.mark.parametrize("page", ALL_PAGES)
def test_quoted_files_are_quoted_verbatim(page: str) -> None:
    quoted = [(m, code) for m, code in blocks(page, "ini") if m.startswith("file:")]
    for marker, code in quoted:
        path = ROOT / marker.removeprefix("file:").strip()
        assert code == path.read_text(), f"{page}: {path} changed; quote it again"
    if page == "deployment.md":
        assert len(quoted) == 2


@pytest.mark.parametrize("page", RUN_PAGES)
def test_settings_blocks_configure_a_valid_backend(page: str) -> None:
    settings = [code for marker, code in blocks(page, "python") if marker == "settings"]
    for code in settings:
        namespace: dict[str, Any] = {}
        exec(compile(code, f"{page}:settings", "exec"), namespace)
        assert "django_dbtasks" in namespace["INSTALLED_APPS"]
        for alias, config in namespace["TASKS"].items():
            backend = import_string(config["BACKEND"])
            assert backend.__name__ == "DatabaseBackend"
            Options.from_dict(config.get("OPTIONS"), alias)
            assert all(isinstance(queue, str) for queue in config.get("QUEUES", []))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", RUN_PAGES)
def test_python_blocks_run_and_their_jobs_succeed(
    page: str, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = __import__(module_for(page), fromlist=["*"])
    monkeypatch.setitem(sys.modules, "myapp", type(sys)("myapp"))
    monkeypatch.setitem(sys.modules, "myapp.tasks", module)
    worker = start_worker("--concurrency", "2", DBTASKS_TEST_IMPORT="tests.docs_app.worker")
    from django.contrib.auth.models import User

    namespace: dict[str, Any] = {
        "__name__": "docs_example",
        "user": User.objects.create(username="user", email="user@example.com"),
    }
    ran = 0
    try:
        for number, (marker, code) in enumerate(blocks(page, "python")):
            if marker == "":
                exec(compile(code, f"{page}:block{number}", "exec"), namespace)
                ran += 1
    finally:
        post_save.disconnect(sender=User, dispatch_uid="welcome-email")
    assert ran >= 3

    deadline = time.monotonic() + 30
    due = Job.objects.filter(run_after__lte=timezone.now())
    while due.exclude(status__in=FINISHED).exists():
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    assert due.exists()
    failed = list(due.exclude(status__in=["SUCCESSFUL", "CANCELLED"]).values("task_path", "errors"))
    assert not failed, failed


def command_lines(page: str) -> list[str]:
    lines = []
    for _, code in blocks(page, "bash"):
        for line in code.splitlines():
            line = line.split("#", 1)[0]
            if "manage.py " in line:
                lines.append(line.split("manage.py ", 1)[1].split("&&")[0].strip())
    return lines


def subcommand(parser: argparse.ArgumentParser, words: list[str]) -> tuple[Any, list[str]]:
    """The parser of the subcommand ``words`` start with (``tasks status``), and the rest."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert words and words[0] in action.choices, f"no subcommand {words[:1]}"
            return action.choices[words[0]], words[1:]
    return parser, words


@pytest.mark.parametrize("page", ALL_PAGES)
def test_bash_blocks_name_real_commands_and_options(page: str) -> None:
    commands = get_commands()
    for line in command_lines(page):
        name, *words = line.split()
        assert name in commands, f"{page}: no command {name!r}"
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser, words = subcommand(parser, words)
        for word in words:
            if word.startswith("-"):
                option = word.split("=", 1)[0]
                assert option in parser._option_string_actions, f"{page}: {name} {option}?"


def test_the_readme_names_every_module_of_the_package() -> None:
    """The module table of "How it is built" stays complete as modules come and go."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## How it is built") : readme.index("## Supported versions")]
    named = set(re.findall(r"`([\w/]+\.py)`", table))
    package = ROOT / "django_dbtasks"
    modules = {
        path.name for path in package.glob("*.py") if path.name not in {"__init__.py", "apps.py"}
    }
    assert modules - named == set(), "modules missing from README's table"
    assert {name for name in named if "/" not in name} - modules == set(), "gone modules"
