"""One round of per-message status requests, as the polled channels (DPV, DPI) ask them.

The rule every such channel keeps: one message's trouble never holds up the others. A message whose
status cannot be read for good this time (PermanentChannelError) is logged and asked again next round;
the round fails as a whole only when every request failed for a reason that may pass (the network, the
service down); a service asking us to wait (429, 503, Retry-After) ends the round at once, so nothing
more is asked of it until the wait is over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from gateway.channels.base import SentMessage, StatusUpdate
from gateway.errors import PermanentChannelError, RetryableChannelError

log = logging.getLogger(__name__)


def poll_each(
    due: Sequence[SentMessage], ask: Callable[[SentMessage], list[StatusUpdate]], channel: str
) -> list[StatusUpdate]:
    """The updates `ask` gives for each message of `due`, asked one by one under the rule above.

    `ask` turns a service's "no such message any more" into its own final update; `channel` names the
    channel in the log line of a status that cannot be read."""
    updates: list[StatusUpdate] = []
    retryable: list[RetryableChannelError] = []
    for message in due:
        try:
            updates.extend(ask(message))
        except RetryableChannelError as exc:
            if exc.throttled or exc.retry_after is not None:
                raise
            retryable.append(exc)
        except PermanentChannelError as exc:
            log.warning("the status of message %s on %s cannot be read: %s; asked again next round",
                        message.message_id, channel, exc)
    if retryable and len(retryable) == len(due):
        raise retryable[0]
    return updates
