"""The organisation's key and certificate, and the trusted CAs, from config.yaml: checked at start."""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from gateway.authorisation import Authorisation
from gateway.clock import Clock
from gateway.config import Config
from gateway.environments import certificate_environment_problem
from gateway.errors import ConfigError, KeystoreError
from gateway.formats.keys import OrgIdentity, TrustStore, identity_problems, load_pem, load_pkcs12
from gateway.maskinporten import GrantKey, Maskinporten, default_client_id, issuer_of
from gateway.trust.policy import trust_settings
from gateway.trust.receivers import ReceiverTrust
from gateway.trust.registry import RegistrySigners
from gateway.trust.revocation import RevocationSource
from gateway.trust.store import Revocation


def load_identity(config: Config, at: datetime) -> OrgIdentity:
    """Load and check the enterprise certificate; one line per problem, naming the key to fix."""
    keystore = config.keystore
    for key, path in (("keystore.pkcs12", keystore.pkcs12), ("keystore.key_pem", keystore.key_pem),
                      ("keystore.password_file", keystore.password_file)):
        problem = readable_by_others(key, path)
        if problem:
            raise ConfigError(problem)
    try:
        if keystore.pkcs12 is not None:
            password = keystore.password
            if password is None and keystore.password_file is not None:
                try:
                    password = keystore.password_file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(
                        f"keystore.password_file: cannot read {keystore.password_file} ({exc.strerror})"
                    ) from None
            identity = load_pkcs12(keystore.pkcs12, password or "", keystore.alias)
        elif keystore.key_pem is not None and keystore.certificate_pem is not None:
            identity = load_pem(keystore.key_pem, keystore.certificate_pem, keystore.chain_pem, keystore.password)
        else:
            raise ConfigError("keystore: no keystore configured; set keystore.pkcs12 (or key_pem and certificate_pem)")
    except KeystoreError as exc:
        raise ConfigError(f"keystore: {exc}") from None
    problems = identity_problems(identity, config.organisation.orgnr, at)
    wrong_environment = certificate_environment_problem(identity.certificate, config.network.environment)
    if wrong_environment:
        problems.append(wrong_environment)
    if problems:
        raise ConfigError("keystore: " + "; ".join(problems))
    return identity


def readable_by_others(key: str, path: Path | None) -> str | None:
    """Why the secret at `path` must not be used (every user of the machine may read it), or None."""
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # missing or unreadable: loading it says so, in its own words
    if mode & stat.S_IROTH:
        return (f"{key}: {path} can be read by every user of this machine (mode {mode:04o}); make it readable by "
                f"the gateway alone: chmod 600 {path}")
    return None


def load_trust(config: Config, revocation_http: httpx.Client | None = None) -> TrustStore:
    """The trust store of trust.ca_bundle; with `revocation_http` it also checks revocation (CRL, OCSP) as
    trust.revocation says. Without, only the chain: the start-up checks of our own certificate."""
    bundle = config.trust.ca_bundle
    if bundle is None:
        raise ConfigError(
            "trust.ca_bundle is missing; name a PEM file with the CA certificates that senders' "
            "enterprise certificates chain to (roots and intermediates)"
        )
    if not bundle.is_file():
        raise ConfigError(f"trust.ca_bundle: {bundle} does not exist; point it at a PEM file of CA certificates")
    revocation = None
    if revocation_http is not None:
        revocation = Revocation(trust_settings(config).revocation, RevocationSource(revocation_http),
                                recheck_seconds=config.trust.recheck_seconds)
    try:
        return TrustStore.from_pem_files([bundle], revocation)
    except Exception as exc:
        raise ConfigError(f"trust.ca_bundle: {bundle} holds no readable PEM certificates ({exc})") from None


def registry_signers(config: Config, trust: TrustStore) -> RegistrySigners:
    """Who may sign the service registry's answers: the keys of trust.registry_keys, else the x5c chain to the
    anchors with the registry's organisation number."""
    if config.trust.registry_keys is not None:
        return RegistrySigners.pinned_from_file(config.trust.registry_keys)
    return RegistrySigners(trust, trust_settings(config).registry_orgnr)


def receiver_trust(config: Config, trust: TrustStore) -> ReceiverTrust:
    settings = trust_settings(config)
    return ReceiverTrust(trust, settings.served_by, settings.svarut_orgnr)


def authorisation_for(config: Config, identity: OrgIdentity, http: httpx.Client, clock: Clock) -> Authorisation:
    """The organisation's tokens: Maskinporten grants signed with our enterprise key (leaf certificate in
    x5c), and the Altinn exchange, as network.* sets them."""
    network = config.network
    assert network.token_url
    altinn_key = None
    if network.jwk_key_id and network.jwk_private_key:
        try:
            registered = serialization.load_pem_private_key(network.jwk_private_key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"network.jwk_private_key: {network.jwk_private_key} holds no readable unencrypted "
                              f"PEM private key ({exc})") from None
        altinn_key = GrantKey(registered, key_id=network.jwk_key_id)
    maskinporten = Maskinporten(
        token_url=network.token_url,
        audience=network.token_audience or issuer_of(network.token_url),
        client_id=network.client_id or default_client_id(config.organisation.orgnr),
        key=GrantKey(identity.private_key, certificate=identity.certificate),
        http=http,
        clock=clock,
        refusal_pause_s=network.refusal_pause_seconds,
    )
    return Authorisation(maskinporten, network.altinn_exchange_url, http, clock, altinn_key=altinn_key)
