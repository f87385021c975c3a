"""``python -m tools.train_tiny``: retrain the shipped tiny FLUX (see train.py)."""

import sys

from tools.train_tiny.train import main

main(sys.argv[1:])
