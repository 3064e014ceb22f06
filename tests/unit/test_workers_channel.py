"""
The control channel between the owner and a follower, both ends in memory
(twisted.test.iosim): calls and their answers, one-way messages, what a
broken peer or a lost connection does, and the sockets passed alongside.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITransport
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient

from twisted_proxy.workers.channel import ChannelError, ControlChannel, Handler


class Recording(ControlChannel):
    """A channel end that keeps every message it received, as bytes."""

    def __init__(self, handlers: Mapping[str, Handler], name: str) -> None:
        super().__init__(handlers, name)
        self.received: list[bytes] = []

    def stringReceived(self, data: bytes) -> None:
        self.received.append(data)
        super().stringReceived(data)


def pair(
    owner: Mapping[str, Handler], follower: Mapping[str, Handler] | None = None
) -> tuple[Recording, Recording, IOPump]:
    """The owner's end (answering with C{owner}), the follower's, and the pump."""
    client, server, pump = connectedServerAndClient(
        lambda: Recording(owner, "owner"),
        lambda: Recording(follower or {}, "follower"),
    )
    return server, client, pump


def transportOf(end: ControlChannel) -> ITransport:
    """The transport of a connected channel end."""
    assert end.transport is not None
    return end.transport


def cut(end: ControlChannel) -> None:
    """C{end} closes the connection (its process ends)."""
    transportOf(end).loseConnection()


def outcome(d: Deferred[Any]) -> list[Any]:
    """What C{d} fired with (a value or a Failure), once it has."""
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def failed(got: list[Any]) -> str:
    """The message of the ChannelError in C{got}."""
    [failure] = got
    assert isinstance(failure, Failure)
    assert failure.check(ChannelError)
    return failure.getErrorMessage()


def test_aCallFiresWithTheOtherSidesValue() -> None:
    """The handler's value, arguments passed by name, comes back to the caller."""
    owner, follower, pump = pair({"add": lambda a, b: {"sum": a + b, "parts": [a, b]}})
    got = outcome(follower.call("add", a=2, b=40))
    pump.flush()
    assert got == [{"sum": 42, "parts": [2, 40]}]


def test_callsAreAnsweredEachToItsOwn() -> None:
    """Calls answered out of order each fire with their own answer."""
    held: dict[str, Deferred[str]] = {}

    def later(key: str) -> Deferred[str]:
        held[key] = Deferred()
        return held[key]

    owner, follower, pump = pair({"later": later})
    first = outcome(follower.call("later", key="a"))
    second = outcome(follower.call("later", key="b"))
    pump.flush()
    held["b"].callback("bee")
    pump.flush()
    assert (first, second) == ([], ["bee"])
    held["a"].callback("ay")
    pump.flush()
    assert (first, second) == (["ay"], ["bee"])


def test_aDeferredAnswersWhenItFires() -> None:
    """A handler's Deferred: nothing comes back until it fires, then its value."""
    pending: Deferred[int] = Deferred()
    owner, follower, pump = pair({"count": lambda: pending})
    got = outcome(follower.call("count"))
    pump.flush()
    assert got == []
    assert follower.received == []
    pending.callback(7)
    pump.flush()
    assert got == [7]


def test_bothSidesCallEachOther() -> None:
    """The owner calls the follower over the same channel."""
    owner, follower, pump = pair({}, {"counts": lambda: {"busy": 3}})
    got = outcome(owner.call("counts"))
    pump.flush()
    assert got == [{"busy": 3}]


def test_aHandlerThatRaisesGivesChannelError(logged: list[str]) -> None:
    """The caller gets ChannelError with the handler's message; the owner logs it."""

    def broken() -> None:
        raise RuntimeError("no such balancer")

    owner, follower, pump = pair({"broken": broken})
    got = outcome(follower.call("broken"))
    pump.flush()
    assert failed(got) == "no such balancer"
    assert "owner: broken failed" in logged


def test_aFailedDeferredGivesChannelError() -> None:
    """A handler's Deferred that fails: ChannelError with its message."""
    pending: Deferred[int] = Deferred()
    owner, follower, pump = pair({"count": lambda: pending})
    got = outcome(follower.call("count"))
    pump.flush()
    pending.errback(ValueError("counting timed out"))
    pump.flush()
    assert failed(got) == "counting timed out"


def test_anUnknownOperationGivesChannelError() -> None:
    """An operation the other side has no handler for: ChannelError naming it."""
    owner, follower, pump = pair({"add": lambda a, b: a + b})
    got = outcome(follower.call("subtract", a=1, b=2))
    pump.flush()
    assert failed(got) == "no operation 'subtract'"
    assert owner.open
    assert follower.open


