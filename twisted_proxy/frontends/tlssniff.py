"""
Plain HTTP sent to a TLS listener: a 400 that says so, as nginx does.

Without this, a client that speaks HTTP in clear to a TLS port gets the
connection closed with nothing (OpenSSL fails the handshake), and its user is
left guessing. L{TLSSniffingFactory} goes in front of a listener's
C{TLSMemoryBIOFactory}; each connection starts with a L{TLSSniffingProtocol},
which looks at the client's first bytes (L{classifyFirstBytes}):

 - a TLS record (0x16, a handshake): the transport is handed to the TLS
   protocol, which reads those bytes and every later one itself; nothing
   sits between TCP and TLS afterwards;
 - an HTTP/1.x request line: once its head (or C{max_header_bytes} of it)
   is in, a plain-text C{400} with
   the listener's usual response headers, logged as the other refusals are,
   then the connection is closed;
 - anything else: closed, quietly.

The TLS protocol, and the listener's channel inside it, are connected from
the start, as they are without the sniffer: the channel's C{header_timeout}
closes a client that sends nothing, or stops before its handshake or its
plain request head is in, and the listener's drain and C{abortAll} reach a
connection still being sniffed. Until the handshake starts the TLS layer has
nothing to send, so a client it never reads sees no byte from it.
"""

from __future__ import annotations

from typing import Any, Literal

from twisted.internet.interfaces import IAddress, IProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_proxy._twisted_internals import replaceProtocol
from twisted_proxy.frontends.listener import ListenerSite
from twisted_proxy.frontends.request import errorHeaders, reasonPhrase

FirstBytes = Literal["tls", "http", "need more", "other"]

TLS_HANDSHAKE = 0x16
"""The content type that starts every TLS (and SSL 3) ClientHello record."""

MAX_METHOD = 20
"""The longest method name taken for an HTTP request line."""

PLAIN_HTTP_BODY = b"the plain HTTP request was sent to the HTTPS port; use https://\n"
"""What a client that speaks plain HTTP to a TLS listener is told."""

# RFC 6797 7.2: never sent over a connection that is not secure.
_NOT_IN_CLEAR = frozenset({b"strict-transport-security"})

# Connection states.
_SNIFFING = 0  # fewer bytes than it takes to tell
_PLAIN = 1  # an HTTP request line: reading the rest of its head
_TLS = 2  # handed to TLS
_CLOSING = 3  # answered or refused: what arrives is dropped


def classifyFirstBytes(data: bytes) -> FirstBytes:
    """
    What the first bytes a client sends on a TLS listener are: C{"tls"} (a
    handshake record), C{"http"} (a method of uppercase letters and a space,
    as an HTTP/1.x request line starts), C{"need more"} (too few bytes to
    tell), or C{"other"}.
    """
    if not data:
        return "need more"
    if data[0] == TLS_HANDSHAKE:
        return "tls"
    for index, byte in enumerate(data[: MAX_METHOD + 1]):
        if byte == 0x20:
            return "http" if index else "other"
        if not 0x41 <= byte <= 0x5A:  # A-Z
            return "other"
    return "need more" if len(data) <= MAX_METHOD else "other"


def headComplete(data: bytes, start: int = 0) -> bool:
    """
    Whether C{data} holds a whole request head (an empty line ends it; bare
    LF line ends count too). C{start}: where to look from, so that a head
    arriving in many pieces is not searched again from its first byte.
    """
    return data.find(b"\n\r\n", start) >= 0 or data.find(b"\n\n", start) >= 0


def requestLine(data: bytes) -> bytes:
    """The request line at the start of C{data}, without its end; empty if cut."""
    line, end, _ = data.partition(b"\n")
    return line.rstrip(b"\r") if end else b""


