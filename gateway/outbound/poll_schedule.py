"""How often a sent message's status is asked for: by how long its status has stood still.

A message whose status changed within the last day is asked for in every round of its channel's status
poll (`status_poll_seconds`). One whose status has stood still for longer is asked for less and less
often, down to once an hour after 30 days, as the reference integration point does:

    status unchanged for    asked for
    less than 1 day         every round
    1 to 3 days             every 5 minutes
    3 to 7 days             every 15 minutes
    7 to 30 days            every 30 minutes
    30 days or more         every hour

A message is never asked for more often than its channel's round, however the steps are set.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

DAY_SECONDS = 86_400.0

DEFAULT_STEPS: tuple[tuple[float, float], ...] = (
    # (unchanged for at least this many seconds, then at most one poll per this many seconds)
    (0.0, 0.0),
    (1 * DAY_SECONDS, 300.0),
    (3 * DAY_SECONDS, 900.0),
    (7 * DAY_SECONDS, 1800.0),
    (30 * DAY_SECONDS, 3600.0),
)


@dataclass(frozen=True)
class PollSchedule:
    """The steps of the back-off: (unchanged for at least, polled at most every), in rising order."""

    steps: tuple[tuple[float, float], ...] = DEFAULT_STEPS

    def __post_init__(self) -> None:
        quiet = [since for since, _every in self.steps]
        if not self.steps or quiet[0] != 0.0 or quiet != sorted(quiet):
            raise ValueError("a poll schedule's steps start at 0 s unchanged and rise")

    def interval(self, unchanged_seconds: float) -> float:
        """Seconds between two polls of a message whose status has not changed for `unchanged_seconds`."""
        index = bisect.bisect_right([since for since, _every in self.steps], max(unchanged_seconds, 0.0)) - 1
        return self.steps[index][1]

    def next_poll(self, now: float, last_change: float) -> float:
        """When a message polled at `now` (epoch seconds), whose status last changed at `last_change`, is
        next due. 0 s between polls means the next round."""
        return now + self.interval(now - last_change)


__all__ = ["DAY_SECONDS", "DEFAULT_STEPS", "PollSchedule"]
