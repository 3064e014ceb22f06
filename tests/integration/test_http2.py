"""
HTTP/2 to clients end to end on 127.0.0.1: TLS listeners whose C{alpn}
lists h2, curl --http2 and an C{h2} client over Twisted's TLS in front,
HTTP/1.1 backends behind.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import pytest_twisted
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from twisted.internet import defer, threads
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from tests.h2frames import takeGoAways
from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    RecordingBackend,
    Stack,
    Trickle,
    answerEach,
    curl,
    theReactor,
)
from tests.tlsfiles import TestCA
from twisted_proxy.frontends.http2 import STREAM_BUFFER, H2ProxyConnection

LISTENER = """
[[listen]]
endpoint = "tcp:{listen}:interface=127.0.0.1"
[listen.tls]
certificate = "{certificate}"
key = "{key}"
hsts = 300
{alpn}
"""

ROUTES = """
[[route]]
path = "/app/"
to = "http://127.0.0.1:{port}/"
[[route]]
path = "/down/"
to = "http://127.0.0.1:{closed}/"
[[route]]
path = "/admin/"
to = "http://127.0.0.1:{port}/"
allow = ["192.0.2.0/24"]
"""

H2 = 'alpn = ["h2", "http/1.1"]'


@dataclass
class Front:
    """A proxy with an h2 TLS listener, the CA its certificate chains to."""

    proxy: Any
    ca: TestCA
    port: int

    def connections(self) -> list[H2ProxyConnection]:
        """The proxy's open HTTP/2 connections."""
        return [
            c for c in self.proxy.sites[0].channels if isinstance(c, H2ProxyConnection)
        ]

    def curlArgs(self, *args: str) -> tuple[str, ...]:
        """curl options for this listener over HTTP/2, on loopback only."""
        return (
            "--http2",
            "--cacert",
            str(self.ca.certificate),
            "--resolve",
            f"localhost:{self.port}:127.0.0.1",
            *args,
        )

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"


def freePort() -> int:
    """A port nothing listens on (for a backend that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def front(
    stack: Stack, folder: Path, port: int, *listeners: str, proxy: str = ""
) -> Front:
    """A proxy with a listener per C{listeners} (alpn lines), routes to C{port}."""
    ca = TestCA(folder)
    leaf = ca.issue("localhost", "127.0.0.1")
    if "access_log" not in proxy:
        proxy += "\naccess_log = false"
    text = f"[proxy]\n{proxy}\n"
    for index, alpn in enumerate(listeners or (H2,)):
        listen = "0" if index == 0 else str(freePort())
        text += LISTENER.replace("{alpn}", alpn).replace("{listen}", listen)
    service = await stack.proxy(
        text + ROUTES,
        configDir=str(folder),
        certificate=leaf.certificate,
        key=leaf.key,
        port=port,
        closed=freePort(),
    )
    return Front(service, ca, service.port)


# -- an h2 client over Twisted's TLS ----------------------------------------------


class H2Client(Protocol):
    """
    An HTTP/2 client: h2's state machine on a TLS connection, every event
    kept. GOAWAY frames are noted apart (h2's client refuses the frames of
    streams still open after one, which a graceful server goes on sending).
    """

    def __init__(self, window: int | None = None) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.window = window
        # Every event but DATA (kept per stream, as the response bodies).
        self.events: list[Any] = []
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.goaways: list[tuple[int, int]] = []
        # Open the windows again for what arrives (a client reading promptly).
        self.acknowledge = True
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._frames = b""
        self._waiters: list[tuple[Callable[[], bool], defer.Deferred[None]]] = []
        self._uploads: dict[int, tuple[bytes, int]] = {}

    def connectionMade(self) -> None:
        self.conn.initiate_connection()
        if self.window is not None:
            self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: self.window})
            self.conn.increment_flow_control_window(self.window - 65535)
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        for event in self.conn.receive_data(self._withoutGoAways(data)):
            if isinstance(event, h2.events.DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                if self.acknowledge:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                continue
            self.events.append(event)
            if isinstance(event, h2.events.ResponseReceived):
                self.heads[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            if isinstance(
                event, h2.events.WindowUpdated | h2.events.SettingsAcknowledged
            ):
                self._sendUploads()
        self.flush()
        self._check()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)

    def _withoutGoAways(self, data: bytes) -> bytes:
        passed, self._frames, found = takeGoAways(self._frames + data)
        self.goaways.extend(found)
        return passed

    # -- what a test does with it --

    def request(
        self,
        streamID: int,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        end: bool = True,
    ) -> None:
        self.conn.send_headers(
            streamID,
            [
                (b":method", method),
                (b":path", path),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                *headers,
            ],
            end_stream=end,
        )
        self.flush()

    def upload(self, streamID: int, body: bytes) -> None:
        """Send C{body} (then end the stream) as fast as the windows allow."""
        self._uploads[streamID] = (body, 0)
        self._sendUploads()
        self.flush()

    def uploaded(self, streamID: int) -> int:
        """How much of C{streamID}'s upload has been sent."""
        return self._uploads[streamID][1]

    def _sendUploads(self) -> None:
        for streamID, (body, sent) in list(self._uploads.items()):
            while sent < len(body):
                room = min(
                    self.conn.local_flow_control_window(streamID),
                    self.conn.max_outbound_frame_size,
                    len(body) - sent,
                )
                if room <= 0:
                    break
                end = sent + room == len(body)
                self.conn.send_data(streamID, body[sent : sent + room], end_stream=end)
                sent += room
            self._uploads[streamID] = (body, sent)

    def blocked(self, streamID: int) -> bool:
        """Whether an upload on C{streamID} waits for window with data left."""
        body, sent = self._uploads[streamID]
        return sent < len(body) and self.conn.local_flow_control_window(streamID) <= 0

    def response(self, streamID: int) -> tuple[dict[bytes, bytes], bytes, bool]:
        """(headers, body, ended) of C{streamID}'s response so far."""
        body = bytes(self.bodies.get(streamID, b""))
        return self.heads.get(streamID, {}), body, streamID in self.ended

    def received(self, streamID: int) -> int:
        """Response body bytes received on C{streamID}."""
        return len(self.bodies.get(streamID, b""))

    def waitFor(self, test: Callable[[], bool]) -> defer.Deferred[None]:
        """Fires once C{test()} holds (checked as frames arrive)."""
        if test():
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((test, d))
        return d

    def _check(self) -> None:
        still = []
        for test, d in self._waiters:
            if test():
                d.callback(None)
            else:
                still.append((test, d))
        self._waiters = still


