"""The FBCache sweep: one benchmark per threshold, plus the uncached baseline (no cache hooks at all).

With a prompt set (``--fbcache-prompts``), one benchmark per threshold and prompt, and one uncached
baseline per prompt. Thresholds, model, steps and the rest come from the fbcache options
(``pytest --help``).
"""


def test_uncached(fbcache_bench, fbcache_prompt):
    fbcache_bench(None, fbcache_prompt)


def test_threshold(fbcache_bench, fbcache_threshold, fbcache_prompt):
    fbcache_bench(fbcache_threshold, fbcache_prompt)
