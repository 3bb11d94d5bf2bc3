"""Final training with a found config: ``python train.py --config best_configs/kvasir.yaml`` (same as ``fgi train``)."""

from __future__ import annotations

import sys

from fgi.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
