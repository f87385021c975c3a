"""``-p plugins.offline_lpips``: a ``pytest benchmarks`` subprocess with torchvision importable and every
connection to another host refused (:mod:`lpips_support`), set at import, before anything imports torchvision."""

from lpips_support import refuse_network, use_torchvision

_problem = use_torchvision()
if _problem is not None:
    raise RuntimeError(_problem)
refuse_network()
