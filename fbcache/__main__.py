"""``python -m fbcache`` is the ``fbcache`` command."""

import sys

from .cli import main

sys.exit(main())
