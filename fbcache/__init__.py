"""fbcache: a pytest-benchmark regression harness for First-Block Cache on (quantized) FLUX.

Where things happen, one hop each:

- a threshold becomes a timing:     :mod:`fbcache.plugin.schedule`, then its record :mod:`fbcache.plugin.records`
- a timing becomes a stored record: :mod:`fbcache.history.record` (extra_info) and
  :mod:`fbcache.history.storage` (history files)
- a record becomes an alert:        :mod:`fbcache.verdicts.compare` then :mod:`fbcache.alerts`

Imports go down these layers only (tests/test_layers.py): the configuration schema
(:mod:`fbcache.config`); the registries (backends, quant, models, metrics) and their entries;
:mod:`fbcache.configure` (options to a checked config); history; verdicts; render; alerts; plugin; cli.
"""

__version__ = "0.1.0"
