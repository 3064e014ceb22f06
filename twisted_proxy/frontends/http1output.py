"""
The output side of the HTTP/1.1 channel (L{twisted_proxy.frontends.http1}):
response bytes go straight to the socket, batched while corked, and the
client's flow control is handed on to the backend connection producing the
response; a client that takes nothing for C{send_timeout} is let go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IPushProducer

from twisted_proxy._twisted_internals import idleTCP, sendNow
from twisted_proxy.core.logformat import END_SEND_TIMEOUT
from twisted_proxy.frontends.listener import SendTimeout

__all__ = ["ChannelOutput"]


class ChannelOutput:
    """
    Writing to the client, and being the client transport's producer. The
    channel that uses it sets the state below when it is made, and gives
    L{cutShort} and L{abortConnection}.
    """

    transport: Any
    site: Any
    _producer: IPushProducer | None
    _writePaused: bool
    _corked: list[bytes] | None
    _readPaused: bool
    secure: bool
    abandoned: bool
    # While the client takes none of its response: send_timeout.
    _sendTimeout: SendTimeout

    def cutShort(self, reason: str) -> None:
        """The connection is about to be cut for C{reason}."""
        raise NotImplementedError

    def abortConnection(self) -> None:
        """Cut the connection now."""
        raise NotImplementedError

    # -- writing: straight to the socket, batched while corked --

    def cork(self) -> None:
        """Hold writes until L{uncork}, so a response head and body go out as one."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        """Send what was held, in one write."""
        pending, self._corked = self._corked, None
        if pending and self.transport is not None:
            sendNow(self.transport, b"".join(pending))

    def write(self, data: bytes) -> None:
        """Write response bytes."""
        if self._corked is not None:
            self._corked.append(data)
        else:
            sendNow(self.transport, data)

    def writeSequence(self, iovec: Sequence[bytes]) -> None:
        """Write several pieces of response at once."""
        if self._corked is not None:
            self._corked.extend(iovec)
        else:
            sendNow(self.transport, b"".join(iovec))

    def spliceTarget(self) -> tuple[Any, Any, bool] | None:
        """
        The client's TCP transport, to splice a response body to: plain TCP,
        nothing held or queued, not paused. With it the producer to pause
        while the client's socket is full, and whether its transport reads
        again afterwards (it does unless reading was paused for pipelining).
        """
        if (
            self.secure
            or self.abandoned
            or self._corked is not None
            or self._writePaused
            or not idleTCP(self.transport)
        ):
            return None
        return self.transport, self, not self._readPaused

    # -- IPushProducer: the client's socket is full, or has room again --

    def registerProducer(self, producer: IPushProducer) -> None:
        """C{producer} (the backend connection) writes the current response."""
        self._producer = producer
        if self._writePaused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """The response's producer is done."""
        self._producer = None

    def pauseProducing(self) -> None:
        self._writePaused = True
        if self._producer is not None:
            self._producer.pauseProducing()
        self._sendTimeout.start(self.transport)

    def resumeProducing(self) -> None:
        self._writePaused = False
        self._cancelSendTimer()
        if self._producer is not None:
            self._producer.resumeProducing()

    def _cancelSendTimer(self) -> None:
        self._sendTimeout.cancel()

    def _sendTimedOut(self) -> None:
        """The client's socket stayed full for send_timeout: let it go."""
        seconds = self.site.settings.send_timeout
        peer = str(getattr(self.transport.getPeer(), "host", "-"))
        self.site._log.info(
            "client {peer} took no response bytes for {seconds:g}s (send_timeout):"
            " closing its connection and the backend's",
            peer=peer,
            seconds=seconds,
        )
        self.cutShort(END_SEND_TIMEOUT)
        self.abortConnection()

    def stopProducing(self) -> None:
        if self._producer is not None:
            self._producer.stopProducing()
