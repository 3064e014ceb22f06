"""
Two connections paired as each other's producers, as
C{twisted.protocols.portforward} splices a client and its server: when one
side's socket cannot take more, reading from the other pauses, and resumes
once it drains. What flows between them (bytes, frames, messages) is the
caller's business; a pipe only pairs the flow control.

The WebSocket bridge pairs its two connections (L{Pipe}); the HTTP relay
makes the client's reading the producer of the backend connection's writing
while a request body goes up (its C{ClientReader} is a L{ReadingProducer}).
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["Pipe", "ReadingProducer", "StreamingTransport"]


class StreamingTransport(Protocol):
    """A connection's transport: a consumer whose reading pauses and resumes."""

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


@implementer(IPushProducer)
class ReadingProducer:
    """
    One connection's reading, registered as the producer of another
    connection's writing: paused and resumed with it, never closed when the
    other connection is lost (the side that is left ends itself, in its own
    way), and never left paused then.
    """

    __slots__ = ("_transport",)

    def __init__(self, transport: StreamingTransport) -> None:
        self._transport = transport

    def pauseProducing(self) -> None:
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        # The consumer is gone: never leave this side paused.
        self._transport.resumeProducing()


class Pipe:
    """Two transports, each registered as the producer of the other."""

    __slots__ = ("one", "other")

    def __init__(self, one: StreamingTransport, other: StreamingTransport) -> None:
        self.one = one
        self.other = other

    def open(self) -> None:
        """Pair the two: each side's transport pauses the other's reading."""
        one, other = self.one, self.other
        one.registerProducer(ReadingProducer(other), True)
        other.registerProducer(ReadingProducer(one), True)
