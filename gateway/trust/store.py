"""The trust store: the CA certificates of trust.ca_bundle, and the validation of a peer's certificate
against them with pyhanko-certvalidator (a kept RFC 5280 path validator built on asn1crypto): path
building, signatures, validity, basic constraints, path length and name constraints, revocation, and
the key usage the certificate is used for.

Self-signed certificates in the bundle are the trust roots; the others are intermediates that complete
a chain (peers often send only their leaf). An intermediate whose issuer is not in the bundle is itself
a root: a bundle of only an intermediate still anchors what it issued.

Revocation follows the store's `Revocation`: the leaf's status must come from its CRL or its OCSP
responder; when neither answers, `refuse` refuses the certificate and `warn` accepts it with a warning
the caller writes into the status file. A CA certificate's revocation is checked when its CRL answers
and not required, as the reference validator does (it preloads only the issuing CAs' CRLs). A
TrustStore without Revocation checks no revocation at all (tools, and tests of chains alone).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from gateway.errors import KeystoreError, SecurityError
from gateway.trust import asn1_classes  # noqa: F401 - asn1crypto's classes set up before any thread uses them
from gateway.trust.orgnr import describe
from gateway.trust.revocation import RevocationSource

# A peer's certificate is checked at the time we received its message; clocks on both sides drift,
# so a certificate that starts or ends this close to that time still counts as valid.
CLOCK_SKEW = timedelta(minutes=5)
REFUSE = "refuse"
WARN = "warn"
REVOCATION_POLICIES = (REFUSE, WARN)

_CHECK_REVOCATION = CertRevTrustPolicy(RevocationCheckingPolicy(
    ee_certificate_rule=RevocationCheckingRule.CHECK_IF_DECLARED,
    intermediate_ca_cert_rule=RevocationCheckingRule.CHECK_IF_DECLARED_SOFT,
))
_NO_REVOCATION = CertRevTrustPolicy(NO_REVOCATION)
# Extended key usages that fit a message signer or an encryption target; a certificate whose EKU names
# none of them (a TLS server's, a time stamper's, an OCSP responder's) is not for messages.
_MESSAGE_EKUS = frozenset({
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning (RFC 9336)
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
})


class Purpose(enum.Enum):
    """What a certificate is used for, and the key usage that allows it."""

    SIGNING = ("signing", "digitalSignature")
    ENCRYPTION = ("encrypting to", "keyEncipherment")

    @property
    def words(self) -> str:
        return self.value[0]

    @property
    def key_usage(self) -> str:
        return self.value[1]


class RevocationUnavailable(SecurityError):
    """Neither the CRL nor the OCSP responder of a certificate answered, and the policy is to refuse.

    Often passing (a CA's server down, a proxy refusing): an outgoing message tries again later."""


@dataclass(frozen=True)
class Revocation:
    """How revocation is checked: `policy` when nothing answers (refuse | warn), where answers come from
    (`source`, None: no fetching), CRLs known beforehand (`crls`, DER: offline use and tests), and for how
    long a certificate that passed is trusted before its path and revocation status are checked again
    (`recheck_seconds`, 0: at every use; a burst of messages to one receiver then costs one validation)."""

    policy: str = REFUSE
    source: RevocationSource | None = None
    crls: tuple[bytes, ...] = ()
    recheck_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in REVOCATION_POLICIES:
            raise ValueError(f"revocation policy {self.policy!r}; choose one of {', '.join(REVOCATION_POLICIES)}")
        if self.recheck_seconds < 0:
            raise ValueError(f"recheck_seconds {self.recheck_seconds!r}; give 0 or more")


@dataclass(frozen=True)
class TrustVerdict:
    """A certificate that passed, and what the caller should write beside it (revocation not checked)."""

    certificate: x509.Certificate
    warnings: tuple[str, ...] = field(default=())


def validity_problem(cert: x509.Certificate, at: datetime, role: str = "certificate") -> str | None:
    """Why `cert` is not valid at `at` (allowing CLOCK_SKEW either way), or None; `role` names it."""
    checked = f"checked at {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, {_skew_text()} of clock skew allowed"
    if at + CLOCK_SKEW < cert.not_valid_before_utc:
        return (
            f"{role} {describe(cert)} is not yet valid: valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC ({checked})"
        )
    if at - CLOCK_SKEW > cert.not_valid_after_utc:
        return (
            f"{role} {describe(cert)} has expired: valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC ({checked})"
        )
    return None


def _skew_text() -> str:
    minutes = int(CLOCK_SKEW.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def usage_problem(cert: x509.Certificate, purpose: Purpose, role: str = "certificate") -> str | None:
    """Why `cert` may not be used for `purpose`: a CA certificate, a key usage without the bit the purpose
    needs, or an extended key usage for something else. None when it may."""
    try:
        if cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca:
            return (f"{role} {describe(cert)} is a CA certificate (basicConstraints CA is set); a CA's certificate "
                    f"is never used for {purpose.words} messages, only an enterprise certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return f"{role} {describe(cert)} has no keyUsage extension, which enterprise certificates always carry"
    allowed = usage.digital_signature if purpose is Purpose.SIGNING else usage.key_encipherment
    if not allowed:
        return (f"{role} {describe(cert)} may not be used for {purpose.words} messages: its keyUsage lacks "
                f"{purpose.key_usage} ({_usage_names(usage)})")
    try:
        extended = set(cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value)
    except x509.ExtensionNotFound:
        return None
    if not extended & _MESSAGE_EKUS:
        names = ", ".join(sorted(getattr(oid, "_name", oid.dotted_string) for oid in extended))
        return (f"{role} {describe(cert)} is meant for other uses (extendedKeyUsage {names}), not for "
                f"{purpose.words} messages")
    return None


def _usage_names(usage: x509.KeyUsage) -> str:
    names = [name for name in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign") if getattr(usage, name)]
    return "it has " + ", ".join(names) if names else "it has none"


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _run(coroutine):  # type: ignore[no-untyped-def]
    """Run a validation to its end, also from a thread that already runs an event loop (the sandbox)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class TrustStore:
    """Trusted CA certificates, and how a peer's certificate is checked against them."""

    def __init__(self, certificates: Iterable[x509.Certificate], revocation: Revocation | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._certificates = list(dict.fromkeys(certificates))
        if not self._certificates:
            raise KeystoreError("the trust store is empty; give at least one CA certificate")
        self.revocation = revocation
        subjects = {cert.subject for cert in self._certificates}
        self._root_ders: list[bytes] = []
        self._intermediate_ders: list[bytes] = []
        for cert in self._certificates:
            self_issued = cert.issuer == cert.subject
            ders = self._root_ders if self_issued or cert.issuer not in subjects else self._intermediate_ders
            ders.append(cert.public_bytes(serialization.Encoding.DER))
        self._crl_ders = list(revocation.crls) if revocation else []
        # asn1crypto parses lazily and is not safe to share between threads (two senders validating at once broke
        # inside its hashing): every thread validates with its own parsed copies, made once.
        self._parsed = threading.local()
        # Chains that passed without a warning, by (leaf, what the peer sent, purpose): until when they stand.
        self._passed: dict[tuple[bytes, tuple[bytes, ...], Purpose | None], float] = {}
        self._passed_lock = threading.Lock()
        self._monotonic = monotonic

    def _anchors(self) -> tuple[list[asn1_x509.Certificate], list[asn1_x509.Certificate],
                                list[asn1_crl.CertificateList]]:
        parsed = getattr(self._parsed, "value", None)
        if parsed is None:
            parsed = (
                [asn1_x509.Certificate.load(der) for der in self._root_ders],
                [asn1_x509.Certificate.load(der) for der in self._intermediate_ders],
                [asn1_crl.CertificateList.load(der) for der in self._crl_ders],
            )
            self._parsed.value = parsed
        return parsed

    @classmethod
    def from_pem_files(cls, paths: Iterable[Path], revocation: Revocation | None = None,
                       monotonic: Callable[[], float] = time.monotonic) -> TrustStore:
        certificates: list[x509.Certificate] = []
        for path in paths:
            try:
                certificates.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
            except FileNotFoundError:
                raise KeystoreError(f"trust store file {path} does not exist; check the path in config.yaml") from None
            except ValueError:
                raise KeystoreError(f"trust store file {path} holds no PEM certificate") from None
        return cls(certificates, revocation, monotonic)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(self._certificates)

    def verify(
        self,
        leaf: x509.Certificate,
        untrusted: Sequence[x509.Certificate] = (),
        at: datetime | None = None,
        purpose: Purpose | None = None,
        role: str = "certificate",
    ) -> TrustVerdict:
        """Check `leaf` (with the certificates the peer sent, `untrusted`) at `at` (the time it was presented:
        a message's receipt; None means now) for `purpose` (None: the chain alone). SecurityError names the
        first rule it breaks; RevocationUnavailable when its status could not be had and the policy refuses."""
        moment = at or datetime.now(UTC)
        problem = validity_problem(leaf, moment, role) or (usage_problem(leaf, purpose, role) if purpose else None)
        if problem:
            raise SecurityError(problem)
        # A chain checked for now stands for the recheck window; one checked at another time (an old receipt)
        # is checked again, at that time.
        recent = at is None or abs(datetime.now(UTC) - at) <= CLOCK_SKEW
        key = (leaf.public_bytes(serialization.Encoding.DER),
               tuple(cert.public_bytes(serialization.Encoding.DER) for cert in untrusted if cert != leaf), purpose)
        if recent and self._still_passed(key):
            return TrustVerdict(leaf)
        verdict = self._verify_chain(leaf, untrusted, at, role)
        if recent and not verdict.warnings and self.revocation is not None and self.revocation.recheck_seconds:
            with self._passed_lock:
                if len(self._passed) > 10_000:
                    now = self._monotonic()
                    self._passed = {k: until for k, until in self._passed.items() if until > now}
                self._passed[key] = self._monotonic() + self.revocation.recheck_seconds
        return verdict

    def _still_passed(self, key: tuple[bytes, tuple[bytes, ...], Purpose | None]) -> bool:
        with self._passed_lock:
            until = self._passed.get(key)
        return until is not None and until > self._monotonic()

    def _verify_chain(self, leaf: x509.Certificate, untrusted: Sequence[x509.Certificate], at: datetime | None,
                      role: str) -> TrustVerdict:
        others = [_asn1(cert) for cert in untrusted if cert != leaf]
        checks = self.revocation is not None and (self.revocation.source is not None or bool(self._crl_ders))
        try:
            self._validate(leaf, others, at, checks)
        except InsufficientRevinfoError as exc:
            assert self.revocation is not None
            why = f"the revocation status of {role} {describe(leaf)} could not be checked: {_plain(exc)}"
            if self.revocation.policy == REFUSE:
                raise RevocationUnavailable(
                    f"{why}; trust.revocation is refuse (set it to warn to accept such certificates with a warning)"
                ) from None
            self._validate(leaf, others, at, revocation=False)
            return TrustVerdict(leaf, (f"{why}; accepted because trust.revocation is warn",))
        except RevokedError as exc:
            raise SecurityError(f"{role} {describe(leaf)} is revoked: {_plain(exc)}") from None
        except PathBuildingError:
            raise SecurityError(self._unanchored(leaf, role)) from None
        except (ExpiredError, NotYetValidError) as exc:
            raise SecurityError(f"{role} {describe(leaf)} is not trusted: {_plain(exc)}") from None
        except ValidationError as exc:
            raise SecurityError(self._invalid(leaf, role, _plain(exc))) from None
        return TrustVerdict(leaf)

    def _validate(self, leaf: x509.Certificate, others: list[asn1_x509.Certificate], at: datetime | None,
                  revocation: bool) -> None:
        fetchers = self.revocation.source.fetchers() if revocation and self.revocation and self.revocation.source \
            else None
        roots, intermediates, crls = self._anchors()
        context = ValidationContext(
            trust_roots=roots,
            other_certs=[*intermediates, *others],
            moment=at,
            allow_fetching=fetchers is not None,
            fetchers=fetchers,
            crls=crls if revocation and crls else None,
            revinfo_policy=_CHECK_REVOCATION if revocation else _NO_REVOCATION,
            time_tolerance=CLOCK_SKEW,
        )
        _run(CertificateValidator(_asn1(leaf), validation_context=context).async_validate_path())

    def _unanchored(self, leaf: x509.Certificate, role: str) -> str:
        if leaf.issuer == leaf.subject:
            return (f"untrusted issuer: {role} {describe(leaf)} is self-signed; only certificates issued by a CA in "
                    "the trust store (trust.ca_bundle) are accepted")
        return (f"untrusted issuer: {role} {describe(leaf)} is issued by '{leaf.issuer.rfc4514_string()}', which "
                "does not chain to the trust store; add that CA (and its intermediates) to trust.ca_bundle if it "
                "is one you trust")

    def _invalid(self, leaf: x509.Certificate, role: str, why: str) -> str:
        if "signature" in why.lower() and "self-signed" not in why.lower():
            return f"bad signature in chain: {role} {describe(leaf)} is not signed by its issuer ({why})"
        if "self-signed" in why.lower():
            return self._unanchored(leaf, role)
        return f"{role} {describe(leaf)} is not trusted: {why}"


def _plain(exc: Exception) -> str:
    text = str(exc.args[0] if exc.args else exc)
    return text.removeprefix("The path could not be validated because ").rstrip(".")
