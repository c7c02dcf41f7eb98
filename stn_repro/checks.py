"""Checked dataclass fields: a field's metadata carries a ``check`` that returns None when its
value is fine, else what is wrong ("must be >= 1"). ``schema.check_fields`` runs them after
composition; the config schema and the model families' parameters declare them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

from omegaconf import MISSING

Check = Callable[[Any], "str | None"]  # None when the value is fine, else what is wrong


def checked(check: Check, default: Any = MISSING, **kwargs) -> Any:
    """A dataclass field whose value must pass ``check``."""
    if "default_factory" in kwargs:
        return field(metadata={"check": check}, **kwargs)
    return field(default=default, metadata={"check": check})


def at_least(low: float) -> Check:
    return lambda v: None if v is None or v >= low else f"must be >= {low}"


def above(low: float) -> Check:
    return lambda v: None if v > low else f"must be > {low}"


def between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must lie in [{low}, {high}]"


def fraction(v: float) -> str | None:
    return None if v is None or 0 <= v < 1 else "must lie in [0, 1)"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def interval(low: float | None = None, above_low: bool = False) -> Check:
    """A ``[a, b]`` range with ``a <= b`` (and ``a > low``, or ``a >= low``)."""

    def check(v) -> str | None:
        if len(v) != 2:
            return "must be a range [low, high] of two numbers"
        if v[0] > v[1]:
            return f"must be [low, high] with low <= high, e.g. [{v[1]}, {v[0]}]"
        if low is not None and (v[0] <= low if above_low else v[0] < low):
            return f"must have low {'>' if above_low else '>='} {low}"
        return None

    return check


def crop_problem(random_crop: int | None, size: int) -> str | None:
    """The rule of stored images cropped at random for training (``dataset.params``)."""
    if (random_crop or 0) > size:
        return (f"dataset.params.random_crop={random_crop}: must not exceed "
                f"dataset.params.size={size}")  # fmt: skip
    return None
