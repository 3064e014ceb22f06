"""
The requests of the proxy's own HTTP/1.1 server (L{twisted_proxy.frontends.http1}):
the part of twisted.web's C{IRequest} that the proxy's resources use, over a
header list kept in arrival order, writing straight to the channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.python.failure import Failure

from twisted_proxy.core.http11 import NO_BODY, RequestHead
from twisted_proxy.frontends.request import ProxiedRequest, reasonPhrase

__all__ = ["HeaderList", "ProxyRequest", "RequestChannel"]


class RequestChannel(Protocol):
    """What a L{ProxyRequest} asks of its connection (the HTTP/1.1 channel)."""

    transport: Any
    site: Any
    secure: bool
    persistent: bool

    def getHost(self) -> Any: ...

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, iovec: Sequence[bytes]) -> None: ...

    def registerProducer(self, producer: IPushProducer) -> None: ...

    def unregisterProducer(self) -> None: ...

    def requestDone(self, request: ProxyRequest) -> None: ...

    def keepsAlive(self) -> bool: ...


_NO_BODY_STATUSES = frozenset({204, 304})


class HeaderList:
    """
    Headers as a list of (name, value) in arrival order, with the lookups of
    twisted.web's C{Headers} that the proxy uses (names case-insensitive).
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[bytes, bytes]] | None = None) -> None:
        self._items = items if items is not None else []

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """Every header, in order, repeated ones separate."""
        return self._items

    def getRawHeaders(self, name: bytes, default: Any = None) -> Any:
        """The values of C{name}, or C{default}."""
        name = name.lower()
        values = [v for n, v in self._items if n.lower() == name]
        return values or default

    def hasHeader(self, name: bytes) -> bool:
        """Whether C{name} is present."""
        name = name.lower()
        return any(n.lower() == name for n, _ in self._items)

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """(name, values) per name, as twisted.web's C{Headers} yields them."""
        grouped: dict[bytes, tuple[bytes, list[bytes]]] = {}
        for n, v in self._items:
            entry = grouped.get(n.lower())
            if entry is None:
                grouped[n.lower()] = (n, [v])
            else:
                entry[1].append(v)
        return iter(grouped.values())

    def addRawHeader(self, name: bytes | str, value: bytes | str) -> None:
        """Add one header."""
        self._items.append((_bytes(name), _bytes(value)))

    def extend(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Add C{pairs} (bytes names and values), in order."""
        self._items.extend(pairs)

    def setRawHeaders(self, name: bytes | str, values: Sequence[bytes | str]) -> None:
        """Replace every C{name} header by C{values}."""
        self.removeHeader(name)
        for value in values:
            self.addRawHeader(name, value)

    def removeHeader(self, name: bytes | str) -> None:
        """Remove every C{name} header."""
        lower = _bytes(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != lower]


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class ProxyRequest(ProxiedRequest):
    """One request on an HTTP/1.1 channel."""

    def __init__(self, channel: RequestChannel, head: RequestHead) -> None:
        self.channel = channel
        self.method = head.method
        self.uri = head.target
        self.clientproto = head.version
        self.path = head.target.split(b"?", 1)[0]
        self.args: dict[bytes, list[bytes]] = {}
        self.prepath: list[bytes] = []
        self.requestHeaders = HeaderList(head.headers)
        self.responseHeaders = HeaderList()
        self.code = 200
        self.code_message = b"OK"
        self.startedWriting = False
        self.finished = False
        self.chunked = False
        self.sentLength = 0
        self.producer: IPushProducer | None = None
        self._noBody = False
        self._initProxied(channel.site.reactor.seconds(), channel.site.maxBodyBytes)
        self.headBytes = head.headBytes
        self.bodyComplete = head.length == NO_BODY
        self.requestLine = head.requestLine

    # -- what resources and the access log ask of a request --

    def getClientAddress(self) -> IAddress:
        address: IAddress = self.channel.transport.getPeer()
        return address

    def getHost(self) -> IAddress:
        host: IAddress = self.channel.getHost()
        return host

    def isSecure(self) -> bool:
        return bool(self.channel.secure)

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def sendContinue(self) -> None:
        if self.expectContinue and not self.startedWriting and not self.finished:
            self.expectContinue = False
            self.channel.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code
        self.code_message = message or reasonPhrase(code)

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.producer = producer
        self.channel.registerProducer(producer)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.channel.unregisterProducer()

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("write() after finish()")
        if self.clientGone:
            return
        if not self.startedWriting:
            self._writeHead()
        if self._noBody or not data:
            return
        self.sentLength += len(data)
        if self.chunked:
            self.channel.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.channel.write(data)

    def spliceTarget(self) -> tuple[Any, Any, bool] | None:
        """
        The client's socket, when the rest of the body may go to it as it
        comes from the backend (see L{twisted_proxy.upstream.splice}).
        """
        if (
            self.chunked
            or self._noBody
            or not self.startedWriting
            or self.finished
            or self.clientGone
        ):
            return None
        target: tuple[Any, Any, bool] | None = self.channel.spliceTarget()
        return target

    def finish(self) -> None:
        if self.finished or self.clientGone:
            return
        if not self.startedWriting:
            self.write(b"")
        if self.chunked:
            self.channel.write(b"0\r\n\r\n")
        self.finished = True
        self.channel.site.log(self)
        self.channel.requestDone(self)

    def _writeHead(self) -> None:
        self.startedWriting = True
        code = self.code
        channel = self.channel
        headers = self.responseHeaders
        self._noBody = (
            self.method == b"HEAD" or code in _NO_BODY_STATUSES or 100 <= code < 200
        )
        if not self._noBody and not headers.hasHeader(b"content-length"):
            if self.clientproto == b"HTTP/1.1":
                headers.addRawHeader(b"Transfer-Encoding", b"chunked")
                self.chunked = True
            else:
                # An HTTP/1.0 client reads to the end of the connection.
                channel.persistent = False
        if not channel.persistent:
            headers.removeHeader(b"connection")
            headers.addRawHeader(b"Connection", b"close")
        elif self.clientproto == b"HTTP/1.0":
            # It asked for keep-alive and the length is known: say it is kept.
            headers.removeHeader(b"connection")
            headers.addRawHeader(b"Connection", b"keep-alive")
        channel.write(
            b"%s %d %s\r\n%s\r\n"
            % (
                self.clientproto,
                code,
                self.code_message,
                b"".join([b"%s: %s\r\n" % pair for pair in headers.pairs()]),
            )
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        """The client's connection is gone."""
        self._lostClient()

    def keepsConnection(self) -> bool:
        return bool(self.channel.keepsAlive())

    def _logUnfinished(self) -> None:
        self.channel.site.log(self)
