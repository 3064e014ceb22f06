"""
Every touch of twisted.web's private attributes, in one place.

Streaming a request body before it is complete, and taking over a connection,
need state that C{HTTPChannel} keeps privately; writing without a needless
poll needs the TCP transport's buffer state. Should a Twisted upgrade rename
any of it, this module (and its tests) is where it breaks, loudly.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.web.http import HTTPChannel


def pendingRequestLine(channel: HTTPChannel) -> tuple[bytes, bytes, bytes]:
    """
    The method, request-target and version of the request whose head the
    channel has just read (they become public only once the body is in).
    """
    return channel._command, channel._path, channel._version  # type: ignore[attr-defined]


def takeBufferedData(channel: HTTPChannel) -> bytes:
    """Remove and return bytes the channel buffered past the current request."""
    data = b"".join(channel._dataBuffer)
    channel._dataBuffer = []
    return data


def sendContinue(channel: HTTPChannel) -> None:
    """Answer C{Expect: 100-continue}."""
    channel._send100Continue()  # type: ignore[attr-defined]


class BadRequestHook:
    """
    Route C{HTTPChannel}'s private bad-request answer (a bare 400 with no body,
    no Server header) to the channel's own C{badRequest()}.
    """

    def badRequest(self) -> None:
        raise NotImplementedError

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.badRequest()


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data}, trying the socket at once when nothing is queued before it.

    A plain C{transport.write} queues the bytes and asks the reactor to poll
    for writability: two C{epoll_ctl} calls and a C{send} a loop later, for
    every response. On an idle TCP connection one C{send} usually takes it all;
    whatever it does not take is queued as usual (producers, pausing and error
    reporting unchanged). Other transports (TLS) are written normally.
    """
    if (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataBuffer
        and len(transport.dataBuffer) == transport.offset
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent >= 0:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)
