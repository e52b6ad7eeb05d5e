"""The online start-up checks (`check-config --online`, and the daemon at start): each endpoint asked once with
its real authentication, nothing changed anywhere, one line per endpoint with the fix.

As the reference integration point checks at start, and more: our certificate's remaining life (a warning at
30 days, an error at 7), its serial against the one the service registry holds for us (`/virksert/{orgnr}`,
which receivers encrypt to), the clock against the token endpoint's `Date` (Maskinporten refuses a grant more
than 10 s off), a Maskinporten token for the registry's scopes, the registry itself, and every enabled
channel's own probe (the broker listed with the exchanged Altinn token, the DPV proxy searched, SvarUt asked
and SvarInn listed).
"""

from __future__ import annotations

import email.utils
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from cryptography import x509

from gateway.authorisation import Authorisation
from gateway.channels.registry import KINDS, ChannelTools, registry_scopes
from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import ChannelError, GatewayError, PermanentChannelError
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.tokens import bearer_request, check_response, translated_http_errors

OK, WARNING, ERROR = "ok", "warning", "error"
EXPIRY_WARNING = timedelta(days=30)
EXPIRY_ERROR = timedelta(days=7)
SKEW_WARNING_S = 5.0
SKEW_ERROR_S = 10.0  # Maskinporten's limit


@dataclass(frozen=True)
class CheckResult:
    level: str  # ok, warning or error
    key: str  # the config key (or part) the line is about
    text: str

    @property
    def line(self) -> str:
        return f"{self.level}: {self.key}: {self.text}"


def certificate_life(certificate: x509.Certificate, now: datetime) -> CheckResult:
    left = certificate.not_valid_after_utc - now
    end = f"{certificate.not_valid_after_utc:%Y-%m-%d}"
    if left < EXPIRY_ERROR:
        return CheckResult(ERROR, "keystore", f"the certificate expires on {end} (in {max(0, left.days)} days); "
                                              "install the new enterprise certificate now")
    if left < EXPIRY_WARNING:
        return CheckResult(WARNING, "keystore", f"the certificate expires on {end} (in {left.days} days); order a "
                                                "new enterprise certificate and have Digdir register it before then")
    return CheckResult(OK, "keystore", f"the certificate is valid until {end}")


def clock_skew(http: httpx.Client, token_url: str, now: Callable[[], datetime]) -> CheckResult:
    """Our clock against the token endpoint's Date header (any answer carries one)."""
    with translated_http_errors(f"asking {token_url} for the time"):
        response = http.get(token_url)
    header = response.headers.get("date")
    if not header:
        return CheckResult(WARNING, "clock", f"{token_url} sends no Date header: the clock could not be compared")
    theirs = email.utils.parsedate_to_datetime(header)
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    skew = (now() - theirs).total_seconds()
    said = f"this server's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the token endpoint's"
    if abs(skew) > SKEW_ERROR_S:
        return CheckResult(ERROR, "clock", f"{said}; Maskinporten refuses grants beyond 10 s (MP-130): set up NTP")
    if abs(skew) > SKEW_WARNING_S:
        return CheckResult(WARNING, "clock", f"{said}; Maskinporten refuses grants beyond 10 s: check NTP")
    return CheckResult(OK, "clock", f"within {abs(skew):.0f} s of the token endpoint's")


def registered_certificate(config: Config, identity: OrgIdentity, auth: Authorisation,
                           http: httpx.Client) -> CheckResult:
    """The service registry's certificate for us must be ours: receivers encrypt to it."""
    base = (config.network.service_registry_url or "").rstrip("/")
    url = f"{base}/virksert/{identity.orgnr}"
    what = f"asking the service registry for the certificate of {identity.orgnr}"
    tokens = auth.maskinporten(registry_scopes(config.channels.enabled()))
    response = bearer_request(http, tokens, what, "GET", url)
    # Where a channel's senders encrypt to the certificate the registry holds for us, a wrong one is an error.
    needed = any(KINDS[key].encrypted_to_registered_certificate for key in config.channels.enabled())
    if response.status_code == 404:
        return CheckResult(ERROR if needed else WARNING, "virksert",
                           f"the service registry holds no certificate for {identity.orgnr}: have Digdir register "
                           "the keystore's certificate (Virksert/ELMA) before anyone can send to you")
    check_response(response, what)
    try:
        registered = x509.load_pem_x509_certificate(response.content)
    except ValueError:
        return CheckResult(WARNING, "virksert", f"{url} did not answer with a PEM certificate")
    ours = identity.certificate.serial_number
    if registered.serial_number != ours:
        return CheckResult(
            ERROR if needed else WARNING, "virksert",
            f"the service registry holds a certificate with serial {registered.serial_number:x} for {identity.orgnr}, "
            f"but the keystore's has serial {ours:x}: senders would encrypt to a key we do not have; have Digdir "
            "register the keystore's certificate, or use the keystore whose certificate is registered",
        )
    return CheckResult(OK, "virksert", f"the service registry holds our certificate (serial {ours:x})")


