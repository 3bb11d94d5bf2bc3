"""Pareto fronts of multi-objective sweeps, and the stated rule that picks one point of a front.

A point is a trial's objective values. It is on the front when no other point is at least as good on every
objective and better on one (each objective has its direction, "max" or "min"). A front is a set of
trade-offs, so exporting one config needs a rule, and the rule is written into the config's header:

    best val_dice                                   the front's best on one objective
    best val_dice with val_hd95 within 10%          ... among the points whose val_hd95 is within 10 % of
    best val_dice with infer_ms within 2.5          ... (or 2.5 absolute) of the front's best val_hd95 / infer_ms

The sweep exports by the first rule on its first objective; ``fgi best --pick`` applies any rule later to the
front logged on the sweep's parent run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_WITHIN = re.compile(r"^(?P<key>[A-Za-z0-9_]+)\s+within\s+(?P<amount>[0-9]*\.?[0-9]+)(?P<percent>%?)$")


class PickError(ValueError):
    """A pick rule that does not parse or names an objective the front does not have."""


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def dominates(a: Mapping[str, float], b: Mapping[str, float], modes: Mapping[str, str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one."""
    no_worse = all(not _better(b[k], a[k], m) for k, m in modes.items())
    return no_worse and any(_better(a[k], b[k], m) for k, m in modes.items())


def pareto_front(points: Sequence[Mapping[str, float]], modes: Mapping[str, str]) -> list[int]:
    """Indices of the non-dominated points, in their order; points with a missing or non-finite objective
    are never on it."""
    ok = [i for i, p in enumerate(points) if all(k in p and math.isfinite(float(p[k])) for k in modes)]
    return [i for i in ok if not any(dominates(points[j], points[i], modes) for j in ok if j != i)]


@dataclass(frozen=True)
class Bound:
    """``key`` within ``amount`` (``relative``: a fraction of the best) of the front's best ``key``."""

    key: str
    amount: float
    relative: bool

    def limit(self, best: float, mode: str) -> float:
        """The worst value allowed, given the front's best."""
        slack = abs(best) * self.amount if self.relative else self.amount
        return best - slack if mode == "max" else best + slack

    def describe(self) -> str:
        return f"{self.key} within {self.amount * 100:g}%" if self.relative else f"{self.key} within {self.amount:g}"


@dataclass(frozen=True)
class PickRule:
    """Pick the best ``target`` among the front points that keep every ``bounds``."""

    target: str
    bounds: tuple[Bound, ...] = ()

    def describe(self) -> str:
        return f"best {self.target}" + (" with " + " and ".join(b.describe() for b in self.bounds) if self.bounds else "")


def parse_rule(text: str) -> PickRule:
    """A rule as written: ``best <objective>`` then optionally ``with <objective> within <x>[%]``, joined by
    ``and``; "best" may be left out.

    Raises:
        PickError: naming the part that does not parse.
    """
    body = text.strip().removeprefix("best ").strip()
    target, _, rest = body.partition(" with ")
    if not re.fullmatch(r"[A-Za-z0-9_]+", target.strip()):
        raise PickError(f"pick rule {text!r}: expected 'best <objective> [with <objective> within <x>[%]]'")
    bounds = []
    for part in filter(None, (p.strip() for p in rest.split(" and "))) if rest else ():
        m = _WITHIN.match(part)
        if not m:
            raise PickError(f"pick rule {text!r}: {part!r} is not '<objective> within <x>' or '<objective> within <x>%'")
        amount = float(m["amount"]) / (100.0 if m["percent"] else 1.0)
        bounds.append(Bound(m["key"], amount, bool(m["percent"])))
    return PickRule(target.strip(), tuple(bounds))


def pick(front: Sequence[Mapping[str, float]], modes: Mapping[str, str], rule: PickRule) -> tuple[int, str]:
    """The index of the front point ``rule`` picks, and a sentence saying how (with the limits it used).

    Raises:
        PickError: an objective the front does not have, or an empty front.
    """
    if not front:
        raise PickError("the Pareto front is empty: no trial reported every objective")
    for key in (rule.target, *(b.key for b in rule.bounds)):
        if key not in modes:
            raise PickError(f"pick rule: {key!r} is not an objective of this front; objectives are {sorted(modes)}")
    keep = list(range(len(front)))
    limits = []
    for b in rule.bounds:
        mode = modes[b.key]
        best = max(front[i][b.key] for i in keep) if mode == "max" else min(front[i][b.key] for i in keep)
        limit = b.limit(best, mode)
        keep = [i for i in keep if not _better(limit, front[i][b.key], mode)]
        limits.append(f"{b.key} {'>=' if mode == 'max' else '<='} {limit:.4g} (front's best {best:.4g})")
    sign = 1.0 if modes[rule.target] == "max" else -1.0
    chosen = max(keep, key=lambda i: sign * front[i][rule.target])
    how = f"rule '{rule.describe()}' over the Pareto front of {len(front)} point(s)"
    return chosen, how + (f": {', '.join(limits)}" if limits else "")


__all__ = ["Bound", "PickError", "PickRule", "dominates", "parse_rule", "pareto_front", "pick"]
