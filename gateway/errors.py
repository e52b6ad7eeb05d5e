"""The one exception tree of efm-gateway.

    GatewayError                    anything the gateway raises on purpose
    ├── ConfigError                 config.yaml is wrong; the message names the key and the fix
    ├── ValidationError             input (a drop, a message, a container) breaks a rule; permanent
    │   ├── MessageFormatError      an SBD, arkivmelding or manifest is malformed
    │   └── SecurityError           a signature, certificate, digest, path or limit check failed
    ├── CryptoError                 encryption/decryption or key handling failed
    ├── KeystoreError               the organisation's key or certificate cannot be used
    ├── JournalError                the journal refused an operation (illegal transition, lock held)
    └── ChannelError                a transport call failed
        ├── RetryableChannelError   try again later (network, 5xx, 429, timeouts)
        └── PermanentChannelError   the peer said no for good (4xx, no such receiver)

Errors carry words for people: every message names what is wrong and, where we can, what to do.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error efm-gateway raises on purpose."""


class ConfigError(GatewayError):
    """config.yaml cannot be used; the message names the key and the fix."""


class ValidationError(GatewayError):
    """Input breaks a rule; retrying will not help."""


class MessageFormatError(ValidationError):
    """An SBD, arkivmelding, manifest or other message part is malformed."""


class SecurityError(ValidationError):
    """A signature, certificate, digest, archive path or size limit check failed."""


class CryptoError(GatewayError):
    """Encryption, decryption or signing failed."""


class KeystoreError(GatewayError):
    """The organisation's key or certificate cannot be loaded or does not fit."""


class JournalError(GatewayError):
    """The journal refused an operation."""


class ChannelError(GatewayError):
    """A transport call failed."""


class RetryableChannelError(ChannelError):
    """The call may succeed later: network trouble, 5xx, 429, timeouts.

    `retry_after` is the peer's own word on when to ask again (Retry-After, in seconds from now), and
    `throttled` says the peer asked us to slow down (429, 503): both concern the whole channel.
    """

    def __init__(self, message: str, retry_after: float | None = None, throttled: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled


class PermanentChannelError(ChannelError):
    """The peer refused for good: retrying the same request will not help."""
