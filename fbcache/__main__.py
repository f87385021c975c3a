"""``python -m fbcache`` is the ``fbcache`` command."""

import sys

from fbcache.cli import main

sys.exit(main())