def plainHTTPResponse(site: ListenerSite) -> tuple[bytes, int]:
    """
    The 400 a plain HTTP request gets on C{site}'s TLS listener, and the
    length of its body: the listener's response headers (Server, the
    C{[proxy.response_headers]}), without HSTS, and C{Connection: close}.
    """
    body = PLAIN_HTTP_BODY
    head = [b"HTTP/1.1 400 %s\r\n" % reasonPhrase(400)]
    for name, value in errorHeaders(site, len(body)):
        if name.lower() not in _NOT_IN_CLEAR:
            head.append(b"%s: %s\r\n" % (name, value))
    head.append(b"Connection: close\r\n\r\n")
    return b"".join(head) + body, len(body)


class TLSSniffingProtocol(Protocol):
    """
    A connection to a TLS listener until its first bytes tell what the
    client speaks: TLS is handed the transport, plain HTTP gets a 400.
    """

    transport: Any
    _log = Logger()

    def __init__(self, tls: IProtocol, site: ListenerSite) -> None:
        self._tls = tls
        self._site = site
        self._state = _SNIFFING
        self._buffer = b""

    def connectionMade(self) -> None:
        # TLS (and the listener's channel, its header timer) start now, as
        # they would without the sniffer; they see no byte until handed over.
        self._tls.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _TLS:
            # Only where the transport could not be handed over.
            self._tls.dataReceived(data)
            return
        if state == _CLOSING:
            return
        scanned = max(0, len(self._buffer) - 2)
        buffer = self._buffer + data
        if state == _SNIFFING:
            kind = classifyFirstBytes(buffer)
            if kind == "need more":
                self._buffer = buffer
                return
            if kind == "tls":
                self._handOver(buffer)
                return
            if kind == "other":
                self._close()
                return
            self._state = _PLAIN
            scanned = 0
        if headComplete(buffer, scanned) or (
            len(buffer) > self._site.settings.max_header_bytes
        ):
            self._refuse(buffer)
        else:
            self._buffer = buffer

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._state = _CLOSING
        self._buffer = b""
        self._tls.connectionLost(reason)

    def _handOver(self, data: bytes) -> None:
        self._state = _TLS
        self._buffer = b""
        replaceProtocol(self.transport, self._tls)
        self._tls.dataReceived(data)

    def _close(self) -> None:
        self._state = _CLOSING
        self._buffer = b""
        self.transport.loseConnection()

    def _refuse(self, head: bytes) -> None:
        site = self._site
        response, sent = plainHTTPResponse(site)
        self.transport.write(response)
        peer = str(getattr(self.transport.getPeer(), "host", "-"))
        if site.accessLog is not None:
            site.accessLog.logRefusal(peer, requestLine(head), 400, sent)
        self._log.info("refused {peer}: 400 plain HTTP on a TLS listener", peer=peer)
        self._close()


class TLSSniffingFactory(Factory):
    """
    What a TLS listener listens with: C{tlsFactory} (a C{TLSMemoryBIOFactory}
    around the listener's front end) behind a L{TLSSniffingProtocol} per
    connection. C{site} is the listener's L{ListenerSite}: its response
    headers, head size limit and access log.
    """

    noisy = False

    def __init__(self, tlsFactory: Factory[Any], site: ListenerSite) -> None:
        self.tlsFactory = tlsFactory
        self.site = site

    def buildProtocol(self, addr: IAddress | None) -> TLSSniffingProtocol | None:
        tls = self.tlsFactory.buildProtocol(addr)
        if tls is None:
            return None
        protocol = TLSSniffingProtocol(tls, self.site)
        protocol.factory = self
        return protocol

    def startFactory(self) -> None:
        self.tlsFactory.doStart()

    def stopFactory(self) -> None:
        self.tlsFactory.doStop()

    def logPrefix(self) -> str:
        return str(self.tlsFactory.logPrefix())


__all__ = [
    "PLAIN_HTTP_BODY",
    "FirstBytes",
    "TLSSniffingFactory",
    "TLSSniffingProtocol",
    "classifyFirstBytes",
    "headComplete",
    "plainHTTPResponse",
    "requestLine",
]
