"""The configuration schema at the bottom of every layer: the option table, prompt sets, and :class:`HarnessConfig`.

**Options.** Every option ``name`` is available as ``--fbcache-<name>`` on the command line, as
``FBCACHE_<NAME>`` in the environment and as ``fbcache_<name>`` under ``[tool.pytest.ini_options]``
(command line > environment > ini > the table's default). ``fbcache nightly`` passes on the options
marked ``nightly``. Cache backends, quantization modes and model sources declare their own options
with the same :class:`OptionSpec`; :mod:`fbcache.configure` joins them to this table, adds one
``--fbcache-calibrate-<metric>-margin`` per image metric and lists the registries' choices in the
help of ``model``, ``quant``, ``cache_backend``, ``metrics`` and ``calibrate_margin``.

Every parser takes the option's name first, so its error names exactly what the user typed
(``--fbcache-steps`` or ``FBCACHE_STEPS``) and the values it accepts.

**Prompt sets.** Prompt sets (``--fbcache-prompts``), each prompt measured against its own uncached image, and their shards.

One prompt's image metrics and hits say little about a cache; published FBCache evaluations average over
prompt sets. A set is a file:

- ``.txt`` (or any other name): one prompt per line; blank lines and lines starting with ``#`` are
  skipped; every prompt uses ``--fbcache-seed``.
- ``.toml``: ``prompts = ["...", ...]`` or ``[[prompt]]`` tables with ``text`` and an optional ``seed``.
- ``.json``: a list of strings or of ``{"prompt": "...", "seed": N}``, or ``{"prompts": [...]}``.

``default`` names the set shipped in ``fbcache/prompts/default.txt`` (any ``<name>.txt`` there is a
name). The set's digest (prompts and seeds, in order) enters the run's fingerprint, so runs of
different sets are never compared.

A set can be sharded over several processes of one host (``--fbcache-shard``). One process per GPU, started by an established launcher: ``torchrun --nproc-per-node N --no-python
pytest benchmarks ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process, and
``--fbcache-shard auto`` (the default) reads them. Without torchrun, ``--fbcache-shard R/N`` with
``CUDA_VISIBLE_DEVICES`` does the same by hand. pytest-xdist is not used: pytest-benchmark 5 disables
itself in any xdist run (``--benchmark-enable`` does not override that) and its workers' results never
reach a saved file.

Shard R of N takes the prompts whose index i satisfies ``i % N == R``: a deterministic split, the
same on every host, so the union of the shards is the whole set. Each shard measures its own
uncached baselines, on its own GPU (``cuda:LOCAL_RANK``), and saves its own run; ``fbcache merge``
unions them into one run file.

**The session's configuration.** What one benchmark session measures: :class:`HarnessConfig`, a plain, immutable record.

Its defaults are literals: the option table's, and the default model's own (the tiny model: 28
steps, 64x64). Nothing here knows a registry; :func:`fbcache.configure.build_config` checks raw
option strings through the registries and builds one, before any model is built.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbcache.errors import ConfigError

DEFAULT_PROMPT = "A cute panda holding a sign that says hello world"
SEED_THRESHOLDS_TEXT = "0 0.01 0.05 0.1 0.2 0.5 0.8"
#: ``--fbcache-compile`` values (what each does: fbcache.models)
COMPILE_MODES = ("none", "regional", "regional+io", "full")
#: the help of an option whose choices a registry lists (fbcache.configure fills it in)
REGISTRY_HELP = "one of the registered choices"


@dataclass(frozen=True)
class OptionSpec:
    name: str
    help: str | Callable[[], str]
    #: the raw default, parsed like user input; "" means "none" or "derived" (see help)
    default: str
    metavar: str = "VALUE"
    flag: bool = False
    #: ``fbcache nightly --<name>`` passes it on to the sweep
    nightly: bool = False
    #: what ``--help`` names as the default when ``default`` is "" (derived, or nothing)
    default_help: str = "none"
    #: an extension's option: ``parse(option, raw)`` -> the value ``HarnessConfig.option`` gives (raise
    #: ConfigError naming ``option``); None: the text itself. An empty value is None, unparsed.
    parse: Callable[[str, str], Any] | None = None
    #: NAME=VALUE entries: the flag may be repeated; in the environment and the ini, comma-separated
    multiple: bool = False

    @property
    def cli(self) -> str:
        return "--fbcache-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return "fbcache_" + self.name

    @property
    def ini(self) -> str:
        return "fbcache_" + self.name

    @property
    def env(self) -> str:
        return "FBCACHE_" + self.name.upper()

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def value(self, raw: str | bool | None) -> Any:
        """The parsed value of a raw string (None or "": the default)."""
        text = self.default if raw is None or raw == "" else raw
        if text == "":
            return None
        return self.parse(self.cli, str(text)) if self.parse is not None else str(text)


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("model", REGISTRY_HELP, "tiny", "MODEL", nightly=True),
    OptionSpec("quant", REGISTRY_HELP, "none", "QUANT", nightly=True),
    OptionSpec("compile", "torch.compile the transformer once per session, outside the timed rounds: none; "
               "regional (each repeated block's forward, fullgraph, before the cache hooks; works with the "
               "cache); regional+io (as regional, plus the modules each step runs outside the blocks: the "
               "embedders, norm_out and proj_out; the cache decision stays eager); full (the whole transformer "
               "forward; uncached benchmarks only). Timed rounds that recompile fail their benchmark", "none",
               "MODE", nightly=True),
    OptionSpec("compile_cache", "a directory that outlives the job for torch.compile's inductor and Triton caches "
               "(TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR), so the next run of an unchanged stack starts warm; "
               "each benchmark records whether its compilation was cold or warm", "", "DIR", nightly=True,
               default_help="torch's own, in the system temp directory"),
    OptionSpec("cache_backend", REGISTRY_HELP, "diffusers", "BACKEND", nightly=True),
    OptionSpec("thresholds", "residual_diff_threshold values to sweep; MULTI/SINGLE pairs (e.g. 0.09/0.12) for a "
               "cache that decides twice per step, after the first double-stream and the first single-stream "
               "block", SEED_THRESHOLDS_TEXT, "LIST", nightly=True),
    OptionSpec("steps", "denoising steps", "", "N", nightly=True, default_help="the model's, 28"),
    OptionSpec("resolution", "N or WxH, multiples of 16", "", "RES", nightly=True,
               default_help="the model's, 64 for tiny models, 1024 otherwise"),
    OptionSpec("prompt", "the prompt (when no --fbcache-prompts set is given)", DEFAULT_PROMPT, "TEXT"),
    OptionSpec("prompts", "a prompt set: default (8 shipped prompts), a shipped set name, or a .txt (one prompt "
               "per line), .toml or .json file (prompts with optional seeds); one benchmark per threshold and prompt",
               "", "FILE", nightly=True, default_help="none: the one --fbcache-prompt"),
    OptionSpec("shard", "run one shard of the prompt set: auto (torchrun's RANK/WORLD_SIZE/LOCAL_RANK when set), "
               "off, or R/N (shard R of N, 0-based); merge the shards' runs with fbcache merge", "auto", "SHARD"),
    OptionSpec("seed", "generator seed", "0", "N"),
    OptionSpec("rounds", "timed generations per threshold", "3", "N", nightly=True),
    OptionSpec("warmup_rounds", "untimed generations per threshold before the timed ones", "1", "N"),
    OptionSpec("output_dir", "where images and the results table go", "fbcache-results", "DIR"),
    OptionSpec("bounds", "bounds profile: auto (the shipped profile that matches this run, if any), none, "
               "a profile name in the bounds directory, or a TOML path", "auto", "PROFILE", nightly=True),
    OptionSpec("bounds_dir", "where profile names are looked up", "", "DIR",
               default_help="benchmarks/bounds under the rootdir"),
    OptionSpec("calibrate", "write a bounds profile from this run to PATH (measured value minus the margins)",
               "", "PATH", default_help="none, no profile written"),
    OptionSpec("calibrate_speedup_margin", "relative margin below the measured speedup for --fbcache-calibrate",
               "0.15", "FRACTION"),
    OptionSpec("metrics", "image metrics to compute against the uncached image, comma-separated; an opt-in one "
               "(it needs weights on disk) is computed only when named here", "", "LIST", nightly=True,
               default_help=REGISTRY_HELP),
    OptionSpec("calibrate_margin", "per image metric, METRIC=DELTA: how far beyond the measured value "
               "--fbcache-calibrate puts the metric's bound", "", "METRIC=DELTA", multiple=True,
               default_help=REGISTRY_HELP),
    OptionSpec("device", "auto, cpu, cuda or cuda:N", "auto", "DEVICE", nightly=True),
    OptionSpec("force_compare", "let --benchmark-compare compare runs with different fingerprints", "false",
               flag=True),
    OptionSpec("interleave", "time the rounds interleaved: round 1 of the uncached baseline and of every threshold, "
               "then round 2 of each, the order rotated per round, so drift hits all alike and speedups pair "
               "generations timed next to each other (false: each threshold's rounds back to back)", "true",
               "BOOL", nightly=True),
    OptionSpec("threads", "torch threads for CPU runs (torch.set_num_threads), or auto to leave torch's default; "
               "1 keeps a CPU run from fighting other jobs for the cores", "1", "N", nightly=True),
    OptionSpec("clock", "what a round's time is: wall (time.perf_counter), cpu (time.process_time: the process's "
               "CPU time, which other jobs on the cores do not stretch; CPU devices only), or auto: cpu on a CPU "
               "device with a fixed --fbcache-threads, wall otherwise", "auto", "auto|wall|cpu", nightly=True),
    OptionSpec("selfcheck", "also time a bare loop of the same pipeline call after the uncached benchmark, "
               "to report the harness's own overhead", "false", flag=True),
    OptionSpec("breakdown", "after each benchmark's timed rounds, one untimed generation timed part by part (first "
               "block, remaining blocks, rest of each step, text encoding, VAE decode), for the cost model, the ideal "
               "speedup and the efficiency: on, off, or auto (on on a GPU, off on a CPU)", "auto", "auto|on|off",
               nightly=True),
    OptionSpec("flops", "after each benchmark's timed rounds, one untimed generation whose FLOPs are counted "
               "(compiled sessions run it eagerly): on, off, or auto (on on a GPU, off on a CPU)", "auto",
               "auto|on|off", nightly=True),
)

BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


# ------------------------------------------------------------------------------------ parsers


@dataclass(frozen=True)
class ThresholdPair:
    """A ``MULTI/SINGLE`` threshold pair, for a cache that decides twice per step: after the first
    double-stream block (``multi``), then after the first single-stream block (``single``).

    It is shown, keyed and named as ``"0.09/0.12"`` (``f"{pair:g}"``). Among plain thresholds it sorts by
    ``multi``, after a plain threshold of the same value, then by ``single``; it never equals one.
    """

    multi: float
    single: float

    def __format__(self, spec: str) -> str:
        return f"{format(self.multi, spec)}/{format(self.single, spec)}"

    def __str__(self) -> str:
        return format(self, "g")

    def __lt__(self, other: object) -> bool:
        return _compare(self, other, lambda a, b: a < b)

    def __le__(self, other: object) -> bool:
        return _compare(self, other, lambda a, b: a <= b)

    def __gt__(self, other: object) -> bool:
        return _compare(self, other, lambda a, b: a > b)

    def __ge__(self, other: object) -> bool:
        return _compare(self, other, lambda a, b: a >= b)

    def to_json(self) -> dict[str, float]:
        return {"multi": self.multi, "single": self.single}


#: one threshold of a sweep: a plain one (one decision per step) or a pair (two)
Threshold = float | ThresholdPair

THRESHOLDS_ACCEPTED = ("numbers >= 0, or MULTI/SINGLE pairs of them (a cache that decides twice per step: "
                       "double-stream, then single-stream blocks), separated by spaces or commas, e.g. "
                       "'0 0.05 0.1' or '0.09/0.12 0.12/0.12'")


def threshold_order(threshold: Threshold) -> tuple[float, int, float]:
    """The sort key of any threshold: the (first) threshold, a plain one before a pair, the second one."""
    if isinstance(threshold, ThresholdPair):
        return threshold.multi, 1, threshold.single
    return float(threshold), 0, 0.0


def _compare(pair: ThresholdPair, other: object, op: Callable[[Any, Any], bool]) -> Any:
    if isinstance(other, ThresholdPair) or (isinstance(other, (int, float)) and not isinstance(other, bool)):
        return op(threshold_order(pair), threshold_order(other))
    return NotImplemented


def same_threshold(a: Threshold, b: Threshold, tolerance: float = 1e-9) -> bool:
    """Equal up to ``tolerance`` (thresholds read back from text); a pair never equals a plain threshold."""
    if isinstance(a, ThresholdPair) or isinstance(b, ThresholdPair):
        return (isinstance(a, ThresholdPair) and isinstance(b, ThresholdPair)
                and abs(a.multi - b.multi) < tolerance and abs(a.single - b.single) < tolerance)
    return abs(a - b) < tolerance


def has_pairs(thresholds: tuple[Threshold, ...]) -> bool:
    return any(isinstance(t, ThresholdPair) for t in thresholds)


def parse_threshold(option: str, token: str, accepted: str = THRESHOLDS_ACCEPTED) -> Threshold:
    """'0.1' -> 0.1; '0.09/0.12' -> ThresholdPair(0.09, 0.12); each number finite and >= 0."""
    parts = token.split("/")
    if len(parts) > 2:
        raise ConfigError(option, token, accepted, "a pair is two numbers, MULTI/SINGLE")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            why = "not a number" if len(parts) == 1 else f"{part!r} is not a number"
            raise ConfigError(option, token, accepted, why) from None
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(option, token, accepted, "not finite")
        if value < 0:
            raise ConfigError(option, token, accepted, "negative")
        values.append(value)
    return ThresholdPair(values[0], values[1]) if len(values) == 2 else values[0]


def parse_thresholds(option: str, raw: str) -> tuple[Threshold, ...]:
    """'0 0.05,0.1 0.09/0.12' -> (0.0, 0.05, 0.09/0.12, 0.1): sorted, de-duplicated, finite and >= 0."""
    tokens = [t for t in re.split(r"[,\s]+", raw.strip()) if t]
    if not tokens:
        raise ConfigError(option, raw, THRESHOLDS_ACCEPTED, "no thresholds given")
    return tuple(sorted(set(parse_threshold(option, token) for token in tokens), key=threshold_order))


def threshold_from_json(value: Any) -> Threshold:
    """A stored threshold: a number, or ``{"multi": M, "single": S}``; ValueError when it is neither."""
    if isinstance(value, dict) and set(value) == {"multi", "single"}:
        numbers = [value["multi"], value["single"]]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
               for v in numbers):
            return ThresholdPair(float(numbers[0]), float(numbers[1]))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{value!r} is neither a number nor {{\"multi\": M, \"single\": S}} with M, S >= 0")


def threshold_to_json(threshold: Threshold) -> float | dict[str, float]:
    return threshold.to_json() if isinstance(threshold, ThresholdPair) else threshold


def parse_int(option: str, raw: str, minimum: int) -> int:
    accepted = f"a whole number >= {minimum}"
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(option, raw, accepted, "not a whole number") from None
    if value < minimum:
        raise ConfigError(option, raw, accepted, f"less than {minimum}")
    return value


def parse_resolution(option: str, raw: str) -> tuple[int, int]:
    """'1024' or '1024x768' (width x height), each a positive multiple of 16."""
    accepted = "N or WxH, each a positive multiple of 16 (FLUX: VAE factor 8 x 2x2 patches), e.g. 1024 or 1024x768"
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(raw))
    if not match:
        raise ConfigError(option, raw, accepted, "not N or WxH")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    for value in (width, height):
        if value <= 0 or value % 16:
            raise ConfigError(option, raw, accepted, f"{value} is not a positive multiple of 16")
    return width, height


def parse_margin(option: str, raw: str, upper: float) -> float:
    accepted = f"a number in [0, {upper:g})" if math.isfinite(upper) else "a finite number >= 0"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(option, raw, accepted, "not a number") from None
    if not 0 <= value < upper:
        raise ConfigError(option, raw, accepted, "out of range")
    return value


def parse_entries(option: str, raw: str, names: tuple[str, ...], parse: Callable[[str, str, str], Any],
                  what: str = "NAME") -> dict[str, Any]:
    """'a=1, b=2' -> {'a': parse(option, 'a', '1'), ...}: each NAME one of ``names``, at most once.

    ``parse(option, name, value)`` raises ConfigError; its error is given again naming the whole entry.
    """
    accepted = f"{what}=VALUE, {what} one of {', '.join(names) or '(none registered)'}; several separated by commas"
    found: dict[str, Any] = {}
    for entry in (e.strip() for e in str(raw).split(",") if e.strip()):
        name, equals, value = (part.strip() for part in entry.partition("="))
        if not equals or not value:
            raise ConfigError(option, entry, accepted, f"no {what}=VALUE")
        if name not in names:
            raise ConfigError(option, entry, accepted, f"no {what} {name!r}")
        if name in found:
            raise ConfigError(option, entry, accepted, f"{name} given twice")
        try:
            found[name] = parse(option, name, value)
        except ConfigError as exc:
            raise ConfigError(option, entry, f"{name}=VALUE, VALUE {exc.accepted}", exc.why) from None
    return found


def parse_choice(option: str, raw: str, choices: tuple[str, ...]) -> str:
    value = str(raw).strip().lower()
    if value not in choices:
        raise ConfigError(option, raw, ", ".join(choices))
    return value


def parse_device(option: str, raw: str, cuda_available: Callable[[], bool], cuda_count: Callable[[], int]) -> str:
    accepted = "auto, cpu, cuda, cuda:N"
    value = str(raw).strip().lower()
    if value == "auto":
        return "cuda" if cuda_available() else "cpu"
    if value == "cpu":
        return value
    match = re.fullmatch(r"cuda(?::(\d+))?", value)
    if not match:
        raise ConfigError(option, raw, accepted)
    if not cuda_available():
        raise ConfigError(option, raw, "auto, cpu", "CUDA was requested but torch sees no CUDA device")
    if match.group(1) is not None and int(match.group(1)) >= cuda_count():
        raise ConfigError(option, raw, f"cuda:0..cuda:{cuda_count() - 1}", "no such CUDA device")
    return value


def check_writable_dir(option: str, raw: str) -> Path:
    """The directory, resolved, if it exists writable or could be created; no side effects."""
    accepted = "a directory that exists and is writable, or can be created"
    path = Path(raw).expanduser().resolve()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(option, raw, accepted, f"{probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(option, raw, accepted, f"{probe} is not writable")
    return path


def parse_threads(option: str, raw: str) -> int | None:
    """'auto' (torch's default: None) or a whole number >= 1."""
    if str(raw).strip().lower() == "auto":
        return None
    try:
        return parse_int(option, raw, 1)
    except ConfigError:
        raise ConfigError(option, raw, "auto or a whole number >= 1", "not a thread count") from None


def parse_bool(option: str, raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(option, raw, "true/false, yes/no, 1/0, on/off")


def resolve_on_gpu(option: str, raw: str, device: str) -> bool:
    """auto: on for a GPU run, off for a CPU one; else a boolean."""
    if str(raw).strip().lower() == "auto":
        return not device.startswith("cpu")
    try:
        return parse_bool(option, raw)
    except ConfigError:
        raise ConfigError(option, raw, "auto, on, off (or true/false, yes/no, 1/0)") from None


def resolve_clock(option: str, raw: str, device: str, threads: int | None) -> str:
    """auto: the process's CPU time for a CPU run with a fixed thread count, whose wall time other jobs on
    the same cores stretch (docs/runner.md has a measured CPU runner); wall time on a GPU, whose work is not
    the process's CPU time."""
    value = parse_choice(option, raw, ("auto", "wall", "cpu"))
    on_cpu = device.startswith("cpu")
    if value == "cpu" and not on_cpu:
        raise ConfigError(option, raw, "auto, wall", f"the device is {device}: its work is not this process's CPU time")
    if value == "auto":
        return "cpu" if on_cpu and threads is not None else "wall"
    return value


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED_DIR = Path(__file__).resolve().parent / "prompts"
ACCEPTED = ("default (the shipped 8-prompt set), a shipped set name, or a file: .txt (one prompt per line), "
            ".toml (prompts = [...] or [[prompt]] text/seed) or .json (a list of prompts or of {prompt, seed})")


@dataclass(frozen=True)
class PromptCase:
    """One prompt of a set and the seed of its generator."""

    text: str
    seed: int


@dataclass(frozen=True)
class PromptSet:
    name: str
    source: str
    cases: tuple[PromptCase, ...]

    @property
    def digest(self) -> str:
        """Short hash of the prompts and seeds, in order: what the fingerprint compares."""
        payload = json.dumps([[case.text, case.seed] for case in self.cases], ensure_ascii=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:8]

    def describe(self) -> dict[str, Any]:
        """What ``machine_info["fbcache"]["workload"]["prompt_set"]`` records."""
        return {"name": self.name, "digest": self.digest, "count": len(self.cases),
                "prompts": [{"text": c.text, "seed": c.seed} for c in self.cases]}


def shipped_names() -> list[str]:
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.txt"))


def _fail(option: str, raw: str, why: str) -> ConfigError:
    return ConfigError(option, raw, ACCEPTED, why)


def _seed(option: str, raw: str, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(option, raw, f"{where}: seed must be a whole number >= 0, got {value!r}")
    return value


def _case(option: str, raw: str, entry: Any, default_seed: int, where: str) -> PromptCase:
    text: Any
    if isinstance(entry, str):
        text, seed = entry, default_seed
    elif isinstance(entry, dict):
        text = entry.get("prompt", entry.get("text"))
        unknown = set(entry) - {"prompt", "text", "seed"}
        if unknown:
            raise _fail(option, raw, f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        seed = _seed(option, raw, entry["seed"], where) if "seed" in entry else default_seed
    else:
        raise _fail(option, raw, f"{where}: expected a prompt string or a table with 'prompt' and 'seed'")
    if not isinstance(text, str) or not text.strip():
        raise _fail(option, raw, f"{where}: empty or missing prompt text")
    if "\n" in text:
        raise _fail(option, raw, f"{where}: a prompt must be one line")
    return PromptCase(text.strip(), seed)


def _entries_from_data(option: str, raw: str, data: Any) -> list[Any]:
    if isinstance(data, dict):
        entries = data.get("prompts", data.get("prompt"))
        unknown = set(data) - {"prompts", "prompt"}
        if unknown:
            raise _fail(option, raw, f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    else:
        entries = data
    if not isinstance(entries, list):
        raise _fail(option, raw, "no list of prompts found")
    return entries


def _read_entries(option: str, raw: str, path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(option, raw, f"cannot read it: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return _entries_from_data(option, raw, tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise _fail(option, raw, f"not valid TOML: {exc}") from None
    if suffix == ".json":
        try:
            return _entries_from_data(option, raw, json.loads(text))
        except json.JSONDecodeError as exc:
            raise _fail(option, raw, f"not valid JSON: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompt_set(option: str, raw: str, default_seed: int) -> PromptSet:
    """The set named or pointed to by ``raw``; ConfigError, naming the option, for anything unusable."""
    value = str(raw).strip()
    shipped = SHIPPED_DIR / f"{value}.txt"
    if value and "/" not in value and shipped.is_file():
        path, name = shipped, value
    else:
        path, name = Path(value).expanduser(), Path(value).stem
        if not path.is_file():
            raise _fail(option, raw, f"no such file, and not a shipped set ({', '.join(shipped_names())})")
    entries = _read_entries(option, raw, path)
    cases = tuple(_case(option, raw, entry, default_seed, f"prompt {i + 1}") for i, entry in enumerate(entries))
    if not cases:
        raise _fail(option, raw, "the set has no prompts")
    if len(set(cases)) != len(cases):
        raise _fail(option, raw, "the same prompt and seed appear twice")
    return PromptSet(name=name, source=str(path), cases=cases)


# ------------------------------------------------------------------------------------ shards

SHARD_ACCEPTED = "auto (torchrun's RANK/WORLD_SIZE), off, or R/N with 0 <= R < N"


@dataclass(frozen=True)
class Shard:
    rank: int
    world_size: int
    #: the process's index on this host (torchrun's LOCAL_RANK): which GPU it takes
    local_rank: int
    #: "torchrun" or "option": who said so
    origin: str

    def indices(self, count: int) -> list[int]:
        """The prompt indices of this shard, out of ``count``."""
        return [i for i in range(count) if i % self.world_size == self.rank]

    def describe(self) -> dict[str, object]:
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank,
                "origin": self.origin}


def _env_int(environ: Mapping[str, str], name: str, option: str) -> int:
    raw = environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(option, f"auto ({name}={raw!r})", SHARD_ACCEPTED, f"{name} is not a whole number") from None


def parse_shard(option: str, raw: str, environ: Mapping[str, str]) -> Shard | None:
    """None when the run is not sharded (``off``, or ``auto`` outside a launcher, or a world of one)."""
    value = str(raw).strip().lower()
    if value == "off":
        return None
    if value == "auto":
        if "WORLD_SIZE" not in environ or "RANK" not in environ:
            return None
        world, rank = _env_int(environ, "WORLD_SIZE", option), _env_int(environ, "RANK", option)
        local = _env_int(environ, "LOCAL_RANK", option) if "LOCAL_RANK" in environ else rank
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(option, f"auto (RANK={rank}, WORLD_SIZE={world})", SHARD_ACCEPTED, "rank out of range")
        return Shard(rank, world, local, "torchrun") if world > 1 else None
    match = re.fullmatch(r"(\d+)/(\d+)", value)
    if not match:
        raise ConfigError(option, raw, SHARD_ACCEPTED)
    rank, world = int(match.group(1)), int(match.group(2))
    if world < 1 or rank >= world:
        raise ConfigError(option, raw, SHARD_ACCEPTED, "R must be below N")
    # by hand, each process is pinned with CUDA_VISIBLE_DEVICES (or --fbcache-device cuda:N): its GPU is 0
    return Shard(rank, world, 0, "option") if world > 1 else None


def shard_device(device: str, shard: Shard | None) -> str:
    """Under torchrun each shard its own GPU: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``; explicit indices,
    CPU and shards given by hand (pinned with CUDA_VISIBLE_DEVICES) stay as they are."""
    if shard is not None and shard.origin == "torchrun" and device == "cuda":
        return f"cuda:{shard.local_rank}"
    return device


SEED_THRESHOLDS: tuple[Threshold, ...] = parse_thresholds("--fbcache-thresholds", BY_NAME["thresholds"].default)


@dataclass(frozen=True)
class HarnessConfig:
    """What one benchmark session measures. Immutable: one session, one configuration.

    Field defaults are the option table's; ``steps``/``width``/``height`` are the default model's,
    ``device`` is what ``auto`` gives on a machine without CUDA.
    """

    model: str = "tiny"
    quant: str = "none"
    compile: str = "none"
    cache_backend: str = "diffusers"
    thresholds: tuple[Threshold, ...] = SEED_THRESHOLDS
    steps: int = 28
    width: int = 64
    height: int = 64
    prompt: str = DEFAULT_PROMPT
    seed: int = 0
    rounds: int = 3
    warmup_rounds: int = 1
    output_dir: Path = Path("fbcache-results")
    bounds: str = "auto"
    bounds_dir: Path | None = None
    calibrate: Path | None = None
    #: --fbcache-compile-cache: where torch.compile's caches live (None: torch's default temp directory)
    compile_cache: Path | None = None
    calibrate_speedup_margin: float = 0.15
    #: per image metric, a margin for ``calibrate`` that replaces the metric's own
    calibrate_margins: Mapping[str, float] = field(default_factory=dict, hash=False)
    #: the image metrics this run computes, by name (--fbcache-metrics); empty: those marked default
    metrics: tuple[str, ...] = ()
    device: str = "cpu"
    force_compare: bool = False
    selfcheck: bool = False
    #: --fbcache-prompts: several prompts, one benchmark per (threshold, prompt); None: ``prompt`` alone
    prompt_set: PromptSet | None = None
    #: this process's part of the prompt set (torchrun or --fbcache-shard R/N); None: the whole set
    shard: Shard | None = None
    #: rounds of all benchmarks interleaved (plugin/schedule.py)
    interleave: bool = True
    #: torch threads for CPU runs; None leaves torch's default (GPU runs are never changed)
    threads: int | None = 1
    #: "wall" (time.perf_counter) or "cpu" (time.process_time); resolved from "auto" by build_config
    clock: str = "wall"
    #: after each benchmark's timed rounds: a profiled generation / a FLOPs count (fbcache/explain.py);
    #: resolved from "auto" by build_config (on for a GPU run)
    breakdown: bool = False
    flops: bool = False
    #: whether the cache backend's cache can be removed between generations (its spec's ``removable``)
    cache_removable: bool = True
    #: the values of the extensions' own options (backends, quantization modes, model sources) by
    #: option name, parsed; read them with :meth:`option`
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def option(self, spec: OptionSpec) -> Any:
        """An extension option's value: as given, else its parsed default."""
        return self.extra[spec.name] if spec.name in self.extra else spec.value(None)

    @property
    def cases(self) -> tuple[PromptCase, ...]:
        """Every prompt of the run, with its seed: the set's, or the single ``prompt`` and ``seed``."""
        return self.prompt_set.cases if self.prompt_set is not None else (PromptCase(self.prompt, self.seed),)

    @property
    def shard_indices(self) -> list[int]:
        """The indices into :attr:`cases` this process measures."""
        count = len(self.cases)
        return self.shard.indices(count) if self.shard is not None else list(range(count))

    def case(self, prompt_index: int | None) -> PromptCase:
        """The prompt and seed of a benchmark (``None``: the single prompt of a run without a set)."""
        return self.cases[prompt_index or 0]

    @property
    def interleaved(self) -> bool:
        """Whether rounds are interleaved: asked for, a cache that can be removed between generations,
        and an eager session (switching the cache between compiled generations would recompile)."""
        return self.interleave and self.cache_removable and self.compile == "none"

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"
