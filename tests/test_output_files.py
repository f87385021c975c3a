"""Files the CLI writes on request (compare --json/--markdown, calibrate --out, agree --json) are written
whole or not at all: a full disk leaves no partial file, only a one-line error (exit 2, fbcache.errors)."""

from __future__ import annotations

import errno
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env
from fbcache.errors import EXIT_CLEAN, EXIT_USAGE
from fbcache.history import storage

RUN = Path(__file__).parent / "data" / "run.json"
#: bytes a file may grow to in the child: far below a compare result (kilobytes), above nothing
FILE_SIZE_LIMIT = 512


@pytest.fixture
def history(tmp_path: Path) -> Path:
    machine = tmp_path / "history" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    shutil.copy(RUN, machine / "0001_good.json")
    return tmp_path / "history"


def fbcache_on_a_full_disk(*argv: str) -> subprocess.CompletedProcess:
    """The CLI in a child whose file writes fail beyond FILE_SIZE_LIMIT bytes, as on a full disk: the kernel
    refuses the write (EFBIG; Python ignores the SIGXFSZ that comes with it)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

    return subprocess.run([sys.executable, "-m", "fbcache", *argv], cwd=ROOT, capture_output=True, text=True,
                          env=subprocess_env({"PYTHONDONTWRITEBYTECODE": "1"}), preexec_fn=limit)


@pytest.mark.parametrize("option", ["--json", "--markdown"])
def test_compare_output_on_a_full_disk_leaves_no_file_and_one_line(history, tmp_path, option):
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    done = fbcache_on_a_full_disk("compare", "--storage", str(history), option, str(out))
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.splitlines() == [f"fbcache compare: error: {option} {out}: not written: File too large"]
    assert list(out.parent.iterdir()) == [], "no partial file, no temporary file"


def test_a_failed_write_keeps_the_earlier_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    target.write_text("earlier result")

    def disk_full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        storage.replace_file(target, b"new result")
    assert target.read_text() == "earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "the temporary file is removed"


def test_compare_json_replaces_a_file_and_still_writes_to_a_pipe(history, tmp_path):
    out = tmp_path / "result.json"
    out.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(out)
    done = subprocess.run([sys.executable, "-m", "fbcache", "compare", "--storage", str(history), "--json", str(link)],
                          cwd=ROOT, capture_output=True, text=True, env=subprocess_env())
    assert done.returncode == EXIT_CLEAN, done.stderr
    assert link.is_symlink() and out.read_text().startswith("{"), "the link stays, the file it names is replaced"
    piped = subprocess.run([sys.executable, "-m", "fbcache", "compare", "--storage", str(history), "--json",
                            "/dev/stdout"], cwd=ROOT, capture_output=True, text=True, env=subprocess_env())
    assert piped.returncode == EXIT_CLEAN, piped.stderr
    assert '"regression": false\n}' in piped.stdout
