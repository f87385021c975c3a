"""``python -m fbcache`` is the ``fbcache`` command."""

import sys

from fbcache.cli.main import main

sys.exit(main())
