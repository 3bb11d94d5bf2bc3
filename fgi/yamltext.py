"""The one YAML reader of fgi: strict, and bounded so that a small file cannot exhaust memory or the stack.

Every YAML that fgi reads (configs, search spaces, sweep records, MLflow best configs, prompt templates)
goes through ``load_yaml_data``. It refuses aliases (``*name``: a few hundred bytes of nested aliases
expand to billions of values, the "billion laughs"), nesting deeper than ``MAX_DEPTH``, integers longer
than ``MAX_INT_DIGITS`` digits, and duplicate keys, each with one line naming the source and the line;
it reads ``1e-4`` as a number (YAML 1.1 needs ``1.0e-4``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from fgi.fields import ConfigError, shown

MAX_DEPTH = 32  # the deepest fgi file (a search space's constraints) nests 5 levels
MAX_INT_DIGITS = 30  # far beyond any step count or seed; Python refuses str() of ints past 4300 digits
class _Refused(yaml.YAMLError):
    """A construct fgi does not read; the message names it and its line."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(f"line {mark.line + 1}: {message}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, bounded in depth and integer size, rejecting duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"YAML aliases (*{event.anchor}) are not supported; write the value out", event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown(key)} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


def _bounded_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    digits = sum(c.isdigit() for c in node.value)
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})", node.start_mark)
    return loader.construct_yaml_int(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml_data(text: str, source: str = "<string>", error: type[Exception] = ConfigError) -> Any:
    """Parse YAML strictly (see the module docstring).

    Args:
        text: the YAML text.
        source: what the text is (a file name), for errors.
        error: the exception type raised (``ConfigError`` by default).

    Raises:
        ``error``: one line naming ``source`` when the text is not valid YAML or uses a refused construct.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        raise error(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML ({exc})") from None


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "load_yaml_data"]
