"""Malformed input, table-driven: every bad bounds profile and every bad history file gets one line
naming the file and what is wrong, the documented exit code, and writes nothing.

Bounds profiles go through the real plugin (``pytest.main`` on the benchmarks, in this process so
that 30 cases cost seconds: configure-time errors stop the run before any model is built, exit 4,
pytest's usage error). History files go through
the real ``fbcache`` entry point, every verb that reads the storage.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from fbcache.cli import main as fbcache_main
from fbcache.errors import EXIT_CLEAN, EXIT_USAGE, ConfigError
from fbcache.verdicts.bounds import resolve_profile

GOOD_THRESHOLD = '[thresholds."0.5"]\nmin_ssim = 0.5\n'

#: (id, TOML text, fragment of the one-line error)
BAD_PROFILES = [
    ("threshold-is-a-number", '[thresholds]\n"0.8" = 0.999\n', 'thresholds."0.8": not a table'),
    ("profile-is-a-string", 'profile = "x"\n' + GOOD_THRESHOLD, "profile: not a table"),
    ("thresholds-is-a-number", "thresholds = 5\n", "thresholds: not a table"),
    ("enforce-speedup-string", '[profile]\nenforce_speedup = "false"\n' + GOOD_THRESHOLD,
     "profile.enforce_speedup: not a boolean"),
    ("typo-min-sim", '[thresholds."0.5"]\nmin_sim = 0.3\n', 'thresholds."0.5".min_sim: unknown key'),
    ("typo-max-speedup", '[thresholds."0.5"]\nmax_speedup = 3\n', 'thresholds."0.5".max_speedup: unknown key'),
    ("typo-treshholds", '[treshholds."0.5"]\nmin_ssim = 0.3\n', "treshholds: unknown key"),
    ("thresholds-under-profile", '[profile]\nname = "p"\n[profile.thresholds."0.5"]\nmin_ssim = 0.3\n',
     "profile.thresholds: unknown key"),
    ("top-level-floor", "min_ssim = 0.5\n" + GOOD_THRESHOLD, "min_ssim: unknown key"),
    ("floor-nan", '[thresholds."0.5"]\nmin_ssim = nan\n', "min_ssim: not finite"),
    ("floor-inf", '[thresholds."0.5"]\nmin_speedup = inf\n', "min_speedup: not finite"),
    ("floor-negative", '[thresholds."0.5"]\nmin_speedup = -1.0\n', "min_speedup: negative"),
    ("ssim-above-one", '[thresholds."0.5"]\nmin_ssim = 1.5\n',
     "min_ssim: above 1, which SSIM never exceeds); accepted: a number in [0, 1] (SSIM)"),
    ("ssim-worst-above-one", '[thresholds."0.5"]\nmin_ssim_worst = 1.01\n', "min_ssim_worst: above 1"),
    ("psnr-negative", '[thresholds."0.5"]\nmin_psnr = -3\n',
     "min_psnr: negative); accepted: a finite number >= 0 (PSNR)"),
    ("speedup-zero", '[thresholds."0.5"]\nmin_speedup = 0\n',
     "min_speedup: not above 0); accepted: a finite number > 0 (speedup over uncached)"),
    ("floor-string", '[thresholds."0.5"]\nmin_ssim = "high"\n', "min_ssim: not a number"),
    ("floor-bool", '[thresholds."0.5"]\nmin_ssim = true\n', "min_ssim: not a number"),
    ("floor-list", '[thresholds."0.5"]\nmin_ssim = [0.5]\n', "min_ssim: not a number"),
    ("key-not-a-number", '[thresholds.low]\nmin_ssim = 0.5\n', "thresholds.'low': not a number"),
    ("key-negative", '[thresholds."-0.1"]\nmin_ssim = 0.5\n', "thresholds.'-0.1': not finite and >= 0"),
    ("key-nan", '[thresholds."nan"]\nmin_ssim = 0.5\n', "thresholds.'nan': not finite and >= 0"),
    ("key-twice", GOOD_THRESHOLD + '[thresholds."0.50"]\nmin_ssim = 0.4\n', "the same threshold twice"),
    ("thresholds-empty", "[thresholds]\n", "thresholds: missing or empty"),
    ("thresholds-absent", '[profile]\nname = "p"\n', "thresholds: missing or empty"),
    ("threshold-table-empty", '[thresholds."0.5"]\n', 'thresholds."0.5": empty table'),
    ("match-typo", '[match]\nmodle = "tiny"\n' + GOOD_THRESHOLD, "match.modle: unknown key"),
    ("match-float", "[match]\nsteps = 28.0\n" + GOOD_THRESHOLD, "match.steps: wrong type"),
    ("match-list", '[match]\naccelerator = ["cpu"]\n' + GOOD_THRESHOLD, "match.accelerator: wrong type"),
    ("match-array-of-tables", '[[match]]\nmodel = "tiny"\n' + GOOD_THRESHOLD, "match: not a table"),
    ("name-number", "[profile]\nname = 5\n" + GOOD_THRESHOLD, "profile.name: wrong type"),
    ("name-empty", '[profile]\nname = ""\n' + GOOD_THRESHOLD, "profile.name: wrong type"),
    ("description-number", "[profile]\ndescription = 3\n" + GOOD_THRESHOLD, "profile.description: wrong type"),
    ("not-toml", '[thresholds."0.5"\nmin_ssim = 0.5\n', "a readable TOML bounds profile"),
    ("not-utf8", b'[thresholds."0.5"]\nmin_ssim = 0.5 # \xff\xfe\n', "a readable TOML bounds profile"),
]


def only_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


@pytest.mark.parametrize("text, fragment", [case[1:] for case in BAD_PROFILES], ids=[c[0] for c in BAD_PROFILES])
def test_bad_bounds_profile_stops_the_sweep_in_one_line(tmp_path: Path, capsys, text, fragment):
    profile = tmp_path / "bad.toml"
    profile.write_bytes(text if isinstance(text, bytes) else text.encode())
    storage, images = tmp_path / "history", tmp_path / "images"
    code = pytest.main([
        str(ROOT / "benchmarks"), f"--rootdir={ROOT}", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
        f"--benchmark-storage=file://{storage}", "--benchmark-autosave", f"--fbcache-output-dir={images}",
        f"--fbcache-bounds={profile}"])
    captured = capsys.readouterr()
    assert code == pytest.ExitCode.USAGE_ERROR
    lines = (captured.out + captured.err).splitlines()
    errors = [line for line in lines if line.startswith("ERROR: fbcache:")]
    assert len(errors) == 1, lines
    assert str(profile) in errors[0] and fragment in errors[0] and "accepted:" in errors[0], errors[0]
    assert only_files(storage) == [] and not images.exists(), "nothing may be written"


def test_there_are_enough_bad_profiles():
    assert len(BAD_PROFILES) >= 25 and len({case[0] for case in BAD_PROFILES}) == len(BAD_PROFILES)


def test_auto_refuses_several_matching_profiles(tmp_path: Path):
    match = '[match]\nmodel = "tiny"\naccelerator = "cpu"\n' + GOOD_THRESHOLD
    (tmp_path / "tiny.toml").write_text('[profile]\nname = "tiny"\n' + match)
    (tmp_path / "mine.toml").write_text('[profile]\nname = "mine"\n' + match)
    facts = {"model": "tiny", "accelerator": "cpu: AMD EPYC"}
    with pytest.raises(ConfigError) as error:
        resolve_profile("auto", tmp_path, facts)
    assert "2 profiles" in str(error.value) and "mine (mine.toml), tiny (tiny.toml)" in str(error.value)
    assert "--fbcache-bounds NAME" in str(error.value) and "\n" not in str(error.value)
    assert resolve_profile("tiny", tmp_path, facts).name == "tiny"


# ------------------------------------------------------------------------------- history files

GOOD_RUN = json.loads((Path(__file__).parent / "data" / "run.json").read_text())


def edited(edit) -> bytes:
    data = json.loads(json.dumps(GOOD_RUN))
    edit(data)
    return json.dumps(data).encode()


def bench(data: dict, index: int = 1) -> dict:
    return data["benchmarks"][index]


def info(data: dict, index: int = 1) -> dict:
    return data["benchmarks"][index]["extra_info"]


#: (id, file content, or a callable that makes the entry at a path, fragment of the warning)
BAD_RUNS = [
    ("benchmarks-are-numbers", edited(lambda d: d.update(benchmarks=[1, 2])), "benchmarks[0] is int"),
    ("benchmarks-not-a-list", edited(lambda d: d.update(benchmarks={})), "no 'benchmarks' list"),
    ("stats-data-nulls", edited(lambda d: bench(d)["stats"].update(data=[None, None])),
     "stats.data: item 0: expected a number"),
    ("stats-not-an-object", edited(lambda d: bench(d).update(stats="x")), "stats is str"),
    ("stats-median-string", edited(lambda d: bench(d)["stats"].update(median="fast")),
     "stats.median = 'fast': expected a number"),
    ("hits-per-round-number", edited(lambda d: info(d).update(hits_per_round=5)),
     "extra_info.hits_per_round = 5: expected a list"),
    ("rounds-string", edited(lambda d: info(d).update(rounds_s="abc")), "extra_info.rounds_s = 'abc': expected a list"),
    ("rounds-nan", edited(lambda d: info(d).update(rounds_s=[float("nan"), 1.0])), "not a finite number"),
    ("ssim-string", edited(lambda d: info(d).update(ssim="high")), "extra_info.ssim = 'high': expected a number"),
    ("threshold-string", edited(lambda d: info(d).update(threshold="0.5")), "extra_info.threshold"),
    ("model-missing", edited(lambda d: info(d).pop("model")), "extra_info.model is missing"),
    ("violations-string", edited(lambda d: info(d)["bounds"].update(violations="oops")),
     "extra_info.bounds.violations"),
    ("workload-number", edited(lambda d: d["machine_info"]["fbcache"]["fingerprint"].update(workload=5)),
     "every field must be a string"),
    ("duplicate-threshold", edited(lambda d: d["benchmarks"].append(d["benchmarks"][1])), "a second benchmark"),
    ("machine-info-list", edited(lambda d: d.update(machine_info=[])), "no fbcache fingerprint"),
    ("foreign", edited(lambda d: d.update(machine_info={"node": "x"})), "no fbcache fingerprint"),
    ("truncated", json.dumps(GOOD_RUN).encode()[:300], "not valid JSON"),
    ("empty", b"", "Expecting value"),
    ("not-utf8", b"\xff\xfe garbage", "not UTF-8 text"),
    ("deeply-nested", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("dangling-link", lambda path: path.symlink_to(path.parent / "gone.json"), "a dangling link"),
    ("a-directory", lambda path: path.mkdir(), "IsADirectoryError"),
]


def make_entry(path: Path, content) -> None:
    if callable(content):
        content(path)
    else:
        path.write_bytes(content)


def fbcache(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = fbcache_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.splitlines(), captured.out


@pytest.mark.parametrize("content, fragment", [case[1:] for case in BAD_RUNS], ids=[c[0] for c in BAD_RUNS])
def test_bad_history_file_is_named_once_and_skipped_by_every_verb(tmp_path: Path, capsys, content, fragment):
    machine = tmp_path / "history" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    (machine / "0001_good.json").write_text(json.dumps(GOOD_RUN))
    bad = machine / "0002_bad.json"
    make_entry(bad, content)
    before = sorted(p.name for p in machine.iterdir())
    storage = str(tmp_path / "history")
    calibrated, compared = tmp_path / "cal.toml", tmp_path / "compare.json"
    for argv in (["history"], ["compare", "--json", str(compared)], ["calibrate", "--out", str(calibrated)]):
        code, err, out = fbcache(capsys, *argv, "--storage", storage)
        assert code == EXIT_CLEAN, (argv, err)
        warnings = [line for line in err if "warning" in line]
        assert len(warnings) == 1 and str(bad) in warnings[0] and fragment in warnings[0], (argv, err)
        assert "0001_good" in out + "\n".join(err)
    assert json.loads(compared.read_text())["latest"].startswith("0001_good")
    assert sorted(p.name for p in machine.iterdir()) == before, "the storage is only read"


@pytest.mark.parametrize("content, fragment", [case[1:] for case in BAD_RUNS[:12]], ids=[c[0] for c in BAD_RUNS[:12]])
def test_history_of_only_bad_files_is_a_usage_error_that_writes_nothing(tmp_path: Path, capsys, content, fragment):
    machine = tmp_path / "history" / "m"
    machine.mkdir(parents=True)
    make_entry(machine / "0001_bad.json", content)
    storage = str(tmp_path / "history")
    for argv in (["history"], ["compare", "--json", str(tmp_path / "r.json")], ["report", "--out", str(tmp_path / "rep")],
                 ["calibrate", "--out", str(tmp_path / "c.toml")]):
        code, err, _ = fbcache(capsys, *argv, "--storage", storage)
        assert code == EXIT_USAGE, (argv, err)
        assert err[-1] == f"fbcache {argv[0]}: error: no fbcache runs in {storage}", err
        assert fragment in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history"], "nothing written"


def test_there_are_enough_bad_history_files():
    assert len(BAD_RUNS) >= 12 and len({case[0] for case in BAD_RUNS}) == len(BAD_RUNS)


# --------------------------------------------------------------------------- usage and I/O errors


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--json", "/nonexistent/r.json"], "--json /nonexistent/r.json: directory /nonexistent does not exist"),
    (["compare", "--markdown", "{tmp}"], "is a directory"),
    (["calibrate", "--out", "/nonexistent/x.toml"], "--out /nonexistent/x.toml: directory /nonexistent does not exist"),
    (["report", "--out", "{tmp}/file"], "is a file, not a directory"),
    (["compare", "--baseline", "median:0"], "median:0 is gone"),
    (["compare", "--latest", "0099"], "matches 0 runs"),
    (["report", "0042"], "matches 0 runs"),
    (["alert", "{tmp}/missing.json"], "cannot read compare result"),
    (["alert"], "give a compare result"),
    (["history", "--storage", "{tmp}/nowhere"], "no storage directory"),
])
def test_usage_and_io_errors_are_one_line_and_exit_2(tmp_path: Path, capsys, argv, fragment):
    machine = tmp_path / "history" / "m"
    machine.mkdir(parents=True)
    (machine / "0001_good.json").write_text(json.dumps(GOOD_RUN))
    (tmp_path / "file").write_text("precious")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    storage = [] if "--storage" in argv else ["--storage", str(tmp_path / "history")]
    code, err, _ = fbcache(capsys, *argv, *storage)
    assert code == EXIT_USAGE
    assert len(err) == 1 and err[0].startswith(f"fbcache {argv[0]}: error: ") and fragment in err[0], err
    assert (tmp_path / "file").read_text() == "precious"
    assert not (Path("/nonexistent")).exists()


def test_run_files_are_world_readable(tmp_path: Path):
    from fbcache.history.storage import write_new_file

    previous = os.umask(0o022)
    try:
        path = write_new_file(tmp_path, lambda: "0001_x.json", b"{}")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_subset_run_is_not_the_baseline_of_a_full_run(tmp_path: Path, capsys):
    """Each benchmark is judged against the runs that measured it: a -k subset run stands in for nothing."""
    machine = tmp_path / "history" / "m"
    machine.mkdir(parents=True)
    (machine / "0001_full.json").write_text(json.dumps(GOOD_RUN))
    (machine / "0002_subset.json").write_text(edited(lambda d: d.update(benchmarks=d["benchmarks"][:1])).decode())
    (machine / "0003_full.json").write_text(json.dumps(GOOD_RUN))
    result = tmp_path / "r.json"
    code, err, out = fbcache(capsys, "compare", "--storage", str(tmp_path / "history"), "--json", str(result))
    assert code == EXIT_CLEAN, err
    rows = {row["label"]: {v["metric"]: v for v in row["verdicts"]} for row in json.loads(result.read_text())["rows"]}
    assert "2 earlier runs" in rows["uncached"]["time"]["detail"]  # the subset run measured this one
    for label in ("0.1", "0.5"):  # ... and not these: their only earlier run is 0001_full
        assert "1 earlier runs" in rows[label]["time"]["detail"]
        assert rows[label]["hits"]["status"] == "ok" and rows[label]["ssim"]["status"] == "ok"
    shutil.rmtree(machine)
    machine.mkdir()
    (machine / "0001_subset.json").write_text(edited(lambda d: d.update(benchmarks=d["benchmarks"][:1])).decode())
    (machine / "0002_full.json").write_text(json.dumps(GOOD_RUN))
    code, err, out = fbcache(capsys, "compare", "--storage", str(tmp_path / "history"), "--json", str(result))
    assert code == EXIT_CLEAN, err
    rows = {row["label"]: {v["metric"]: v for v in row["verdicts"]} for row in json.loads(result.read_text())["rows"]}
    assert all(v["status"] == "not judged" for v in rows["0.5"].values() if v["metric"] in ("time", "hits"))
