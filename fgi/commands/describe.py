"""``fgi describe``: print the cached lesion descriptions of a few images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fgi.config import Config, ConfigError, load_yaml, override
from fgi.data.errors import DataError
from fgi.datasets import DATASET_NAMES, get_dataset, validate_names
from fgi.text.cache import TextCacheError, load_descriptions
from fgi.text.items import DescriberError
from fgi.text.templates import TemplateError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi describe``."""
    parser.add_argument("--config", type=Path, help="YAML config (defaults apply without one)")
    parser.add_argument("--dataset", choices=DATASET_NAMES, help="dataset registry name (overrides data.dataset)")
    parser.add_argument("--template", help="prompt template (overrides text.template)")
    parser.add_argument("--n", type=int, default=5, help="how many images to print (default 5)")
    parser.add_argument("--cache-dir", type=Path, help="a prepared cache folder (default: the dataset's cache)")


def describe(cfg: Config, n: int, cache_dir: Path | None = None) -> list[tuple[str, str]]:
    """The first ``n`` (image id, description) pairs of ``text.template`` in id order.

    Args:
        cfg: the run config (dataset, template, describer).
        n: how many images; at least 1.
        cache_dir: a prepared cache; None prepares (or reuses) the cache of ``cfg``.

    Raises:
        ValueError: ``n`` below 1.
        TemplateError: an unknown template (the message lists the valid ones).
        TextCacheError: the cache holds no such descriptions (the message names the command that builds them).
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if cache_dir is None:
        from fgi.data.dataset import ensure_prepared

        cache_dir = ensure_prepared(cfg)
    descriptions = load_descriptions(Path(cache_dir), cfg.text.template, cfg.text)
    return [(i, descriptions[i]) for i in sorted(descriptions)[:n]]


def main(args: argparse.Namespace) -> int:
    """Print the descriptions; bad input prints one error line and returns 2."""
    if args.n < 1:
        print(f"fgi describe: error: --n must be at least 1, got {args.n}", file=sys.stderr)
        return 2
    try:
        cfg = load_yaml(args.config) if args.config else Config()
        updates: dict[str, Any] = {}
        if args.dataset:
            updates["data.dataset"] = args.dataset
            updates["data.in_channels"] = get_dataset(args.dataset).channels
        if args.template:
            updates["text.template"] = args.template
        cfg = override(cfg, updates) if updates else cfg
        validate_names(cfg.data.dataset, cfg.text.template)
        rows = describe(cfg, args.n, args.cache_dir)
    except (ConfigError, DataError, TemplateError, DescriberError, TextCacheError) as exc:
        print(f"fgi describe: error: {exc}", file=sys.stderr)
        return 2
    print(f"# dataset {cfg.data.dataset}, template {cfg.text.template}, describer {cfg.text.describer}")
    for image_id, text in rows:
        print(f"{image_id}\t{text}")
    return 0