@pytest_twisted.async_yield_fixture
async def h2clients() -> AsyncIterator[Callable[..., Any]]:
    """Opens h2 clients to a listener; all are closed after the test."""
    opened: list[H2Client] = []

    async def connect(site: Front, window: int | None = None) -> H2Client:
        reactor = theReactor()
        options = optionsForClientTLS(
            "localhost",
            trustRoot=Certificate.loadPEM(site.ca.certificate.read_bytes()),
            acceptableProtocols=[b"h2"],
        )
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(reactor, "127.0.0.1", site.port)
        )
        client = H2Client(window)
        await connectProtocol(endpoint, client)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        if not client.lost.called:
            client.transport.abortConnection()  # type: ignore[union-attr]
        await client.lost


# -- what curl sees ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_curlGetsTheBackendOverHTTP2(stack: Stack, tmp_path: Path) -> None:
    """
    curl --http2 gets the HTTP/1.1 backend's body with the listener's response
    headers; the backend is told https and gets its own Host.
    """
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    out, err, code = await curl(
        *site.curlArgs("-i", "-w", "\n%{http_version}", site.url("/app/hello?x=1"))
    )
    assert code == 0, err
    head, body = out.split(b"\r\n\r\n", 1)
    assert body == b"backend saw GET /hello?x=1\n2"
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/2 200 "
    assert b"strict-transport-security: max-age=300" in lines
    assert b"server: twisted-proxy" in lines
    assert b"x-backend: backend" in lines
    [seen] = backend.requests
    assert seen.header(b"x-forwarded-proto") == b"https"
    assert seen.header(b"x-forwarded-port") == str(site.port).encode()
    assert seen.header(b"x-forwarded-host") == f"localhost:{site.port}".encode()
    assert seen.header(b"host") == b"127.0.0.1:%d" % port


