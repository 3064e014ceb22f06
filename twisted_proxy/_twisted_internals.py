"""
Every touch of Twisted's private attributes, in one place.

Streaming a body into a twisted.web C{Site} before it is complete needs state
that C{HTTPChannel} keeps privately; writing without a needless poll needs
the TCP transport's buffer state. Should a Twisted upgrade rename
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


def pendingWriteBytes(transport: Any) -> int | None:
    """
    The bytes written to C{transport} that the peer has not taken yet (still
    in the socket's user-space buffer; for TLS, in the TCP transport under
    it), or None when the transport does not tell. A backend that takes
    none of a stalled upload shows the same count twice.
    """
    if hasattr(transport, "wrappedProtocol") and hasattr(transport, "transport"):
        transport = transport.transport
    if not isinstance(transport, tcp.Connection):
        return None
    held: int = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return held


def replaceProtocol(transport: Any, protocol: Any) -> None:
    """
    Make C{transport} deliver to C{protocol} from now on (a WebSocket bridge
    taking over an HTTP connection): a TLS transport's wrapped protocol, or a
    TCP connection's own protocol.
    """
    if hasattr(transport, "wrappedProtocol"):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
