"""fgi: gaze + language weakly-supervised segmentation with distributed hyperparameter search."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Quiet third-party phone-home and update checks in every process that imports fgi.
for _key, _value in (
    ("RAY_USAGE_STATS_ENABLED", "0"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("NO_ALBUMENTATIONS_UPDATE", "1"),
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
):
    os.environ.setdefault(_key, _value)
