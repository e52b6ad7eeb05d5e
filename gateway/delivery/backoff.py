"""How long a message waits before its next try: exponential back-off with jitter, or the peer's Retry-After.

Jitter spreads the retries of messages that failed together (one outage) so they do not come back
as one burst; a Retry-After from the peer is a floor, never shortened by jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.errors import RetryableChannelError


@dataclass(frozen=True)
class RetryPolicy:
    """The reference's back-off (20 s, times 3, capped at an hour; the deadline ends it), ± `jitter`."""

    first_seconds: float = 20.0
    factor: float = 3.0
    max_seconds: float = 3600.0
    jitter: float = 0.2  # each delay is drawn from [1 - jitter, 1 + jitter] times the plain one
    # While the message's channel carries other messages, its failure was this message's bad luck on a lossy
    # network, not an outage: it is tried again within this, not after an hour.
    working_channel_seconds: float = 60.0
    random: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def plain_delay(self, attempts: int) -> float:
        """The delay without jitter after `attempts` failed tries."""
        return min(self.first_seconds * self.factor ** max(attempts - 1, 0), self.max_seconds)

    def delay(self, attempts: int, retry_after: float | None = None, channel_working: bool = False) -> float:
        """Seconds until the next try after `attempts` failed tries; at least `retry_after` when the peer gave one,
        and at most about `working_channel_seconds` while the channel carries other messages.

        With a Retry-After the peer said when it is ready: that time, plus up to a tenth (at most 2 s) so
        the messages it held back do not all return in the same instant.
        """
        if retry_after is not None:
            return retry_after + self.random.uniform(0.0, min(retry_after * 0.1, 2.0))
        plain = self.plain_delay(attempts)
        if channel_working:
            plain = min(plain, self.working_channel_seconds)
        return min(plain * self.random.uniform(1.0 - self.jitter, 1.0 + self.jitter), self.max_seconds)


def retry_after_of(error: BaseException) -> float | None:
    """The peer's Retry-After carried by `error`, when it is a retryable channel error that has one."""
    return error.retry_after if isinstance(error, RetryableChannelError) else None


__all__ = ["RetryPolicy", "retry_after_of"]
