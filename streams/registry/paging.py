"""Paging of the registry's listings: a page of items in id order and the cursor of the next.

A cursor is opaque to the caller: it is the id the previous page ended with, and the next page
starts after it (``RegistryView.types_page``, ``devices_page``), so a listing stays consistent
while records are added or removed between two calls. ``limit`` is at least 1; a bigger one than
``MAX_PAGE_SIZE`` is served as ``MAX_PAGE_SIZE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from cityhub.streams.service_errors import FieldError, Invalid

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, in id order. ``next_cursor`` goes into the next call; None: last."""

    items: Sequence[T]
    next_cursor: str | None


def page_limit(limit: int) -> int:
    """The number of items to serve for ``limit``: Invalid below 1, capped at MAX_PAGE_SIZE."""
    if limit < 1:
        raise Invalid(
            "limit must be at least 1",
            errors=[FieldError("limit", f"must be at least 1, got {limit}")],
        )
    return min(limit, MAX_PAGE_SIZE)
