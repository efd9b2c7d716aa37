"""Paging parameters shared by the listing endpoints, bounded so no store overflows."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

#: Largest ``offset`` accepted (a 64-bit store would overflow near 9.2e18).
MAX_OFFSET = 1_000_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"items to skip, 0..{MAX_OFFSET:,}")]
