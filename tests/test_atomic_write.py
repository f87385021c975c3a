"""A history write is whole or absent: a process killed in the middle of writing a run leaves no run file.

The fault is the operating system's, not a patched function: the writing process gets a file size
limit (RLIMIT_FSIZE) smaller than the run, with SIGXFSZ at its default action, so the kernel kills it
as soon as a write crosses the limit, whatever the code writes with and in whatever chunks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import subprocess_env
from fbcache.history.storage import AtomicFileStorage, load_runs, run_files

RUN = Path(__file__).parent / "data" / "run.json"
#: bytes the killed writer may write: a quarter of the run, so the kill lands mid-write
LIMIT = RUN.stat().st_size // 4

KILLED_WRITER = """
import json, resource, signal, sys
from pathlib import Path
from fbcache.history.storage import AtomicFileStorage, write_new_file

class Quiet:
    def info(self, *args, **kwargs): pass
    warning = info

storage, how, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
run = json.loads(Path(sys.argv[4]).read_text())
# after the imports (they may write bytecode): from here on, a write past `limit` bytes kills the process
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if how == "save":
    AtomicFileStorage(storage, Quiet(), "machine").save(run, "killed")
else:
    (storage / "machine").mkdir(parents=True)
    write_new_file(storage / "machine", lambda: "0001_killed.json", json.dumps(run).encode())
"""


class Quiet:
    def info(self, *args, **kwargs):
        pass

    warning = info


@pytest.mark.parametrize("how", ["save", "write_new_file"])
def test_a_writer_killed_mid_write_leaves_no_run_file(tmp_path: Path, how: str):
    storage = tmp_path / "history"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(storage), how, str(LIMIT), str(RUN)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGXFSZ, f"the writer was not killed mid-write: {done.stderr}"
    assert run_files(storage) == [], "a run file that the killed writer never finished"
    assert load_runs(storage) == ([], [])

    # the next run takes the first number and is whole
    run = json.loads(RUN.read_text())
    store = AtomicFileStorage(storage, Quiet(), "machine")
    store.save(run, "next")
    [saved] = run_files(storage)
    assert saved.name == "0001_next.json" and json.loads(saved.read_text()) == run
