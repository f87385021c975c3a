"""What the ``fbcache`` verbs print about themselves and the history: ``--help`` in plain text, and
``fbcache history`` naming what differs between fingerprints, not just a different hash."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fbcache.cli import build_parser, main
from fbcache.history.fingerprint import fingerprint_changes

SAVED = json.loads((Path(__file__).parent / "data" / "run.json").read_text())


def with_procedure(rounds: int, thresholds: list[float]) -> dict:
    """The saved run, as if it had been swept with ``rounds`` rounds of ``thresholds``."""
    data = copy.deepcopy(SAVED)
    info = data["machine_info"]["fbcache"]
    info["procedure"] = {"rounds": rounds, "warmup_rounds": 1, "thresholds": thresholds, "interleave": True,
                         "threads": 1, "clock": "cpu"}
    shown = " ".join(f"{t:g}" for t in thresholds)
    info["fingerprint"]["procedure"] = f"{rounds} rounds + 1 warm-up, interleaved, thresholds {shown}, threads 1, CPU clock"
    return data


def test_changed_settings_are_named_old_to_new():
    before, after = with_procedure(3, [0.1, 0.5]), with_procedure(5, [0.1, 0.2])
    assert fingerprint_changes(before["machine_info"], after["machine_info"]) == [
        "procedure: rounds 3 -> 5, thresholds [0.1, 0.5] -> [0.1, 0.2]"]


def test_history_lists_what_differs_between_neighbouring_fingerprints(tmp_path, capsys):
    machine = tmp_path / "Linux-CPython-3.11-64bit"
    machine.mkdir()
    for number, data in enumerate([SAVED, with_procedure(3, [0.1, 0.5]), with_procedure(3, [0.1, 0.5]),
                                   with_procedure(5, [0.1, 0.5])], start=1):
        (machine / f"{number:04d}_run.json").write_text(json.dumps(data))
    assert main(["history", "--storage", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == [
        "0001_run", "0002_run", "0003_run", "0004_run"]
    notes = [line.strip() for line in lines if line.startswith(" ")]
    assert notes == [
        "fingerprint differs from 0001_run: procedure: (none) -> 3 rounds + 1 warm-up, interleaved, thresholds "
        "0.1 0.5, threads 1, CPU clock",
        "fingerprint differs from 0003_run: procedure: rounds 3 -> 5"]


def _verbs() -> dict:
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb")
    return {"fbcache": parser, **verbs.choices}


@pytest.mark.parametrize("verb", list(_verbs()))
def test_help_is_plain_text_without_docstring_markup(verb):
    text = _verbs()[verb].format_help()
    assert "`" not in text and ":mod:" not in text


@pytest.mark.parametrize("verb", ["fbcache", "agree"])
def test_help_says_what_the_verb_does_not_how_its_module_is_built(verb):
    """A package's or merged module's developer docstring (verb modules, the agreement's rules) stays out of --help."""
    text = _verbs()[verb].format_help()
    assert not any(phrase in text for phrase in ("add_arguments", "dispatches", "The agreement.", "VERBS"))
