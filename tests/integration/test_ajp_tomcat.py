"""
AJP13 bytes (C{twisted_proxy.core.ajp}) against a real Tomcat: what the
codec writes is what Tomcat's AJP connector reads, and what Tomcat answers
the codec reads, before any proxying is built on it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.support import theReactor
from tests.integration.tomcat import SECRET, Tomcat
from twisted_proxy.core.ajp import (
    CPING,
    END_OF_BODY,
    MAX_BODY_CHUNK,
    ForwardAttributes,
    bodyPacket,
    forwardRequest,
)
from twisted_proxy.core.ajpreply import (
    BodyChunk,
    CPong,
    EndResponse,
    GetBodyChunk,
    ResponseHead,
    ResponseReader,
)


@pytest.fixture(scope="module")
def tomcat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomcat]:
    server = Tomcat(tmp_path_factory.mktemp("tomcat"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def exchange(connection: socket.socket, request: bytes, body: bytes = b"") -> list[Any]:
    """Send a request (and its body, as Tomcat asks); the messages until the end."""
    reader = ResponseReader()
    connection.sendall(request)
    sent = 0
    if body:
        first = body[:MAX_BODY_CHUNK]
        connection.sendall(bodyPacket(first))
        sent = len(first)
    messages: list[Any] = []
    while not messages or not isinstance(messages[-1], EndResponse):
        data = connection.recv(65536)
        assert data, "Tomcat closed the connection"
        for message in reader.feed(data):
            if isinstance(message, GetBodyChunk):
                piece = body[sent : sent + min(message.size, MAX_BODY_CHUNK)]
                connection.sendall(bodyPacket(piece) if piece else END_OF_BODY)
                sent += len(piece)
            else:
                messages.append(message)
    return messages


@pytest_twisted.ensureDeferred
async def test_cpingAndARequestWithABody(tomcat: Tomcat) -> None:
    """
    CPING gets CPONG; a POST with 1 MiB (Tomcat's GET_BODY_CHUNK flow
    control) reaches the JSP with the client's address, TLS, query and the
    route in its session id; the connection is reused for a second request.
    """
    await tomcat.whenListening(theReactor())
    await deferToThread(_requestWithABody, tomcat)


def _requestWithABody(tomcat: Tomcat) -> None:
    with socket.create_connection(("127.0.0.1", tomcat.port), timeout=30) as c:
        c.sendall(CPING)
        assert ResponseReader().feed(c.recv(64)) == [CPong()]
        body = bytes(range(256)) * 4096
        request = forwardRequest(
            b"POST",
            b"HTTP/1.1",
            b"/index.jsp",
            b"192.0.2.9",
            b"www.example.test",
            443,
            True,
            [
                (b"Host", b"www.example.test"),
                (b"Content-Length", b"%d" % len(body)),
                (b"Content-Type", b"application/octet-stream"),
                (b"X-Custom", b"yes"),
            ],
            ForwardAttributes(
                queryString=b"a=1&b=2",
                secret=SECRET.encode(),
                route=b"node1",
                remotePort=50000,
            ),
        )
        head, *chunks, end = exchange(c, request, body)
        assert isinstance(head, ResponseHead)
        assert head.status == 200
        headers = dict(head.headers)
        assert headers[b"X-Remote-Addr"] == b"192.0.2.9"
        assert headers[b"X-Secure"] == b"true"
        assert headers[b"X-Body-Length"] == b"%d" % len(body)
        assert headers[b"X-Query"] == b"a=1&b=2"
        assert headers[b"X-Session"].endswith(b".node1")
        text = b"".join(chunk.data for chunk in chunks if isinstance(chunk, BodyChunk))
        assert text == b"method=POST uri=/index.jsp body=%d\n" % len(body)
        assert end == EndResponse(True)
        again = forwardRequest(
            b"GET", b"HTTP/1.1", b"/index.jsp", b"198.51.100.1", b"h", 80, False,
            [(b"Host", b"h")], ForwardAttributes(secret=SECRET.encode()),
        )  # fmt: skip
        head, *_, end = exchange(c, again)
        assert dict(head.headers)[b"X-Secure"] == b"false"
        assert end == EndResponse(True)


@pytest_twisted.ensureDeferred
async def test_aWrongSecretIs403(tomcat: Tomcat, tmp_path: Path) -> None:
    """Tomcat refuses a request without its connector's secret, and ends reuse."""
    await tomcat.whenListening(theReactor())
    await deferToThread(_wrongSecret, tomcat)


def _wrongSecret(tomcat: Tomcat) -> None:
    with socket.create_connection(("127.0.0.1", tomcat.port), timeout=30) as c:
        request = forwardRequest(
            b"GET", b"HTTP/1.1", b"/index.jsp", b"192.0.2.9", b"h", 80, False, [],
            ForwardAttributes(secret=b"wrong"),
        )  # fmt: skip
        head, *_, end = exchange(c, request)
        assert head.status == 403
        assert end == EndResponse(False)
