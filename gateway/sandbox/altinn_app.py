"""The Altinn platform's token exchange on the sandbox: a Maskinporten token in, an Altinn token out.

`GET /authentication/api/v1/exchange/maskinporten` with `Authorization: Bearer <Maskinporten token>`
answers the Altinn token as plain text, as the real platform does. It keeps the Maskinporten token's
scopes and system user, and lives 30 minutes.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.sandbox.auth import AccessTokens, Unauthorised, unauthorised_handler

log = logging.getLogger(__name__)


def altinn_platform_app(access_tokens: AccessTokens) -> Starlette:
    async def exchange(request: Request) -> Response:
        caller = access_tokens.caller_of(request)
        token, _lifetime = access_tokens.exchange(caller)
        log.info("Altinn token exchanged for %s (%s)", caller.orgnr, " ".join(sorted(caller.scopes)))
        return PlainTextResponse(token, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[Route("/api/v1/exchange/maskinporten", exchange, methods=["GET"])],
        exception_handlers={Unauthorised: unauthorised_handler},
    )
