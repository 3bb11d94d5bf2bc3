"""The ``fgi`` subcommands: one module each, ``add_arguments(parser)`` and ``main(args) -> int``.

This layer is the only one that reads argparse: it turns options into typed library calls and turns
user-input errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Mapping

from fgi.fields import OptionProblem


def user_message(exc: BaseException, flags: Mapping[str, str] | None = None) -> str:
    """A user-input error as a command shows it: an ``OptionError`` or ``OptionNotFound`` under the command's
    flag for its option (``flags`` where a flag is not ``--`` plus the option's name with dashes), anything
    else as it reads."""
    if isinstance(exc, OptionProblem):
        flag = (flags or {}).get(exc.option, "--" + exc.option.replace("_", "-"))
        return f"{flag}: {exc.detail}"
    return str(exc)


def error_line(exc: BaseException, flags: Mapping[str, str] | None = None) -> str:
    """The one stderr line of a user-input error (``user_message`` after ``error:``)."""
    return f"error: {user_message(exc, flags)}"
