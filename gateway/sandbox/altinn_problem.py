"""The error answers of the sandbox's Altinn services (broker, correspondence): RFC 7807 ProblemDetails.

With the media types the OpenAPI descriptions (reference/api/altinn-*-v1.json) give them: application/json
(Altinn's actions declare `[Produces("application/json")]`, which ASP.NET applies to their ProblemDetails
too, where it would otherwise write application/problem+json), and application/octet-stream for the
errors of a file download, whose action produces octet-stream. The descriptions are followed here even
where ASP.NET might well answer otherwise: they are what a client is written against.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.sandbox.auth import Unauthorised

PROBLEM_MEDIA_TYPE = "application/json"
DOWNLOAD_MEDIA_TYPE = "application/octet-stream"


def problem(status: int, title: str | None, detail: str, code: int = 0) -> JSONResponse:
    """A ProblemDetails answer; `code` is Altinn's error number (`errorCode`) where it has one."""
    body: dict[str, Any] = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status,
                            "detail": detail}
    if code:
        body["errorCode"] = code
    # A refused token is also told in the header, as ASP.NET's JWT bearer handler tells it.
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def unauthorised_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unauthorised)
    return problem(exc.status, None, exc.detail)


Endpoint = Callable[[Request], Awaitable[Response]]


def download_errors(endpoint: Endpoint) -> Endpoint:
    """A download route whose error answers (the token's too) go as application/octet-stream."""

    async def download(request: Request) -> Response:
        try:
            response = await endpoint(request)
        except Unauthorised as refused:
            response = await unauthorised_handler(request, refused)
        if response.status_code >= 400:
            response.headers["content-type"] = DOWNLOAD_MEDIA_TYPE
        return response

    return download


__all__ = ["DOWNLOAD_MEDIA_TYPE", "PROBLEM_MEDIA_TYPE", "download_errors", "problem", "unauthorised_handler"]
