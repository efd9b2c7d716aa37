"""Errors of the model and the API, carrying an NGSI-LD problem type and the field at fault.

Every refusal in CityPilot is one of these: the API turns it into an RFC 9457
ProblemDetails body (``type``, ``title``, ``status``, ``detail``, ``field``).
"""

from __future__ import annotations

from typing import Any

NGSI_LD_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class CityPilotError(Exception):
    """Base error with an HTTP status, an NGSI-LD problem type and the offending field."""

    status = 400
    problem = "BadRequestData"
    title = "Bad request data"

    def __init__(self, detail: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    @property
    def type_uri(self) -> str:
        """The problem type URI (NGSI-LD error types live under the ETSI namespace)."""
        return NGSI_LD_ERRORS + self.problem

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 problem details document for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class BadRequestData(CityPilotError):
    """The request is well-formed JSON but a value in it is wrong."""


class InvalidRequest(CityPilotError):
    """The request itself is malformed (bad JSON, wrong content type, bad query syntax)."""

    problem = "InvalidRequest"
    title = "Invalid request"


class ResourceNotFound(CityPilotError):
    """The entity, attribute or resource named does not exist."""

    status = 404
    problem = "ResourceNotFound"
    title = "Resource not found"


class NonexistentTenant(CityPilotError):
    """The tenant an operation names was never created (clause 5.5.10)."""

    status = 404
    problem = "NonexistentTenant"
    title = "Nonexistent tenant"


class AlreadyExists(CityPilotError):
    """An entity with this id exists already."""

    status = 409
    problem = "AlreadyExists"
    title = "Already exists"


class Conflict(CityPilotError):
    """The change conflicts with what is stored (e.g. a type change stored entities break)."""

    status = 409
    problem = "Conflict"
    title = "Conflict"


class PayloadTooLarge(CityPilotError):
    """The request body is over the configured limit."""

    status = 413
    problem = "RequestEntityTooLarge"
    title = "Request entity too large"


class UnsupportedMediaType(CityPilotError):
    """The request body is not JSON, JSON-LD or NDJSON."""

    status = 415
    problem = "UnsupportedMediaType"
    title = "Unsupported media type"


class Unauthorized(CityPilotError):
    """No valid credential was presented."""

    status = 401
    problem = "Unauthorized"
    title = "Unauthorized"


class Forbidden(CityPilotError):
    """The credential is valid but its role does not allow the operation."""

    status = 403
    problem = "Forbidden"
    title = "Forbidden"


class RetryLater(CityPilotError):
    """A refusal that says when to come back: ``retry_after`` seconds (``Retry-After``)."""

    def __init__(self, detail: str, retry_after: int, field: str | None = None) -> None:
        super().__init__(detail, field, retryAfter=retry_after)
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(RetryLater):
    """The server is at its in-flight limit: retry after ``retry_after`` seconds."""

    status = 503
    problem = "ServiceUnavailable"
    title = "Service unavailable"


class TooManyRequests(RetryLater):
    """Too many failed attempts (e.g. logins): retry after ``retry_after`` seconds."""

    status = 429
    problem = "TooManyRequests"
    title = "Too many requests"
