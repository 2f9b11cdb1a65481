"""Counting what the published HTTP/2 denial-of-service patterns repeat, per connection.

Each pattern is a frame a client can send at no cost that costs the server
work or memory: a stream opened and reset at once (rapid reset,
CVE-2023-44487), a ping or a settings frame the server must answer
(CVE-2019-9512, -9515), empty frames (CVE-2019-9518), priority churn
(CVE-2019-9513). :class:`FloodMeter` keeps a budget per pattern that
useful work refills and each abusive frame spends; a connection that runs a
budget dry is told ``ENHANCE_YOUR_CALM`` and closed. Bounded memory does not
depend on these counts (flow control and the connection's write buffer do
that); they stop a client from keeping the server's CPU busy for nothing.
"""

from __future__ import annotations

import enum


class Flood(enum.Enum):
    """The patterns counted, and how many of each one connection may send in a row.

    Each value is (name, limit): with the limit alone as the value, members
    with the same limit would be one member under several names (an enum
    makes aliases of equal values), sharing one budget.
    """

    #: Streams the client resets before their response is complete.
    RESET = ("reset", 200)
    #: PING frames.
    PING = ("ping", 100)
    #: SETTINGS frames.
    SETTINGS = ("settings", 100)
    #: DATA frames with no payload that do not end the stream.
    EMPTY = ("empty", 100)
    #: PRIORITY frames (and priority changes in HEADERS).
    PRIORITY = ("priority", 1000)

    @property
    def limit(self) -> int:
        """How many in a row a connection may send."""
        return self.value[1]


#: A budget spent to nothing fills again in this many seconds.
REFILL_SECONDS = 10.0


class FloodMeter:
    """A token bucket per pattern: :meth:`spend` takes one, time and useful work put them back.

    A budget starts full (the pattern's limit) and regains all of it over
    :data:`REFILL_SECONDS`; each response completed in full adds one more,
    so a busy, well-behaved connection never runs dry, while one that only
    sends the cheap frames does within a burst of at most the limit. A
    reward is one addition (it is counted on every response), paid out to a
    budget when that budget is next spent.
    """

    __slots__ = ("_left", "_rewards", "_rewards_seen", "_updated")

    def __init__(self, now: float) -> None:
        self._left = {flood: float(flood.limit) for flood in Flood}
        self._updated = {flood: now for flood in Flood}
        self._rewards = 0
        self._rewards_seen = {flood: 0 for flood in Flood}

    def spend(self, flood: Flood, now: float) -> bool:
        """Count one frame of ``flood`` at time ``now``; False once the budget is gone."""
        limit = flood.limit
        earned = (now - self._updated[flood]) * limit / REFILL_SECONDS
        earned += self._rewards - self._rewards_seen[flood]
        self._updated[flood] = now
        self._rewards_seen[flood] = self._rewards
        left = min(limit, self._left[flood] + earned) - 1
        self._left[flood] = left
        return left >= 0

    def reward(self) -> None:
        """A response went out in full: one more of each, up to the limits."""
        self._rewards += 1
