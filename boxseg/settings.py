"""Settings records built from a config section: one check for names the record does not know."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

T = TypeVar("T")


def from_section(cls: type[T], values: dict | None, what: str) -> T:
    """``cls`` (a dataclass) from a config section's ``values`` (None: the defaults).

    Raises:
        ValueError: a name ``cls`` does not have, e.g. "unknown ConvCRF parameter(s): ['itrations']"
            (``what``: how the error names one entry).
    """
    known = {f.name for f in fields(cls)}
    unknown = set(values or {}) - known
    if unknown:
        raise ValueError(f"unknown {what}(s): {sorted(unknown)}")
    return cls(**(values or {}))
