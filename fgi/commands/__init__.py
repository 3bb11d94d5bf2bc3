"""The ``fgi`` subcommands: one module each, ``add_arguments(parser)`` and ``main(args) -> int``.

This layer is the only one that reads argparse: it turns options into typed library calls and turns
user-input errors into one line on stderr and exit code 2.
"""
