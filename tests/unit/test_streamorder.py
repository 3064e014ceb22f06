"""
HTTP/2 streams taking turns to send: round robin over those able to, as
Twisted's connection drives the priority tree it replaces.
"""

from __future__ import annotations

import pytest
from priority import (
    DeadlockError,
    DuplicateStreamError,
    MissingStreamError,
    TooManyStreamsError,
)

from twisted_proxy.core.streamorder import MAXIMUM_STREAMS, RoundRobinStreams


def turns(order: RoundRobinStreams, count: int) -> list[int]:
    return [next(order) for _ in range(count)]


def test_streamsAbleToSendTakeTurns() -> None:
    """Each unblocked stream in turn, again and again; blocked ones skipped."""
    order = RoundRobinStreams()
    for stream in (1, 3, 5):
        order.insert_stream(stream)
    assert turns(order, 6) == [1, 3, 5, 1, 3, 5]
    order.block(3)
    assert turns(order, 4) == [1, 5, 1, 5]
    order.unblock(3)
    assert turns(order, 3) == [1, 5, 3]


def test_noStreamAbleToSendIsADeadlock() -> None:
    """With every stream blocked (or none), next() raises DeadlockError."""
    order = RoundRobinStreams()
    with pytest.raises(DeadlockError):
        next(order)
    order.insert_stream(1)
    order.block(1)
    with pytest.raises(DeadlockError):
        next(order)
    order.unblock(1)
    assert next(order) == 1


def test_blockedAndUnblockedAgainHasOneTurn() -> None:
    """A stream blocked and unblocked between its turns is not doubled."""
    order = RoundRobinStreams()
    order.insert_stream(1)
    order.insert_stream(3)
    for _ in range(3):
        order.block(1)
        order.unblock(1)
    assert turns(order, 4) == [1, 3, 1, 3]


def test_removedStreamsAreForgotten() -> None:
    """A removed stream has no more turns, and is unknown afterwards."""
    order = RoundRobinStreams()
    order.insert_stream(1)
    order.insert_stream(3)
    order.remove_stream(1)
    assert turns(order, 2) == [3, 3]
    for call in (order.block, order.unblock, order.remove_stream):
        with pytest.raises(MissingStreamError):
            call(1)
    with pytest.raises(MissingStreamError):
        order.reprioritize(1, weight=200)


def test_priorityFramesChangeNothing() -> None:
    """PRIORITY for a known stream is accepted and leaves the order alone."""
    order = RoundRobinStreams()
    order.insert_stream(1)
    order.insert_stream(3, depends_on=1, weight=256, exclusive=True)
    order.reprioritize(1, depends_on=3, weight=1)
    assert turns(order, 4) == [1, 3, 1, 3]


def test_streamsAreBounded() -> None:
    """A known stream twice, or more streams than the limit, is refused."""
    order = RoundRobinStreams()
    order.insert_stream(1)
    with pytest.raises(DuplicateStreamError):
        order.insert_stream(1)
    for stream in range(3, 2 * MAXIMUM_STREAMS + 1, 2):
        order.insert_stream(stream)
    with pytest.raises(TooManyStreamsError):
        order.insert_stream(2 * MAXIMUM_STREAMS + 1)
