"""fbcache: verbs over pytest-benchmark's storage (``.benchmarks`` by default, or ``--storage``)."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from fbcache.cli import VERBS
from fbcache.cli.common import PlainHelpFormatter
from fbcache.errors import EXIT_BROKEN, EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE, FBCacheError

EXIT_CODES = (f"exit codes: {EXIT_CLEAN} clean, {EXIT_REGRESSION} regression and nothing else, "
              f"{EXIT_USAGE} usage or I/O error, {EXIT_BROKEN} broken sweep")


def verb_modules() -> dict[str, ModuleType]:
    """Every verb of :data:`fbcache.cli.VERBS` by name (the module's own name), in its order."""
    return {name.rpartition(".")[2]: importlib.import_module(name) for name in VERBS}


def _description(module: ModuleType) -> str:
    """``describe()`` (built from the registries now), else ``DESCRIPTION``, else ``HELP``."""
    if hasattr(module, "describe"):
        return str(module.describe())
    return str(getattr(module, "DESCRIPTION", module.HELP))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbcache", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=PlainHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, module in verb_modules().items():
        sub = verbs.add_parser(name, help=module.HELP, description=_description(module), formatter_class=PlainHelpFormatter)
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (fbcache.errors): 0 clean, 1 regression and nothing else, 2 usage or I/O error, 3 broken sweep.

    The one place where an error becomes an exit code: every verb raises, none prints its own error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad arguments
    try:
        return verb_modules()[args.verb].run(args)
    except FBCacheError as exc:
        print(f"fbcache {args.verb}: error: {' '.join(str(exc).split())}", file=sys.stderr)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"fbcache {args.verb}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"fbcache {args.verb}: interrupted", file=sys.stderr)
    except Exception:  # a bug must not read as a regression (exit 1) in CI
        traceback.print_exc()
        print(f"fbcache {args.verb}: internal error (not a regression); the traceback is above", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
