"""Hyperparameter sweep: ``python tune.py --dataset kvasir`` (same as ``fgi tune``)."""

from __future__ import annotations

import sys

from fgi.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
