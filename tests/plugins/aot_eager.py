"""Test hook: ``--fbcache-compile`` uses torch.compile's ``aot_eager`` backend instead of inductor.

aot_eager runs dynamo and AOTAutograd - the same graph capture, guards and recompile machinery
the harness relies on - but no C++/Triton code generation: compiling the tiny model took about 13 s
with aot_eager and about 98 s with inductor on the 2-core CPU VM (2026-11-27), with the same hits.
Set at import (``-p plugins.aot_eager``), before fbcache's pytest_configure records the backend.
"""

from fbcache.models import compile as compile_modes

compile_modes.BACKEND = "aot_eager"
