"""The FBCache sweep: one benchmark per threshold, plus the uncached baseline (no cache hooks at all).

Thresholds, model, steps and the rest come from the fbcache options (``pytest --help``).
"""


def test_uncached(fbcache_bench):
    fbcache_bench(None)


def test_threshold(fbcache_bench, fbcache_threshold):
    fbcache_bench(fbcache_threshold)