@pytest_twisted.ensureDeferred
async def test_curlPostsABodyOverHTTP2(stack: Stack, tmp_path: Path) -> None:
    """A 3 MiB POST over HTTP/2 reaches the backend whole."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    payload = bytes(range(256)) * 4096 * 3
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    out, err, code = await curl(
        *site.curlArgs(
            "--data-binary",
            f"@{path}",
            "-w",
            "\n%{http_version}",
            site.url("/app/upload"),
        )
    )
    assert code == 0, err
    assert out == b"backend saw POST /upload\n2"
    assert backend.requests[0].body == payload


@pytest_twisted.ensureDeferred
async def test_errorPagesOverHTTP2(stack: Stack, tmp_path: Path) -> None:
    """No route is 404, a backend down is 502: plain pages with the listener's HSTS."""
    site = await front(stack, tmp_path, freePort())
    for path, status, text in (
        ("/nothing", b"404", b"no route for this request\n"),
        ("/down/x", b"502", b"backend unavailable\n"),
    ):
        out, err, code = await curl(*site.curlArgs("-i", site.url(path)))
        assert code == 0, err
        head, body = out.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/2 " + status + b" "
        assert b"strict-transport-security: max-age=300" in lines
        assert b"server: twisted-proxy" in lines
        assert body == text


