"""The bundled NGSI-LD core @context, served locally so nothing is fetched from the internet.

It holds the core terms CityPilot emits (from ETSI GS CIM 009 core context v1.8);
responses link to it in their ``Link`` header.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import Response

from citypilot.api.openapi import answer

router = APIRouter(tags=["NGSI-LD"])
CONTEXT_FILE = "ngsi-ld-core-context-v1.8.jsonld"
_BODY = (files("citypilot.model") / "contexts" / CONTEXT_FILE).read_bytes()


@router.get(
    f"/ngsi-ld/v1/contexts/{CONTEXT_FILE}",
    summary="The NGSI-LD core @context",
    response_class=Response,
    responses=answer(200, "The @context document", media="application/ld+json"),
)
async def core_context() -> Response:
    """Public: the bundled core @context document."""
    return Response(
        _BODY, media_type="application/ld+json", headers={"Cache-Control": "public, max-age=86400"}
    )
