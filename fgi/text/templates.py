"""The prompt-template registry: the question a VLM is asked, and how lesion attributes become encoded text.

Templates live in ``fgi/text/templates.yaml`` (package data, read with ``importlib.resources``) so that
``text.template`` can be searched over them. Every placeholder is checked when the file is loaded: a
template that names an unknown attribute fails then, with an error naming the template and the
attribute, never later inside a trial. An unknown template name is an error listing the valid ones.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from fgi.yamltext import load_yaml_data

# Attributes the morphology describer measures (fgi.text.morphology.measure_region).
LESION_ATTRIBUTES: tuple[str, ...] = (
    "location", "area_pct", "size", "shape", "boundary", "color", "brightness", "texture",
    "circularity", "eccentricity", "solidity",
)
# What a dataset says about its images (its entry in the dataset registry, fgi.datasets).
CONTEXT_KEYS: tuple[str, ...] = ("lesion", "modality", "organ")
TEMPLATES_RESOURCE = "templates.yaml"  # the packaged templates file, next to this module


class TemplateError(ValueError):
    """A template file, template name or dataset context is invalid. The message names the culprit."""


def check_context(context: Mapping[str, str]) -> dict[str, str]:
    """The dataset context as a plain dict, checked to hold exactly ``CONTEXT_KEYS`` as non-empty strings.

    Raises:
        TemplateError: naming the missing or extra keys.
    """
    if sorted(context) != sorted(CONTEXT_KEYS) or not all(isinstance(v, str) and v for v in context.values()):
        raise TemplateError(f"a dataset context needs exactly the non-empty string keys {list(CONTEXT_KEYS)}; "
                            f"got {dict(context)}")
    return dict(context)


@dataclass(frozen=True)
class Template:
    """One prompt template.

    Args:
        name: registry name (``text.template``).
        vlm_prompt: format string of the question a vision-language model is asked; may use the dataset
            context (``lesion``, ``modality``, ``organ``).
        render: format string that turns lesion attributes and dataset context into the encoded text.
    """

    name: str
    vlm_prompt: str
    render: str

    def render_text(self, attributes: Mapping[str, Any], context: Mapping[str, str]) -> str:
        """The text of one lesion: ``render`` filled with its attributes and the dataset context."""
        return " ".join(self.render.format(**{**context, **attributes}).split())

    def prompt(self, context: Mapping[str, str]) -> str:
        """The VLM question for one dataset."""
        return " ".join(self.vlm_prompt.format(**context).split())


@dataclass(frozen=True)
class TemplateSet:
    """All templates of one file."""

    path: Path
    templates: dict[str, Template]

    @property
    def names(self) -> list[str]:
        """Template names in file order."""
        return list(self.templates)

    def get(self, name: str) -> Template:
        """The template called ``name``.

        Raises:
            TemplateError: listing the valid names when ``name`` is unknown.
        """
        if name not in self.templates:
            raise TemplateError(f"unknown prompt template {name!r} in {self.path}; valid templates are {self.names}")
        return self.templates[name]


def _fields(fmt: str, where: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]
    except ValueError as exc:
        raise TemplateError(f"{where}: not a valid format string ({exc})") from None


def _check_placeholders(fmt: str, allowed: tuple[str, ...], where: str, template: str, field: str) -> None:
    for name in _fields(fmt, where):
        base = name.split(".")[0].split("[")[0]
        if name == "" or base not in allowed:
            raise TemplateError(
                f"{where}: template {template!r} {field} refers to unknown attribute {{{name}}}; "
                f"valid attributes are {sorted(allowed)}"
            )


def parse_templates(data: Any, source: str = "<templates>") -> TemplateSet:
    """Validate the mapping of a templates YAML file and build a ``TemplateSet``.

    Raises:
        TemplateError: naming the file, the template and the bad field or attribute.
    """
    if not isinstance(data, dict):
        raise TemplateError(f"{source}: expected a mapping with the key 'templates'")
    unknown = sorted(set(data) - {"templates"})
    if unknown:
        raise TemplateError(f"{source}: unknown top-level key {unknown[0]!r}; the only valid key is 'templates' "
                            f"(dataset contexts live in the dataset registry, fgi.datasets)")
    raw = data.get("templates")
    if not isinstance(raw, dict) or not raw:
        raise TemplateError(f"{source}: 'templates' must be a non-empty mapping of name to template")
    templates: dict[str, Template] = {}
    for name, spec in raw.items():
        where = f"{source}: templates.{name}"
        if not isinstance(spec, dict):
            raise TemplateError(f"{where}: expected a mapping with 'vlm_prompt' and 'render'")
        extra = sorted(set(spec) - {"vlm_prompt", "render"})
        if extra:
            raise TemplateError(f"{where}: unknown key {extra[0]!r}; valid keys are ['render', 'vlm_prompt']")
        for key in ("vlm_prompt", "render"):
            if not isinstance(spec.get(key), str) or not spec[key].strip():
                raise TemplateError(f"{where}.{key}: missing or empty")
        _check_placeholders(spec["vlm_prompt"], CONTEXT_KEYS, where, str(name), "vlm_prompt")
        _check_placeholders(spec["render"], LESION_ATTRIBUTES + CONTEXT_KEYS, where, str(name), "render")
        templates[str(name)] = Template(name=str(name), vlm_prompt=spec["vlm_prompt"], render=spec["render"])
    return TemplateSet(path=Path(source), templates=templates)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> TemplateSet:
    p = Path(path)
    data = load_yaml_data(p.read_text(), str(p), TemplateError)
    return parse_templates(data, str(p))


def _load_file(p: Path) -> TemplateSet:
    if not p.is_file():
        raise TemplateError(f"{p}: templates file not found")
    return _load_cached(str(p.resolve()), p.stat().st_mtime_ns)


def load_templates(path: str | Path | None = None) -> TemplateSet:
    """Load and validate a templates file (default: the packaged ``fgi/text/templates.yaml``).

    Raises:
        TemplateError: when the file is missing or invalid.
    """
    if path is not None:
        return _load_file(Path(path))
    with as_file(files(__package__).joinpath(TEMPLATES_RESOURCE)) as p:
        return _load_file(Path(p))


def get_template(name: str, path: str | Path | None = None) -> Template:
    """The template ``name`` from the templates file; an unknown name lists the valid ones."""
    return load_templates(path).get(name)


def template_names(path: str | Path | None = None) -> list[str]:
    """Names of all templates in the templates file."""
    return load_templates(path).names


__all__ = [
    "CONTEXT_KEYS", "LESION_ATTRIBUTES", "TEMPLATES_RESOURCE", "Template", "TemplateError", "TemplateSet",
    "check_context", "get_template", "load_templates", "parse_templates", "template_names",
]