def online_checks(config: Config, identity: OrgIdentity, trust: TrustStore, auth: Authorisation,
                  http: httpx.Client, clock: Clock) -> list[CheckResult]:
    """Every check, in order; a check that cannot run says why on its own line and the rest go on."""
    network = config.network
    results = [certificate_life(identity.certificate, clock.now())]
    if not config.network_configured or not network.token_url:
        return results
    results.append(_guarded("clock", lambda: clock_skew(http, network.token_url or "", clock.now)))
    scopes = registry_scopes(config.channels.enabled())

    def grant() -> CheckResult:
        auth.maskinporten(scopes)()
        return CheckResult(OK, "network.token_url", f"Maskinporten granted {' '.join(scopes)} to client "
                                                    f"{auth.maskinporten_client.client_id}")

    results.append(_guarded("network.token_url", grant))
    results.append(_guarded("virksert", lambda: registered_certificate(config, identity, auth, http)))
    tools = ChannelTools(orgnr=config.organisation.orgnr, identity=identity, trust=trust, auth=auth, http=http,
                         clock=clock, organisation_name=config.organisation.name)
    for name, block in config.channels.enabled().items():
        probe = KINDS[name].probe
        if probe is None:
            continue
        try:
            for key, url, answer in probe(block, tools):
                results.append(CheckResult(OK, key, f"{url}: {answer}"))
        except GatewayError as exc:
            results.append(CheckResult(ERROR, f"channels.{name}", _said(exc)))
    return results


def journal_database(config: Config) -> CheckResult:
    """The PostgreSQL journal journal.url names: connected to with the password file, its schema version read, and
    (while it has a migration to come) whether the role may create the journal's tables."""
    from gateway.journal.engines import engine_for
    from gateway.journal.migrations import MIGRATIONS

    engine = engine_for(config.journal, config.folders.journal_path)
    try:
        writer = engine.writer()
    except GatewayError as exc:
        return CheckResult(ERROR, "journal.url", f"{exc}; check the host, the database, the role and "
                                                 "journal.password_file (the role's password, its first line)")
    try:
        version = engine.schema_version(writer)
        ours = len(MIGRATIONS)
        if version > ours:
            return CheckResult(ERROR, "journal.url", f"the journal has schema version {version}, newer than this "
                                                     f"efm-gateway's ({ours}): run the newer efm-gateway on this node")
        if version < ours:
            [(may_create, schema)] = writer.execute(
                "SELECT has_schema_privilege(current_schema(), 'CREATE'), current_schema()").fetchall()
            if not may_create:
                return CheckResult(ERROR, "journal.url", f"the role may not create tables in schema {schema}, and "
                                   f"the journal needs its migrations ({version} of {ours}): give the role a schema "
                                   "of its own (CREATE SCHEMA ... AUTHORIZATION, see docs/production.md)")
            done = ("no journal yet: the first node makes it" if version == 0 else
                    f"schema version {version}: the first node of this version brings it to {ours}")
            return CheckResult(OK, "journal.url", f"PostgreSQL answers; {done}")
        return CheckResult(OK, "journal.url", f"PostgreSQL answers; the journal has schema version {version} "
                                              "(this efm-gateway's)")
    except sqlite3.Error as exc:  # the engine's translated errors: the connection lost, a grant missing
        return CheckResult(ERROR, "journal.url", f"the journal could not be read: {exc}")
    finally:
        writer.close()
        engine.close()


def _guarded(key: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except GatewayError as exc:
        return CheckResult(ERROR, key, _said(exc))


def _said(exc: GatewayError) -> str:
    text = str(exc)
    if isinstance(exc, ChannelError) and not isinstance(exc, PermanentChannelError) and "network error" in text:
        return f"{text}; check the firewall (outbound 443) and the proxy settings"
    return text
