"""fgi: gaze + language weakly-supervised segmentation with distributed hyperparameter search."""

__version__ = "0.1.0"
