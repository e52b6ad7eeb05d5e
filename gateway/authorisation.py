"""Every access token the gateway uses, by use: Maskinporten tokens per scope set, Altinn tokens by exchange.

Channels ask for what they need (`maskinporten(("ks:fiks",))`, `altinn(("altinn:broker.write",),
system_user)`) and get a cached token source; the same question gets the same source, so each scope set
is granted once per token lifetime, whoever asks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import httpx

from gateway.altinn_tokens import AltinnTokens
from gateway.clock import Clock
from gateway.maskinporten import GrantKey, Maskinporten, SystemUser, TokenClient


class Authorisation:
    def __init__(self, maskinporten: Maskinporten, altinn_exchange_url: str | None, http: httpx.Client,
                 clock: Clock, altinn_key: GrantKey | None = None) -> None:
        self.maskinporten_client = maskinporten
        self.altinn_key = altinn_key  # a registered key (kid) for the Altinn grants; None: the certificate
        self.altinn_exchange_url = altinn_exchange_url
        self.http = http
        self.clock = clock
        self._lock = threading.Lock()
        self._altinn: dict[tuple[tuple[str, ...], SystemUser | None], AltinnTokens] = {}

    def maskinporten(self, scopes: Sequence[str], system_user: SystemUser | None = None,
                     consumer_org: str | None = None) -> TokenClient:
        """A Maskinporten token for exactly `scopes` (the service registry, SvarUt)."""
        return self.maskinporten_client.tokens(scopes, system_user=system_user, consumer_org=consumer_org)

    def altinn(self, scopes: Sequence[str], system_user: SystemUser | None = None) -> AltinnTokens:
        """An Altinn token exchanged for a Maskinporten token of `scopes` (the broker, the DPV proxy)."""
        if not self.altinn_exchange_url:
            raise ValueError("no Altinn token exchange is configured (network.altinn_exchange_url)")
        key = (tuple(scopes), system_user)
        with self._lock:
            tokens = self._altinn.get(key)
            if tokens is None:
                grant = self.maskinporten_client.tokens(scopes, system_user=system_user, key=self.altinn_key)
                tokens = AltinnTokens(self.altinn_exchange_url, grant, self.http, self.clock)
                self._altinn[key] = tokens
            return tokens

    @property
    def exchanges_made(self) -> int:
        with self._lock:
            return sum(tokens.exchanges_made for tokens in self._altinn.values())