@pytest_twisted.ensureDeferred
async def test_backendConnectionHeadersDoNotBreakTheStream(
    stack: Stack, tmp_path: Path
) -> None:
    """A chunked keep-alive answer with Connection headers arrives whole over h2."""

    def onData(conn: Any) -> None:
        if conn.received.endswith(b"\r\n\r\n"):
            conn.transport.write(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\n"
                b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                b"X-Private: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )

    port = await stack.rawBackend(RawBackend(onData))
    site = await front(stack, tmp_path, port)
    out, err, code = await curl(*site.curlArgs("-i", site.url("/app/")))
    assert code == 0, err
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/2 200")
    assert body == b"hello world"
    for name in (b"connection", b"keep-alive", b"proxy-connection", b"x-private"):
        assert name + b":" not in head.lower()


# -- ALPN -----------------------------------------------------------------------


def _alpn(port: int, ca: Path) -> str | None:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.selected_alpn_protocol()


@pytest_twisted.ensureDeferred
async def test_h2OnlyWhereTheListenerAsks(stack: Stack, tmp_path: Path) -> None:
    """A client offering h2 gets it where the listener lists h2, else http/1.1."""
    site = await front(stack, tmp_path, freePort(), H2, "")
    h2Port, plainPort = (p.getHost().port for p in site.proxy.ports)
    ca = site.ca.certificate
    assert await threads.deferToThread(_alpn, h2Port, ca) == "h2"
    assert await threads.deferToThread(_alpn, plainPort, ca) == "http/1.1"
    out, err, code = await curl(
        "--http2",
        "--cacert",
        str(ca),
        "--resolve",
        f"localhost:{plainPort}:127.0.0.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        f"https://localhost:{plainPort}/nothing",
    )
    assert (code, out) == (0, b"1.1"), err


# -- streaming and flow control ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_uploadReachesBackendAsItArrives(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """An h2 body of unknown length goes on to the backend chunked, piece by piece."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    client.request(1, b"POST", b"/app/up", end=False)
    client.conn.send_data(1, b"first-")
    client.flush()
    conn = await raw.waitFor(lambda p: p.received.endswith(b"6\r\nfirst-\r\n"))
    assert conn.received.startswith(b"POST /up HTTP/1.1\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in conn.received
    client.conn.send_data(1, b"second", end_stream=True)
    client.flush()
    await raw.waitFor(lambda p: p.received.endswith(b"6\r\nsecond\r\n0\r\n\r\n"))
    conn.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")  # type: ignore[union-attr]
    await client.waitFor(lambda: 1 in client.ended)
    headers, body, _ = client.response(1)
    assert (headers[b":status"], body) == (b"201", b"ok")


def mostQueued(connection: H2ProxyConnection) -> list[int]:
    """The most response bytes C{connection} has held, updated as it queues."""
    most = [0]
    queue = connection.writeDataToStream

    def queueAndMeasure(streamID: int, data: bytes) -> None:
        queue(streamID, data)
        most[0] = max(most[0], connection.queuedBytes())

    connection.writeDataToStream = queueAndMeasure  # type: ignore[method-assign]
    return most


@pytest_twisted.ensureDeferred
async def test_clientNotReadingPausesBackend(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """
    A client with a 2 GiB window that stops reading: the backend is paused,
    the proxy never holding more than STREAM_BUFFER (plus one read) of the
    response; then the whole body arrives.
    """
    total = 32 * 1024 * 1024
    producers: list[Trickle] = []

    def handler(request: Any) -> object:
        request.setHeader(b"content-length", b"%d" % total)
        producers.append(Trickle(request, total))
        return NOT_DONE_YET

    port = await stack.backend(RecordingBackend(handler=handler))
    site = await front(stack, tmp_path, port)
    client = await h2clients(site, window=2**31 - 1)
    await client.waitFor(
        lambda: any(
            isinstance(e, h2.events.SettingsAcknowledged) for e in client.events
        )
    )
    [connection] = site.connections()
    most = mostQueued(connection)
    client.request(1, b"GET", b"/app/big")
    await client.waitFor(lambda: 1 in client.heads)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    sentWhenPaused = await producers[0].pausedOnce
    # Socket buffers hold some megabytes at most, never the body.
    assert 0 < sentWhenPaused < total // 4
    assert most[0] <= STREAM_BUFFER + 65536
    client.transport.resumeProducing()  # type: ignore[union-attr]
    await client.waitFor(lambda: 1 in client.ended)
    assert client.received(1) == total
    assert most[0] <= STREAM_BUFFER + 65536


class SinkProtocol(Protocol):
    """A backend connection that keeps what it receives (in linear time)."""

    def connectionMade(self) -> None:
        self.received = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.factory.check()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.factory.check()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class Sink(RawBackend):
    """A hand-driven backend for large uploads."""

    protocol = SinkProtocol  # type: ignore[assignment]

    def check(self) -> None:
        self._fire("data", self.connections[-1])


@pytest_twisted.ensureDeferred
async def test_slowBackendPausesUpload(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """
    A backend that stops reading: the proxy pauses the stream and withholds
    WINDOW_UPDATE, so the client stops sending; once the backend reads, the
    whole body arrives.
    """
    total = 32 * 1024 * 1024
    sink = Sink()
    port = await stack.rawBackend(sink)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    client.request(
        1, b"PUT", b"/app/up", [(b"content-length", b"%d" % total)], end=False
    )
    conn = await sink.waitFor(lambda p: b"\r\n\r\n" in p.received)
    conn.transport.pauseProducing()  # type: ignore[union-attr]
    [connection] = site.connections()
    stream = connection.streams[1]
    paused: defer.Deferred[None] = defer.Deferred()
    pause = stream.pauseProducing

    def pauseAndTell() -> None:
        pause()
        if not paused.called:
            paused.callback(None)

    stream.pauseProducing = pauseAndTell
    client.upload(1, b"u" * total)
    await paused
    await client.waitFor(lambda: client.blocked(1))
    # Stopped by the window long before the end: what is in flight sits in
    # socket buffers and, in the proxy, within one stream window.
    assert client.uploaded(1) < total // 4
    assert not stream.producing
    conn.transport.resumeProducing()  # type: ignore[union-attr]
    head = conn.received.index(b"\r\n\r\n") + 4
    await sink.waitFor(lambda p: len(p.received) >= head + total)
    assert conn.received[head:] == b"u" * total
    conn.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # type: ignore[union-attr]
    await client.waitFor(lambda: 1 in client.ended)
    assert client.response(1)[0][b":status"] == b"204"


# -- graceful stop -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stopFinishesTheOpenStream(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """
    Stopping the service with an h2 stream open: GOAWAY at once, new
    connections refused, the stream's response still arrives, then the close.
    """
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    client.request(1, b"GET", b"/app/slow")
    conn = await raw.waitFor(lambda p: p.received.endswith(b"\r\n\r\n"))
    done: list[object] = []

    def record(result: object) -> object:
        done.append(result)
        return result

    stopped = site.proxy.stopService().addBoth(record)
    await client.waitFor(lambda: bool(client.goaways))
    assert client.goaways == [(1, ErrorCodes.NO_ERROR)]
    with pytest.raises(ConnectionRefusedError):
        await h2clients(site)
    assert done == []
    conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")  # type: ignore[union-attr]
    await client.lost
    assert client.response(1)[1:] == (b"done", True)
    assert client.goaways == [(1, ErrorCodes.NO_ERROR)] * 2
    await stopped
    assert len(done) == 1


@pytest_twisted.ensureDeferred
async def test_curlSeesItsStreamFinishedAcrossAStop(
    stack: Stack, tmp_path: Path
) -> None:
    """curl --http2 waiting on a slow backend gets its 200 though the proxy stops."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    site = await front(stack, tmp_path, port)
    fetched = defer.ensureDeferred(
        curl(*site.curlArgs("-w", "\n%{http_version}", site.url("/app/slow")))
    )
    conn = await raw.waitFor(lambda p: p.received.endswith(b"\r\n\r\n"))
    stopped = site.proxy.stopService()
    conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")  # type: ignore[union-attr]
    out, err, code = await fetched
    assert (code, out) == (0, b"done\n2"), err
    await stopped


@pytest_twisted.ensureDeferred
async def test_curlRefusedUploadGetsItsAnswer(stack: Stack, tmp_path: Path) -> None:
    """A declared body over max_body_bytes: curl gets the 413, not a broken stream."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port, proxy="max_body_bytes = 1000")
    path = tmp_path / "payload.bin"
    path.write_bytes(b"p" * 3 * 1024 * 1024)
    out, err, code = await curl(
        *site.curlArgs(
            "--data-binary", f"@{path}", "-w", "\n%{http_code}", site.url("/app/up")
        )
    )
    assert (code, out) == (0, b"request body too large\n\n413"), err
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_accessLogSaysHTTP2(stack: Stack, tmp_path: Path) -> None:
    """An h2 request's access-log line names HTTP/2, its status and body size."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    log = tmp_path / "access.log"
    site = await front(stack, tmp_path, port, proxy=f'access_log = "{log}"')
    _, err, code = await curl(*site.curlArgs("-o", "/dev/null", site.url("/app/x")))
    assert code == 0, err
    await site.proxy.stopService()
    [line] = log.read_text().splitlines()
    assert '"GET /app/x HTTP/2" 200 18 ' in line


def _partialOrWhole(proto: RawServerProtocol, index: int, head: bytes) -> None:
    """Ten bytes of a 1000-byte body for /partial (then silence), else a whole one."""
    if head.startswith(b"GET /partial "):
        body = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"
    elif head.startswith(b"GET /whole "):
        body = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole"
    else:
        return
    proto.transport.write(body)  # type: ignore[union-attr]


# The access log's status, body bytes, %X and %{PROXY_END_REASON}e (braces
# doubled: the text is a template).
_ENDING = 'access_log_format = "%H %>s %b %X %{{PROXY_END_REASON}}e"'


@pytest_twisted.ensureDeferred
async def test_accessLogOfAStreamCutShort(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """
    A stream whose backend dies mid-body is logged with the status and ten
    body bytes sent, X and backend-closed; a whole one on the same
    connection with + and complete.
    """
    raw = RawBackend(answerEach(_partialOrWhole))
    port = await stack.rawBackend(raw)
    log = tmp_path / "access.log"
    site = await front(stack, tmp_path, port, proxy=f'access_log = "{log}"\n{_ENDING}')
    client = await h2clients(site)
    client.request(1, b"GET", b"/app/partial")
    await client.waitFor(lambda: client.received(1) == 10)
    raw.connections[0].transport.abortConnection()  # type: ignore[union-attr]
    await client.waitFor(
        lambda: any(isinstance(e, h2.events.StreamReset) for e in client.events)
    )
    client.request(3, b"GET", b"/app/whole")
    await client.waitFor(lambda: 3 in client.ended)
    await site.proxy.stopService()
    assert log.read_text().splitlines() == [
        "HTTP/2 200 10 X backend-closed",
        "HTTP/2 200 5 + complete",
    ]


@pytest_twisted.ensureDeferred
async def test_accessLogOfStreamsCutByTheGracePeriod(
    stack: Stack, tmp_path: Path, h2clients: Any, logged: list[str]
) -> None:
    """
    Streams still open when shutdown_grace runs out are logged as cut by it
    (one had its head and ten bytes, one nothing), not as the client leaving.
    """
    raw = RawBackend(answerEach(_partialOrWhole))
    port = await stack.rawBackend(raw)
    log = tmp_path / "access.log"
    proxy = f'access_log = "{log}"\n{_ENDING}\nshutdown_grace = 0.2'
    site = await front(stack, tmp_path, port, proxy=proxy)
    client = await h2clients(site)
    client.request(1, b"GET", b"/app/partial")
    await client.waitFor(lambda: client.received(1) == 10)
    client.request(3, b"GET", b"/app/never")
    await raw.waitFor(lambda p: b"GET /never " in p.received)
    await site.proxy.stopService()
    await client.lost
    assert sorted(log.read_text().splitlines()) == [
        "HTTP/2 - - X shutdown-grace",
        "HTTP/2 200 10 X shutdown-grace",
    ]
    assert not any("client went away" in line for line in logged)


# -- the same edge rules as HTTP/1.1 ------------------------------------------------


async def _answered(client: H2Client, streamID: int) -> tuple[bytes, bytes]:
    """(status, body) of C{streamID} once its response has ended."""
    await client.waitFor(lambda: streamID in client.ended)
    headers, body, _ = client.response(streamID)
    return headers[b":status"], body


@pytest_twisted.ensureDeferred
async def test_pathsNormalisedBeforeAccessLists(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """
    Over HTTP/2 as over HTTP/1.1, every spelling of a path under /admin/
    meets its access list; the backend sees the normalised path.
    """
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    spellings = [b"/admin/x", b"//admin/x", b"/app/../admin/x", b"/%61dmin;p/x"]
    for index, path in enumerate(spellings):
        client.request(1 + 2 * index, b"GET", path)
    for index in range(len(spellings)):
        assert await _answered(client, 1 + 2 * index) == (b"403", b"forbidden\n")
    client.request(11, b"GET", b"/app//a/./b/../%7ec?q=%7e")
    assert (await _answered(client, 11))[0] == b"200"
    assert [r.uri for r in backend.requests] == [b"/a/~c?q=%7e"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (b"/app/a b", b"a control character or space in the request target\n"),
        (b"/app/a\x01", b"a control character or space in the request target\n"),
        (b"/app/a\x7f", b"a control character or space in the request target\n"),
        (b"/../etc/passwd", b"the path climbs above the root\n"),
        (b"/app/%00", b"%00 in the request path\n"),
        (b"/app/#x", b"a fragment in the request target\n"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_badPathRefused(
    stack: Stack, tmp_path: Path, h2clients: Any, path: bytes, message: bytes
) -> None:
    """A :path with a space or control byte, or one that cannot be normalised: 400."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    client.conn.config.validate_outbound_headers = False
    client.request(1, b"GET", path)
    assert await _answered(client, 1) == (b"400", message)
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_badAuthorityRefused(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """An :authority that is not host[:port] is a 400, as a bad Host is."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    client.conn.config.validate_outbound_headers = False
    client.conn.send_headers(
        1,
        [
            (b":method", b"GET"),
            (b":path", b"/app/"),
            (b":scheme", b"https"),
            (b":authority", b'evil.com/"><x'),
        ],
        end_stream=True,
    )
    client.flush()
    assert await _answered(client, 1) == (b"400", b"malformed Host header\n")
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_optionsAsteriskAndTrace(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """OPTIONS * is answered by the proxy; TRACE is refused with 405."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    client.request(1, b"OPTIONS", b"*")
    client.request(3, b"TRACE", b"/app/")
    assert (await _answered(client, 1))[0] == b"200"
    assert client.response(1)[0][b"allow"] == (
        b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"
    )
    assert (await _answered(client, 3))[0] == b"405"
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_continueOnlyOnceLetThrough(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """
    An upload with Expect: 100-continue gets no 100 on a route that refuses
    it (403 alone), and a 100 before its answer on one that takes it.
    """
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port)
    client = await h2clients(site)
    expect = [(b"expect", b"100-continue")]
    client.request(1, b"POST", b"/admin/up", expect, end=False)
    client.request(3, b"POST", b"/app/up", expect, end=False)

    def informational() -> list[tuple[int, bytes]]:
        return [
            (e.stream_id, dict(e.headers)[b":status"])
            for e in client.events
            if isinstance(e, h2.events.InformationalResponseReceived)
        ]

    await client.waitFor(lambda: 1 in client.ended and bool(informational()))
    assert client.response(1)[0][b":status"] == b"403"
    assert informational() == [(3, b"100")]
    assert 3 not in client.heads
    client.conn.send_data(3, b"body", end_stream=True)
    client.flush()
    assert (await _answered(client, 3))[0] == b"200"
    assert [(r.uri, r.body) for r in backend.requests] == [(b"/up", b"body")]


@pytest_twisted.ensureDeferred
async def test_tooManyHeaderFields(
    stack: Stack, tmp_path: Path, h2clients: Any
) -> None:
    """More header fields than max_headers is a 400 over HTTP/2 too."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    site = await front(stack, tmp_path, port, proxy="max_headers = 10")
    client = await h2clients(site)
    client.request(1, b"GET", b"/app/", [(b"x-n", b"%d" % i) for i in range(10)])
    client.request(3, b"GET", b"/app/", [(b"x-n", b"%d" % i) for i in range(9)])
    assert await _answered(client, 1) == (b"400", b"more than 10 header fields\n")
    assert (await _answered(client, 3))[0] == b"200"
    assert len(backend.requests) == 1
