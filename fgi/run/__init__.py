"""One training run without Ray: loaders and samplers, the one worker body (``worker``), and evaluation of a
model on a split or on a folder of raw images at their original resolution (``evaluation``).

Benchmarks, in-process trials and Ray Train workers all train through ``worker.train_worker``; the part
imports the method, the data and the root, never Ray, MLflow or argparse.
"""
