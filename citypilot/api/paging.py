"""Paging shared by the listing endpoints: parameters bounded so no store overflows, and
the links to the neighbouring pages."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query, Request

#: Largest ``offset`` accepted (a 64-bit store would overflow near 9.2e18).
MAX_OFFSET = 1_000_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"items to skip, 0..{MAX_OFFSET:,}")]


def page_links(
    request: Request, offset: int, limit: int, returned: int, total: int | None, more: bool
) -> str:
    """The ``Link`` header values (RFC 8288) to the previous and next pages of a listing,
    "" when there are none: ``next`` where more follow (the total says, when counted;
    otherwise ``more``), ``prev`` past the first page."""
    links = []
    if offset > 0 and limit > 0:
        links.append(_link(request, max(offset - limit, 0), limit, "prev"))
    if offset + returned < total if total is not None else more:
        links.append(_link(request, offset + returned, limit, "next"))
    return ", ".join(links)


def _link(request: Request, offset: int, limit: int, rel: str) -> str:
    query = {**request.query_params, "offset": str(offset), "limit": str(limit)}
    return f'<{request.url.path}?{urlencode(query)}>; rel="{rel}"'