def test_tellRunsTheHandlerAndNothingComesBack() -> None:
    """A one-way message runs the handler with its arguments; no answer is sent."""
    heard: list[tuple[int, str]] = []

    def ready(pid: int, name: str) -> str:
        heard.append((pid, name))
        return "a value nobody asked for"

    owner, follower, pump = pair({"ready": ready})
    follower.tell("ready", pid=1234, name="w1")
    pump.flush()
    assert heard == [(1234, "w1")]
    assert len(owner.received) == 1
    assert follower.received == []


def test_aFailedTellSendsNothingBack() -> None:
    """A one-way message whose handler fails, or that nobody handles: no answer."""

    def broken() -> None:
        raise RuntimeError("boom")

    owner, follower, pump = pair({"broken": broken})
    follower.tell("broken")
    follower.tell("unknown")
    pump.flush()
    assert len(owner.received) == 2
    assert follower.received == []
    assert owner.open
    assert follower.open


def test_aMessageThatIsNotJSONClosesTheChannel(logged: list[str]) -> None:
    """Garbage from the peer: the channel is closed (both ends) and logged."""
    owner, follower, pump = pair({})
    ownerClosed = outcome(owner.closed)
    followerClosed = outcome(follower.closed)
    owner.sendString(b"\xff not json {")
    pump.flush()
    assert (owner.open, follower.open) == (False, False)
    assert (ownerClosed, followerClosed) == ([None], [None])
    assert "follower: a message that is not JSON" in logged


def test_aMessageOverTheLimitClosesTheChannel(logged: list[str]) -> None:
    """A length beyond the limit closes the channel without reading the body."""
    owner, follower, pump = pair({})
    closed = outcome(follower.closed)
    transportOf(owner).write(struct.pack("!I", ControlChannel.MAX_LENGTH + 1))
    pump.flush()
    assert closed == [None]
    assert not owner.open
    assert any("the channel is closed" in line for line in logged)


def test_losingTheConnectionFailsWhatWaits() -> None:
    """
    The connection lost: calls waiting for an answer fail with ChannelError,
    C{closed} fires, a later call fails at once and a later tell is dropped.
    """
    pending: list[Deferred[int]] = []

    def count() -> Deferred[int]:
        pending.append(Deferred())
        return pending[-1]

    owner, follower, pump = pair({"count": count})
    first = outcome(follower.call("count"))
    second = outcome(follower.call("count"))
    closed = outcome(follower.closed)
    pump.flush()
    cut(owner)
    pump.flush()
    assert failed(first) == "follower: closed"
    assert failed(second) == "follower: closed"
    assert closed == [None]
    late = outcome(follower.call("count"))
    assert failed(late) == "follower: closed"
    follower.tell("count")
    pump.flush()
    assert len(pending) == 2
    # The answers, once they come, have nowhere to go.
    for d in pending:
        d.callback(1)
    pump.flush()
    assert follower.received == []


@pytest.fixture
def pipes() -> Iterator[Callable[[], tuple[int, int]]]:
    """Real descriptors (pipe ends); any still open are closed afterwards."""
    made: list[int] = []

    def pipe() -> tuple[int, int]:
        read, write = os.pipe()
        made.extend((read, write))
        return read, write

    yield pipe
    for fd in made:
        if isOpen(fd):
            os.close(fd)


def isOpen(fd: int) -> bool:
    """Whether C{fd} is open (C{os.fstat} says EBADF when it is not)."""
    try:
        os.fstat(fd)
    except OSError as e:
        if e.errno == errno.EBADF:
            return False
        raise
    return True


def test_descriptorsAreTakenInTheOrderTheyCame(
    pipes: Callable[[], tuple[int, int]],
) -> None:
    """The oldest descriptor received comes first, each once; none left: error."""
    owner, follower, pump = pair({})
    read, write = pipes()
    follower.fileDescriptorReceived(read)
    follower.fileDescriptorReceived(write)
    assert follower.takeDescriptor() == read
    assert follower.takeDescriptor() == write
    with pytest.raises(ChannelError, match=r"^follower: no socket came"):
        follower.takeDescriptor()
    cut(owner)
    pump.flush()
    # The taken ones are the caller's: the channel leaves them open.
    assert isOpen(read)
    assert isOpen(write)


def test_undeliveredDescriptorsAreClosedWithTheChannel(
    pipes: Callable[[], tuple[int, int]],
) -> None:
    """Descriptors nobody took are closed when the connection is lost."""
    owner, follower, pump = pair({})
    taken, _ = pipes()
    left = pipes()
    follower.fileDescriptorReceived(taken)
    for fd in left:
        follower.fileDescriptorReceived(fd)
    assert follower.takeDescriptor() == taken
    cut(owner)
    pump.flush()
    for fd in left:
        assert not isOpen(fd)
    assert isOpen(taken)
