"""Altinn tokens: a Maskinporten token exchanged at the Altinn platform, for every Altinn call.

`GET {exchange_url}` with `Authorization: Bearer <Maskinporten token>` answers the Altinn token as plain
text (a JWT that lives 30 minutes, where the Maskinporten token lives 2). The broker (DPO) and Digdir's
correspondence proxy (DPV) accept only the exchanged token. It is cached for its lifetime and exchanged
anew a few minutes before it ends; a service's 401 renews it once (see TokenClient.renew_after_refusal).
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from gateway.clock import Clock
from gateway.errors import RetryableChannelError
from gateway.maskinporten import CachedToken, TokenClient
from gateway.tokens import check_response, translated_http_errors

DEFAULT_LIFETIME_S = 30 * 60.0  # Altinn's; used when a token does not say
RENEW_BEFORE_S = 5 * 60.0  # the reference keeps 25 of the 30 minutes


class AltinnTokens(CachedToken):
    """One Maskinporten scope set's Altinn token; thread-safe, one exchange at a time."""

    def __init__(self, exchange_url: str, maskinporten: TokenClient, http: httpx.Client,
                 clock: Clock | None = None, renew_before_s: float = RENEW_BEFORE_S) -> None:
        super().__init__(clock)
        self.exchange_url = exchange_url
        self.maskinporten = maskinporten
        self.http = http
        self.renew_before_s = renew_before_s
        self.exchanges_made = 0

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.maskinporten.scopes

    def access_token(self) -> str:
        with self._lock:
            cached = self._cached()
            if cached is not None:
                return cached
            token = self._exchange()
            lifetime = _lifetime_s(token, self.clock.now().timestamp())
            return self._keep(token, max(lifetime - self.renew_before_s, lifetime / 2))

    def _exchange(self) -> str:
        what = f"exchanging a Maskinporten token ({' '.join(self.scopes)}) for an Altinn token at {self.exchange_url}"
        for attempt in range(2):
            maskinporten_token = self.maskinporten()
            with translated_http_errors(what):
                response = self.http.get(self.exchange_url, headers={
                    "Authorization": f"Bearer {maskinporten_token}", "Accept": "text/plain"})
            self.exchanges_made += 1
            if response.status_code == 401 and attempt == 0 and self.maskinporten.renew_after_refusal(
                    maskinporten_token):
                continue
            if response.status_code in (401, 403):
                raise RetryableChannelError(
                    f"{what}: Altinn refused the Maskinporten token (HTTP {response.status_code}); the token's "
                    "scopes must be registered for Altinn, and network.environment must match the Altinn "
                    "environment (test: tt02)", retry_after=self.maskinporten.refusal_pause_s, throttled=True)
            check_response(response, what)
            token = response.text.strip().strip('"')
            if token.count(".") != 2:
                raise RetryableChannelError(f"{what}: the answer is not a token")
            return token
        raise RetryableChannelError(f"{what}: Altinn refused the Maskinporten token twice",
                                    retry_after=self.maskinporten.refusal_pause_s, throttled=True)

    def renew_after_refusal(self, refused: str) -> bool:
        """An Altinn service answered 401 to `refused`: renew it once, with a new Maskinporten token too."""
        renew = super().renew_after_refusal(refused)
        if renew and self._renewing:  # this token was forgotten (not merely replaced by another thread meanwhile)
            self.maskinporten.invalidate()
        return renew


def _lifetime_s(token: str, now: float) -> float:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return max(float(claims["exp"]) - now, 0.0)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return DEFAULT_LIFETIME_S
