"""A fast HTTP/1.1 backend for the throughput benchmark.

A raw Twisted ``Protocol`` that answers every request with the same small ``200``
response. It parses no more than it must (the end of the header block, whether to
close, and a ``Content-Length`` body to skip) so that it is never the bottleneck.
It listens on 127.0.0.1 only (``--port``, any free one by default), writes the
port to ``--port-file`` once listening and stops by itself after ``--lifetime``
seconds.

Run as ``python -m bench.backend [--port N] [--port-file PATH] [--lifetime S]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Callable
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IAddress,
    IReactorTCP,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, ServerFactory

BODY = b"Hello, world!\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode("ascii") + b"\r\n"
    b"\r\n" + BODY
)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
STATS_REQUEST = b"GET /__bench_stats "
_MAX_HEAD = 64 * 1024


def _wantsClose(head: bytes) -> bool:
    """Whether the request whose header block is C{head} asks to close afterwards."""
    lowered = head.lower()
    if b"connection:" not in lowered:
        return head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0")
    for line in lowered.split(b"\r\n"):
        if line.startswith(b"connection:"):
            tokens = [t.strip() for t in line[len(b"connection:") :].split(b",")]
            if b"close" in tokens:
                return True
            if b"keep-alive" in tokens:
                return False
    return head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0")


def _contentLength(head: bytes) -> int | None:
    """The request's C{Content-Length}, 0 if absent, C{None} if unsupported."""
    lowered = head.lower()
    if b"transfer-encoding:" in lowered:
        return None
    index = lowered.find(b"\r\ncontent-length:")
    if index < 0:
        return 0
    start = index + len(b"\r\ncontent-length:")
    end = lowered.find(b"\r\n", start)
    value = lowered[start:] if end < 0 else lowered[start:end]
    try:
        return int(value.strip())
    except ValueError:
        return None


class Counters:
    """What the backend has served so far, for the benchmark to read back."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

    def response(self) -> bytes:
        """A response giving the counters as JSON."""
        body = json.dumps(
            {"connections": self.connections, "requests": self.requests}
        ).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


class FastHTTPProtocol(Protocol):
    """Answer each pipelined or keep-alive request with L{RESPONSE}.

    C{GET /__bench_stats} answers with the L{Counters} instead (and is not
    counted), so the benchmark can tell how many connections a proxy opened.
    """

    _transport: ITransport

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._buffer = b""
        self._skip = 0

    def makeConnection(self, transport: ITransport) -> None:
        """Keep a non-optional reference to the transport for the hot path."""
        self._transport = transport
        self._counters.connections += 1
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        """Answer every complete request in C{data}, keeping any partial one."""
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
            if not data:
                return
        buffer = self._buffer + data if self._buffer else data
        replies = 0
        while buffer:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            buffer = buffer[end + 4 :]
            length = _contentLength(head)
            if length is None:
                self._flush(replies)
                self._transport.write(BAD_REQUEST)
                self._transport.loseConnection()
                self._buffer = b""
                return
            if length:
                taken = min(length, len(buffer))
                buffer = buffer[taken:]
                self._skip = length - taken
            if head.startswith(STATS_REQUEST):
                self._flush(replies)
                replies = 0
                self._counters.connections -= 1
                self._transport.write(self._counters.response())
            else:
                replies += 1
            if _wantsClose(head):
                self._flush(replies)
                self._transport.loseConnection()
                self._buffer = b""
                return
            if self._skip:
                break
        self._flush(replies)
        if len(buffer) > _MAX_HEAD:
            self._transport.write(BAD_REQUEST)
            self._transport.loseConnection()
            buffer = b""
        self._buffer = buffer

    def _flush(self, replies: int) -> None:
        """Write C{replies} responses in one go."""
        self._counters.requests += replies
        if replies == 1:
            self._transport.write(RESPONSE)
        elif replies:
            self._transport.write(RESPONSE * replies)


class FastHTTPFactory(ServerFactory):
    """Build L{FastHTTPProtocol}s sharing one set of L{Counters}."""

    noisy = False

    def __init__(self) -> None:
        self.counters = Counters()

    def buildProtocol(self, addr: IAddress | None) -> FastHTTPProtocol:
        """A protocol counting into this factory's counters."""
        protocol = FastHTTPProtocol(self.counters)
        protocol.factory = self
        return protocol


def serve(
    tcp: IReactorTCP,
    clock: IReactorTime,
    stop: Callable[[], None],
    port: int,
    portFile: Path | None,
    lifetime: float,
) -> None:
    """Listen on 127.0.0.1:C{port}, write the port to C{portFile}, stop in time."""
    factory = FastHTTPFactory()
    listening = tcp.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    print(f"bench.backend listening on 127.0.0.1:{address.port}", flush=True)
    if portFile is not None:
        tmp = portFile.with_suffix(".tmp")
        tmp.write_text(str(address.port))
        tmp.replace(portFile)
    clock.callLater(lifetime, stop)


def main(argv: list[str] | None = None) -> int:
    """Run the backend until its lifetime is over or it is terminated."""
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--port-file", type=Path, help="where to write the port")
    parser.add_argument("--lifetime", type=float, default=600.0)
    args = parser.parse_args(argv)
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor  # noqa: TID251 (entry point)

    serve(reactor, reactor, reactor.stop, args.port, args.port_file, args.lifetime)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())


def checkAnswer(port: int) -> str | None:
    """
    Fetch C{/} from C{port} once (this backend, or a proxy before it):
    C{None} if this backend's body came back, else what did.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        return f"GET / failed: {e!r}"
    finally:
        connection.close()
    if response.status != 200 or body != BODY:
        return f"GET / answered {response.status} with {body[:100]!r}"
    return None
