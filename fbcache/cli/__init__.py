"""The ``fbcache`` command: one module per verb, all of them listed in :data:`VERBS`.

A verb module ``fbcache/cli/<verb>.py`` (the verb is the module's name) defines:

- ``HELP``: one line, shown by ``fbcache --help`` and, unless the module defines ``DESCRIPTION`` (or
  ``describe()``, for a text built from the registries when the parser is built), by ``fbcache <verb> --help``;
- ``add_arguments(parser)``: its options; those several verbs share (storage, compare settings,
  output files) come from :mod:`fbcache.cli.common`, the alert sinks' from :mod:`fbcache.alerts`;
- ``run(args) -> int``: the exit code (:mod:`fbcache.errors`). Errors it raises become exit codes
  and one line on stderr in :func:`fbcache.cli.main.main`, and nowhere else.

A new verb is one new file plus one line here. Building the parser imports every verb module, so
none of them imports torch (tests/test_layers.py).
"""

#: every verb, in the order ``fbcache --help`` lists them
VERBS = (
    "fbcache.cli.history",
    "fbcache.cli.compare",
    "fbcache.cli.accept",
    "fbcache.cli.alert",
    "fbcache.cli.report",
    "fbcache.cli.calibrate",
    "fbcache.cli.xreport",
    "fbcache.cli.merge",
    "fbcache.cli.nightly",
    "fbcache.cli.agree",
)
