"""The one error type of bad raw input."""

from __future__ import annotations


class DataError(ValueError):
    """Bad raw input. The message names the file (and line or value) and the reason."""


__all__ = ["DataError"]
