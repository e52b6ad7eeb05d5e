"""channels.dpf in config.yaml: SvarUt (sending) and SvarInn (receiving), passwords from files only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.channels.kind import SettingsBlock
from gateway.environments import PRODUCTION, TEST
from gateway.errors import ConfigError


@dataclass(frozen=True)
class DpfChannelConfig:
    """DPF over KS SvarUt (sending, REST v2) and SvarInn (receiving): messages to and from municipalities.

    SvarUt calls carry a Maskinporten token (scope ks:fiks) and the Fiks integration's id and password;
    SvarInn uses the receiving system's (mottakersystem) user name and service password. Passwords are
    read from files, never given in config.yaml.
    """

    enabled: bool = True
    svarut_url: str | None = None  # https://svarut.ks.no/api
    account_id: str | None = None  # the SvarUt account (kontoId) we send from
    integration_id: str | None = None
    integration_password_file: Path | None = None
    svarinn_url: str | None = None  # https://svarut.ks.no/tjenester/svarinn; without it nothing is received
    svarinn_username: str | None = None
    svarinn_password_file: Path | None = None
    inbound_poll_seconds: float = 900.0
    status_poll_seconds: float = 300.0
    status_batch: int = 2000
    max_in_flight: int = 16  # requests on the wire at once: sends, downloads, status searches each

    @property
    def configured(self) -> bool:
        return self.enabled and bool(self.svarut_url)


def check_dpf(prefix: str, dpf: Any) -> None:
    if not dpf.configured:
        return
    needed = ["account_id", "integration_id", "integration_password_file"]
    if dpf.svarinn_url:
        needed += ["svarinn_username", "svarinn_password_file"]
    for key in needed:
        if getattr(dpf, key) is None:
            raise ConfigError(
                f"{prefix}: channels.dpf.{key} is missing; SvarUt/SvarInn need it (see the README's DPF table)"
            )
    # Whether the password files can be read is checked where they are read (check-config and the daemon's
    # start): operator commands load this file too, as a user that may not read the service's credentials.


SETTINGS = SettingsBlock(
    schema=DpfChannelConfig,
    url_keys=("svarut_url", "svarinn_url"),
    urls={
        TEST: {
            "svarut_url": "https://test.svarut.ks.no/api",
            "svarinn_url": "https://test.svarut.ks.no/tjenester/svarinn",
        },
        PRODUCTION: {
            "svarut_url": "https://svarut.ks.no/api",
            "svarinn_url": "https://svarut.ks.no/tjenester/svarinn",
        },
    },
    positive=frozenset({"inbound_poll_seconds", "status_poll_seconds", "status_batch", "max_in_flight"}),
    check=check_dpf,
    secret_files=("integration_password_file", "svarinn_password_file"),
)
