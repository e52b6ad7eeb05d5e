"""KRR's print certificate endpoint, as the contact register publishes it (`/kontaktregisteret`):

    GET /kontaktregisteret/rest/v2/printSertifikat   anonymous; JSON {postkasseleverandoerAdresse, x509Sertifikat}
    GET /kontaktregisteret/_sandbox/stats            the sandbox's own: how often it was asked, and how often
                                                     with an Authorization header (a caller need send none)

The answer names the print provider's organisation number and its certificate in PEM (the reference reads it as
`KrrPrintResponse`, and the service registry puts `x509Sertifikat` unchanged into a print record's
`pemCertificate`). No token is asked for: the real endpoint is open (networks.md §5).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PRINT_CERTIFICATE_PATH = "/rest/v2/printSertifikat"


def krr_print_app(print_provider: str, certificate_pem: str) -> Starlette:
    """The endpoint answering `print_provider`'s certificate `certificate_pem`."""

    counts = {"print_certificate_requests": 0, "with_authorization": 0}

    async def print_certificate(request: Request) -> Response:
        counts["print_certificate_requests"] += 1
        counts["with_authorization"] += "authorization" in request.headers
        return JSONResponse({"postkasseleverandoerAdresse": print_provider, "x509Sertifikat": certificate_pem})

    async def stats(request: Request) -> Response:
        return JSONResponse(dict(counts))

    return Starlette(routes=[Route(PRINT_CERTIFICATE_PATH, print_certificate, methods=["GET"]),
                             Route("/_sandbox/stats", stats, methods=["GET"])])


__all__ = ["PRINT_CERTIFICATE_PATH", "krr_print_app"]
