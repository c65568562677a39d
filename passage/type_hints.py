"""Temporal's JSON converter, with the type hints of each dataclass resolved once.

The SDK's converter (temporalio 1.35) calls `typing.get_type_hints` for every dataclass value it
decodes, at every level, and with postponed annotations each call evaluates every field's type
again: profiled under `make bench`, that was 7 % of the worker's CPU. A class's hints never change,
so `cache_dataclass_type_hints` memoizes them per class (bounded: the workflow sandbox may define
classes anew). Installed by `passage.temporal`, before any client or worker converts a payload.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from temporalio.converter import _payload_converter

_uncached = typing.get_type_hints


@functools.lru_cache(maxsize=1024)
def _class_hints(cls: type) -> dict[str, Any]:
    return _uncached(cls)


def _get_type_hints(obj: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    if isinstance(obj, type) and not args and not kwargs:
        return dict(_class_hints(obj))  # a copy: callers may not mutate the cached one
    return _uncached(obj, *args, **kwargs)


def cache_dataclass_type_hints() -> None:
    """Make the SDK's converter use cached hints (idempotent)."""
    _payload_converter.get_type_hints = _get_type_hints  # type: ignore[attr-defined]
