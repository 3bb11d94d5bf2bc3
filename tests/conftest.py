"""Session-wide test settings: the same offline environment the fgi commands set, and a private cache.

Prepared datasets go to a temporary ``XDG_CACHE_HOME`` for the session (inherited by every subprocess a
test starts), never to the user's ``~/.cache/fgi``. Hugging Face keeps reading its usual folder.

Torch runs one intra-op thread in the test process: the fast tier's tensors are tiny, so more threads only
contend, and on a loaded machine (a protocol run beside the tests) they spin for cores others hold.
Subprocesses and Ray workers set their own threads from their configs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import torch

from fgi.cli import OFFLINE_ENV

torch.set_num_threads(1)

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

_user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
os.environ.setdefault("HF_HOME", str(_user_cache / "huggingface"))
os.environ["XDG_CACHE_HOME"] = _session_cache = tempfile.mkdtemp(prefix="fgi-test-cache-")
atexit.register(shutil.rmtree, _session_cache, ignore_errors=True)
