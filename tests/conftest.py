"""Session-wide test settings: the same offline environment the fgi commands set."""

from __future__ import annotations

import os

from fgi.cli import OFFLINE_ENV

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)
