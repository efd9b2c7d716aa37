"""The bundled NGSI-LD core @context, served locally so nothing is fetched from the internet.

It is the official ``ngsi-ld-core-context-v1.8.jsonld`` as ETSI publishes it at
``https://uri.etsi.org/ngsi-ld/v1/``; requests naming that URL (or this path) are read
with the bundled copy (``model.ldcontext``), never with a download.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from citypilot.api.openapi import answer
from citypilot.model.ldcontext import CORE_BYTES, LOCAL_CORE_PATH

router = APIRouter(tags=["NGSI-LD"])


@router.get(
    LOCAL_CORE_PATH,
    summary="The NGSI-LD core @context",
    response_class=Response,
    responses=answer(200, "The @context document", media="application/ld+json"),
)
async def core_context() -> Response:
    """Public: the bundled core @context document."""
    return Response(
        CORE_BYTES,
        media_type="application/ld+json",
        headers={"Cache-Control": "public, max-age=86400"},
    )
