"""The ``fbcache`` verbs come from one tuple (``fbcache.cli.VERBS``): each module there is a whole verb
(``HELP``, ``add_arguments``, ``run``), the parser has exactly those verbs, and a new verb is one new
module plus one line, its errors turned into exit codes by ``main`` like every other verb's."""

from __future__ import annotations

import importlib
import sys

import pytest

from fbcache.cli import VERBS, build_parser, main
from fbcache.errors import EXIT_USAGE

NEW_VERB = '''
"""A verb added by a test."""
from fbcache.errors import DataError

HELP = "greet someone"


def add_arguments(parser):
    parser.add_argument("--who", required=True, help="whom to greet")


def run(args):
    if args.who == "nobody":
        raise DataError("--who nobody: there is nobody to greet")
    print(f"hello {args.who}")
    return 0
'''


def parser_verbs(parser) -> list[str]:
    return list(next(a for a in parser._actions if a.dest == "verb").choices)


@pytest.mark.parametrize("name", VERBS)
def test_every_verb_module_has_one_help_line_add_arguments_and_run(name):
    module = importlib.import_module(name)
    help_line = getattr(module, "HELP", None)
    missing = [attr for attr in ("add_arguments", "run") if not callable(getattr(module, attr, None))]
    missing += [] if isinstance(help_line, str) and help_line and "\n" not in help_line else ["HELP (one line)"]
    assert missing == []


def test_the_parser_has_exactly_the_verbs_of_the_tuple_in_its_order():
    assert parser_verbs(build_parser()) == [name.rpartition(".")[2] for name in VERBS]


def test_top_level_help_lists_every_verb_with_its_help_line():
    shown = " ".join(build_parser().format_help().split())
    missing = [name for name in VERBS
               if f"{name.rpartition('.')[2]} {' '.join(importlib.import_module(name).HELP.split())}" not in shown]
    assert missing == []


@pytest.fixture
def hello_verb(tmp_path, monkeypatch):
    (tmp_path / "hello.py").write_text(NEW_VERB, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("fbcache.cli.VERBS", (*VERBS, "hello"))
    yield
    sys.modules.pop("hello", None)


def test_a_new_module_and_one_line_in_the_tuple_make_a_verb(hello_verb, capsys):
    assert main(["hello", "--who", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"


def test_a_new_verbs_error_becomes_exit_2_and_one_line_on_stderr(hello_verb, capsys):
    assert main(["hello", "--who", "nobody"]) == EXIT_USAGE
    assert capsys.readouterr().err == "fbcache hello: error: --who nobody: there is nobody to greet\n"
