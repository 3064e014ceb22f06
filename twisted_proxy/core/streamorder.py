"""
The order in which an HTTP/2 connection's streams take turns to send: round
robin over the streams that have something to send, in place of the
dependency tree of RFC 7540's priorities (which RFC 9113 deprecates, and
which cost more to walk than the small responses a proxy mostly sends).
Clients' PRIORITY frames are accepted and have no effect.

The interface is the C{priority} package's C{PriorityTree}, which Twisted's
HTTP/2 connection drives: streams are inserted blocked, unblocked when they
have data, blocked when their queue is empty or their window shut, removed
when done; C{next()} names the next stream to send, or raises
C{DeadlockError} when none can.
"""

from __future__ import annotations

from collections import deque

from priority import (
    DeadlockError,
    DuplicateStreamError,
    MissingStreamError,
    TooManyStreamsError,
)

__all__ = ["RoundRobinStreams"]

# As PriorityTree's default: streams known at once, PRIORITY frames for
# streams not opened yet included.
MAXIMUM_STREAMS = 1000


class RoundRobinStreams:
    """The streams able to send, each in turn."""

    __slots__ = ("_active", "_queued", "_turns")

    def __init__(self) -> None:
        # Every stream known: whether it may send now.
        self._active: dict[int, bool] = {}
        # Streams with a place in the turns (some may have been blocked or
        # removed since: skipped when their turn comes).
        self._queued: set[int] = set()
        self._turns: deque[int] = deque()

    def insert_stream(
        self,
        stream_id: int,
        depends_on: int | None = None,
        weight: int = 16,
        exclusive: bool = False,
    ) -> None:
        """A new stream, able to send (Twisted blocks it at once)."""
        if stream_id in self._active:
            raise DuplicateStreamError(stream_id)
        if len(self._active) >= MAXIMUM_STREAMS:
            raise TooManyStreamsError(f"more than {MAXIMUM_STREAMS} streams")
        self._active[stream_id] = False
        self.unblock(stream_id)

    def reprioritize(
        self,
        stream_id: int,
        depends_on: int | None = None,
        weight: int = 16,
        exclusive: bool = False,
    ) -> None:
        """A PRIORITY frame: no effect on the order, for a known stream."""
        if stream_id not in self._active:
            raise MissingStreamError(stream_id)

    def remove_stream(self, stream_id: int) -> None:
        """A stream is done."""
        if self._active.pop(stream_id, None) is None:
            raise MissingStreamError(stream_id)

    def block(self, stream_id: int) -> None:
        """A stream has nothing to send, or no window to send it in."""
        if stream_id not in self._active:
            raise MissingStreamError(stream_id)
        self._active[stream_id] = False

    def unblock(self, stream_id: int) -> None:
        """A stream has something to send again."""
        if stream_id not in self._active:
            raise MissingStreamError(stream_id)
        self._active[stream_id] = True
        if stream_id not in self._queued:
            self._queued.add(stream_id)
            self._turns.append(stream_id)

    def __iter__(self) -> RoundRobinStreams:
        return self

    def __next__(self) -> int:
        """The next stream to send; C{DeadlockError} when none can."""
        turns = self._turns
        active = self._active
        while turns:
            stream_id = turns.popleft()
            if active.get(stream_id):
                turns.append(stream_id)
                return stream_id
            self._queued.discard(stream_id)
        raise DeadlockError("no stream can send")
