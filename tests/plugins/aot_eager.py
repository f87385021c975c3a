"""Test hook: ``--fbcache-compile`` uses torch.compile's ``aot_eager`` backend instead of inductor.

aot_eager runs dynamo and AOTAutograd - the same graph capture, guards and recompile machinery
the harness relies on - but no C++/Triton code generation. The tiny model's first compiled 8-step
generation took 12.8 s with aot_eager and 98.0 s with inductor on the shared 2-core CPU VM
(2026-11-27), with the same hits as eager at thresholds 0 and 0.5 under both backends.
Set at import (``-p plugins.aot_eager``), before fbcache's pytest_configure records the backend.
"""

from fbcache import models

models.COMPILE_BACKEND = "aot_eager"
