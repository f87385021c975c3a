"""``fbcache tune`` on the tiny model on a CPU (64x64, 28 steps), checked by an independent ``pytest
benchmarks`` sweep at the thresholds it chose; and its bad input, refused before any model is built.

The tunes share one trace (the floors SSIM 0.99, 0.97 and 0.90, as issue #25 asks) and one sweep, so
the whole module makes about 60 generations of the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_sweep
from fbcache.cli import main
from fbcache.errors import EXIT_CLEAN, EXIT_UNMET, EXIT_USAGE
from fbcache.plugin import session as fbsession
from fbcache.verdicts.bounds import load_profile
from fbcache.verdicts.tune import Trace, grid_generations

FLOORS = (0.99, 0.97, 0.9)
#: a short proof: the tests check what it reports, not how fast the CPU is
PROOF = ["--rounds", "3", "--warmup-rounds", "0"]


def no_model(*args, **kwargs):
    raise AssertionError("a model was built")


@pytest.fixture
def modelless(monkeypatch):
    """Any attempt to build a model fails the test."""
    monkeypatch.setattr(fbsession, "load_model", no_model)


def tune(*args: str) -> tuple[int, dict | None]:
    """``fbcache tune ARGS`` in this process; its exit code and its ``--json``, if it wrote one."""
    code = main(["tune", *args])
    out = Path(args[args.index("--json") + 1]) if "--json" in args else None
    return code, json.loads(out.read_text()) if out is not None and out.exists() else None


# ------------------------------------------------------------------------------------ bad input


def one_line_error(capsys, *args: str) -> tuple[int, str]:
    code = main(["tune", *args])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize(("args", "message"), [
    ((), "fbcache tune: error: --floor is missing (tune needs a quality to keep); accepted: at least one floor: "
         "--min-ssim X, --min-psnr X, --max-lpips X, or --floor METRIC=X"),
    (("--min-ssim", "1.2"), "--min-ssim: invalid value '1.2' (outside the values SSIM can take)"),
    (("--floor", "lpipz=0.1"), "--floor: invalid value 'lpipz=0.1' (no METRIC 'lpipz')"),
    (("--min-ssim", "0.9", "--max-threshold", "0"), "--max-threshold: invalid value '0' (not above 0)"),
    (("--min-ssim", "0.9", "--min-speedup", "1.5", "--untimed"),
     "--min-speedup: invalid value '1.5' (nothing is timed: --untimed)"),
    (("--min-ssim", "0.9", "--min-speedup", "1.5", "--cache-backend", "cache-dit"),
     "(nothing is timed: the cache-dit cache cannot be removed once applied, so its rounds cannot be interleaved "
     "with the uncached baseline)"),
    (("--min-ssim", "0.9", "--steps", "0"), "--steps (for --fbcache-steps): invalid value '0' (less than 1)"),
    (("--min-ssim", "0.9", "--prompts", "no-such-set"), "--prompts (for --fbcache-prompts): invalid value 'no-such-set' (no such file"),
    (("--min-ssim", "0.9", "--json", "no/such/dir/t.json"), "--json no/such/dir/t.json: directory no/such/dir does "
                                                             "not exist"),
])
def test_bad_input_is_one_line_before_any_model_is_built(capsys, modelless, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = one_line_error(capsys, *args)
    assert (code, message in err) == (EXIT_USAGE, True), err


def test_a_sweep_option_from_the_environment_is_named_as_the_variable(capsys, modelless, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FBCACHE_STEPS", "many")
    assert one_line_error(capsys, "--min-ssim", "0.9") == (
        EXIT_USAGE, "fbcache tune: error: FBCACHE_STEPS (for --fbcache-steps): invalid value 'many' (not a whole "
                    "number); accepted: a whole number >= 1")


def test_a_trace_of_another_workload_is_refused_naming_what_differs(capsys, modelless, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trace = tmp_path / "trace.json"
    trace.write_text(Trace({"model": "tiny", "workload": "20 steps, 64x64, seed 0, prompt f0979f5e"}).to_json())
    code, err = one_line_error(capsys, "--min-ssim", "0.9", "--trace", str(trace))
    assert (code, "its generations are of another workload: accelerator:" in err,
            "workload: '20 steps, 64x64, seed 0, prompt f0979f5e' -> '28 steps, 64x64, seed 0, prompt f0979f5e'" in err) \
        == (EXIT_USAGE, True, True)


def test_a_malformed_trace_is_refused(capsys, modelless, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trace.json").write_text("{not json")
    code, err = one_line_error(capsys, "--min-ssim", "0.9", "--trace", "trace.json")
    assert (code, err.startswith("fbcache tune: error: --trace trace.json: unreadable trace (JSONDecodeError")) == \
        (EXIT_USAGE, True)


# ------------------------------------------------------------------------------------ the tiny model


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The three floors through one trace (the first one timed, with a bounds profile), a fresh search for the
    middle floor, and one independent sweep at every recommended threshold and the next pattern above it."""
    root = tmp_path_factory.mktemp("tune")
    shared, fresh = root / "shared", root / "fresh"
    found = {}
    for floor in FLOORS:
        timed = [*PROOF, "--bounds-out", str(root / "tuned.toml")] if floor == FLOORS[0] else ["--untimed"]
        found[floor] = tune("--min-ssim", str(floor), "--out-dir", str(shared), "--json", str(root / f"{floor}.json"),
                            *timed)
    again = tune("--min-ssim", "0.97", "--out-dir", str(fresh), "--json", str(root / "fresh.json"), "--untimed")
    thresholds = [t for _, answer in found.values() for t in (answer["recommended_threshold"],
                                                              answer["next_faster"]["threshold"])]
    sweep = run_sweep(root, "--fbcache-thresholds", " ".join(f"{t!r}" for t in thresholds), "--fbcache-rounds", "1",
                      "--fbcache-warmup-rounds", "0", "--fbcache-bounds", "none", "--benchmark-autosave")
    assert sweep.returncode == 0, sweep.output
    swept = {b["extra_info"]["threshold"]: b["extra_info"] for b in sweep.last_run()["benchmarks"]}
    return {"found": found, "again": again, "swept": swept, "root": root, "shared": shared}


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
@pytest.mark.parametrize("floor", FLOORS)
def test_the_recommendation_keeps_its_floor_in_an_independent_sweep_with_the_same_hits(tuned, floor):
    code, answer = tuned["found"][floor]
    swept = tuned["swept"][answer["recommended_threshold"]]
    hit_map = "".join("." if hit else "#" for hit in swept["hit_trace"])
    assert (code, swept["ssim"] >= floor, hit_map, swept["ssim"]) == \
        (EXIT_CLEAN, True, answer["frontier"][[f["role"] for f in answer["frontier"]].index("recommended")]["hit_maps"][0],
         answer["worst_prompt"]["ssim"])


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
@pytest.mark.parametrize("floor", FLOORS)
def test_the_next_hit_pattern_above_it_breaks_the_floor_in_the_sweep(tuned, floor):
    _, answer = tuned["found"][floor]
    faster = answer["next_faster"]
    swept = tuned["swept"][faster["threshold"]]
    assert (faster["interval"][0], swept["ssim"] < floor, faster["breaks"]) == (answer["interval"][1], True, ["min_ssim"])


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_the_first_search_needs_at_most_a_third_of_a_001_grid_over_its_range(tuned):
    _, answer = tuned["found"][FLOORS[0]]
    search = answer["search"]
    assert (search["from_trace_file"], search["generations"] <= (grid_generations(1.0, 1) + 1) / 3) == (0, True)


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_two_searches_give_the_same_interval(tuned):
    assert tuned["again"][1]["interval"] == tuned["found"][0.97][1]["interval"]


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_the_proof_times_the_recommendation_and_its_neighbours_with_an_interval(tuned):
    _, answer = tuned["found"][FLOORS[0]]
    timed = [row for row in answer["frontier"] if row["speedup"] is not None]
    assert (sorted(row["role"] for row in timed), all(r["speedup_ci"][0] <= r["speedup"] <= r["speedup_ci"][1]
                                                      for r in timed)) == (["next faster", "next slower", "recommended"], True)


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_bounds_out_guards_exactly_the_recommended_threshold(tuned):
    _, answer = tuned["found"][FLOORS[0]]
    profile = load_profile(tuned["root"] / "tuned.toml")
    bound = profile.bound_for(answer["recommended_threshold"])
    assert (list(profile.thresholds), bound.image["ssim"]) == \
        ([answer["recommended_threshold"]], round(answer["worst_prompt"]["ssim"] - 0.02, 4))


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_a_rerun_whose_trace_holds_every_generation_builds_no_model(tuned, modelless, tmp_path):
    code, answer = tune("--min-ssim", "0.97", "--out-dir", str(tuned["shared"]), "--json", str(tmp_path / "r.json"),
                        "--untimed")
    assert (code, answer["interval"], answer["search"]["generations"]) == \
        (EXIT_CLEAN, tuned["found"][0.97][1]["interval"], 0)


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_a_floor_no_reused_step_keeps_exits_4_with_no_recommendation(tuned, tmp_path):
    code, answer = tune("--min-ssim", "1", "--out-dir", str(tuned["shared"]), "--json", str(tmp_path / "r.json"),
                        "--untimed")
    assert (code, answer["recommended_threshold"], answer["unmet"]) == (EXIT_UNMET, None, "no threshold keeps every floor")


@pytest.mark.integration
@pytest.mark.xdist_group("tune")
def test_a_min_speedup_beyond_reach_exits_4_and_writes_no_profile(tuned, tmp_path):
    profile = tmp_path / "never.toml"
    code, answer = tune("--min-ssim", "0.97", "--out-dir", str(tuned["shared"]), "--json", str(tmp_path / "r.json"),
                        "--min-speedup", "100", "--bounds-out", str(profile), *PROOF)
    assert (code, answer["unmet"].startswith("its speedup "), answer["unmet"].endswith("is below --min-speedup 100"),
            profile.exists()) == (EXIT_UNMET, True, True, False)
