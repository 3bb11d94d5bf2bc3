"""fgi: gaze + language weakly-supervised segmentation with distributed hyperparameter search."""

__version__ = "0.1.0"

from fgi import datasets as _datasets  # noqa: F401 - registers the name checks every Config runs
from fgi import moved as _moved

_moved.install()
