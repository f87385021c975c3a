"""fbcache: a pytest-benchmark regression harness for First-Block Cache on (quantized) FLUX.

Where things happen, one hop each:

- a threshold becomes a timing:   :mod:`fbcache.measure`
- a timing becomes a stored record: :mod:`fbcache.record` (extra_info) and :mod:`fbcache.storage` (history files)
- a record becomes an alert:      :mod:`fbcache.compare` then :mod:`fbcache.alert`
"""

__version__ = "0.1.0"
