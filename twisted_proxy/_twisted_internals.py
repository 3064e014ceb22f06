"""
Every touch of Twisted's private attributes, in one place.

Streaming a body into a twisted.web C{Site} before it is complete needs state
that C{HTTPChannel} keeps privately; writing without a needless poll needs
the TCP transport's buffer state; reopening twistd's log file and exiting 0
after SIGTERM need what twistd keeps to itself. Should a Twisted upgrade
rename any of it, this module (and its tests) is where it breaks, loudly.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from twisted.internet import tcp
from twisted.python.logfile import LogFile
from twisted.web.http import HTTPChannel

if sys.platform == "linux":
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
else:  # pragma: no cover - the send queue is not asked for elsewhere
    _OUTQ = None


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
    The bytes written to C{transport} that the peer has not taken yet: in
    the transport's own buffer (for TLS, the TCP transport's under it) and,
    where the system tells (Linux's TIOCOUTQ), in the socket's send queue
    not yet acknowledged. None when the transport does not tell. A peer that
    takes none of what it was sent shows the same count twice.
    """
    if hasattr(transport, "wrappedProtocol") and hasattr(transport, "transport"):
        transport = transport.transport
    if not isinstance(transport, tcp.Connection):
        return None
    held: int = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    if _OUTQ is not None:
        try:
            raw = fcntl.ioctl(transport.socket.fileno(), _OUTQ, b"\0\0\0\0")
        except (OSError, ValueError):
            pass
        else:
            held += struct.unpack("i", raw)[0]
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


def twistdLogFile(handler: object) -> LogFile | None:
    """
    The log file twistd writes to, found in the SIGUSR1 handler twistd set up
    for it (a closure over the file), or C{None} when C{handler} is not that.
    """
    cells = getattr(handler, "__closure__", None) or ()
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, LogFile):
            return value
    return None


def forgetExitSignal(reactor: Any) -> None:
    """
    Make twistd exit with status 0 after a stop that SIGTERM or SIGINT asked
    for: it re-raises the signal on its way out unless the reactor forgets it.
    """
    if getattr(reactor, "_exitSignal", None) is not None:
        reactor._exitSignal = None
