"""
Plain HTTP sent to a TLS listener, end to end on 127.0.0.1: a raw TCP client
and curl speaking HTTP in clear get a 400 that says so (as nginx answers),
while HTTPS and HTTP/2 clients of the same listener are served as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted

from tests.integration.support import (
    RecordingBackend,
    Stack,
    curl,
    parseReplies,
    request,
)
from tests.tlsfiles import TestCA
from twisted_proxy.frontends.tlssniff import PLAIN_HTTP_BODY

CONFIG = """
[proxy]
access_log = {log}
access_log_format = '%h "%r" %>s %b'
shutdown_grace = 30.0
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[listen.tls]
certificate = "proxy.pem"
key = "proxy.key"
{alpn}
[[route]]
path = "/"
to = "http://127.0.0.1:{backendPort}/"
"""

H2 = 'alpn = ["h2", "http/1.1"]'


@dataclass
class Listening:
    """A proxy with one TLS listener, the CA it chains to, the backend behind."""

    proxy: Any
    ca: TestCA
    backend: RecordingBackend

    @property
    def port(self) -> int:
        return int(self.proxy.port)

    def httpsArgs(self, path: str) -> tuple[str, ...]:
        """curl options for an https:// request to this listener."""
        return (
            "--cacert",
            str(self.ca.certificate),
            "--resolve",
            f"localhost:{self.port}:127.0.0.1",
            f"https://localhost:{self.port}{path}",
        )


async def tlsListener(
    stack: Stack, folder: Path, alpn: str = "", log: Path | None = None
) -> Listening:
    ca = TestCA(folder)
    ca.issue("localhost", "127.0.0.1", stem="proxy")
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    proxy = await stack.proxy(
        CONFIG,
        configDir=str(folder),
        backendPort=backendPort,
        alpn=alpn,
        log=json.dumps(str(log)) if log is not None else "false",
    )
    return Listening(proxy, ca, backend)


async def plainRequest(stack: Stack, port: int, data: bytes) -> bytes:
    """Send C{data} in clear on a new connection; what came back before EOF."""
    client = await stack.connect(port)
    client.transport.write(data)  # type: ignore[union-attr]
    await client.lost.addTimeout(10, stack.reactor)
    return client.received


@pytest_twisted.ensureDeferred
async def test_plainRequestGets400ThenEOF(stack: Stack, tmp_path: Path) -> None:
    """A plain request gets the 400 with its message and Connection: close, then EOF."""
    site = await tlsListener(stack, tmp_path)
    received = await plainRequest(
        stack, site.port, request(b"GET", b"/x", host=b"localhost")
    )
    [reply] = parseReplies(received, closed=True)
    assert (reply.version, reply.status) == (b"HTTP/1.1", 400)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert reply.header(b"connection") == b"close"
    assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
    assert reply.header(b"content-length") == b"%d" % len(PLAIN_HTTP_BODY)
    assert reply.header(b"server") == b"twisted-proxy"
    assert reply.header(b"date") is not None
    assert (
        reply.body
        == b"the plain HTTP request was sent to the HTTPS port; use https://\n"
    )
    assert received.endswith(reply.body)
    assert site.backend.requests == []


@pytest_twisted.ensureDeferred
async def test_curlPlainHTTPPrintsTheMessage(stack: Stack, tmp_path: Path) -> None:
    """curl http:// to the TLS port prints the 400's message."""
    site = await tlsListener(stack, tmp_path)
    out, err, code = await curl("-w", "%{http_code}", f"http://127.0.0.1:{site.port}/")
    assert (code, out) == (0, PLAIN_HTTP_BODY + b"400"), err
    assert site.backend.requests == []


@pytest_twisted.ensureDeferred
async def test_httpsStillServed(stack: Stack, tmp_path: Path) -> None:
    """An https client of the same listener is proxied, before and after a plain one."""
    site = await tlsListener(stack, tmp_path)
    out, err, code = await curl(*site.httpsArgs("/before"))
    assert (code, out) == (0, b"backend saw GET /before"), err
    received = await plainRequest(stack, site.port, request(b"GET", b"/plain"))
    assert received.startswith(b"HTTP/1.1 400 ")
    out, err, code = await curl(*site.httpsArgs("/after"))
    assert (code, out) == (0, b"backend saw GET /after"), err
    assert [r.uri for r in site.backend.requests] == [b"/before", b"/after"]


@pytest_twisted.ensureDeferred
async def test_h2ListenerAnswersPlainHTTPToo(stack: Stack, tmp_path: Path) -> None:
    """A listener offering h2 refuses plain HTTP with the 400 and still speaks h2."""
    site = await tlsListener(stack, tmp_path, alpn=H2)
    received = await plainRequest(stack, site.port, request(b"GET", b"/plain"))
    [reply] = parseReplies(received, closed=True)
    assert (reply.status, reply.body) == (400, PLAIN_HTTP_BODY)
    out, err, code = await curl(
        "--http2", "-w", "\n%{http_version}", *site.httpsArgs("/h2")
    )
    assert (code, out) == (0, b"backend saw GET /h2\n2"), err
    assert [r.uri for r in site.backend.requests] == [b"/h2"]


@pytest_twisted.ensureDeferred
async def test_refusalLogged(stack: Stack, tmp_path: Path, logged: list[str]) -> None:
    """The refusal has an access-log line with status 400, and an info line."""
    log = tmp_path / "access.log"
    site = await tlsListener(stack, tmp_path, log=log)
    await plainRequest(stack, site.port, request(b"POST", b"/form"))
    assert site.proxy.accessLog is not None
    site.proxy.accessLog.flush()
    assert log.read_text(encoding="utf-8").splitlines() == [
        f'127.0.0.1 "POST /form HTTP/1.1" 400 {len(PLAIN_HTTP_BODY)}'
    ]
    assert "refused 127.0.0.1: 400 plain HTTP on a TLS listener" in logged


@pytest_twisted.ensureDeferred
async def test_stopClosesConnectionsStillSniffed(stack: Stack, tmp_path: Path) -> None:
    """A graceful stop closes connections still being sniffed at once, not at grace."""
    site = await tlsListener(stack, tmp_path)
    firstWord = await stack.connect(site.port)
    firstWord.transport.write(b"GE")  # type: ignore[union-attr]
    halfHead = await stack.connect(site.port)
    halfHead.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # type: ignore[union-attr]
    # Accepted after the other two: once it is answered, all three were in.
    received = await plainRequest(stack, site.port, request(b"GET", b"/"))
    assert received.startswith(b"HTTP/1.1 400 ")
    assert len(site.proxy.sites[0].channels) == 2
    began = stack.reactor.seconds()
    await site.proxy.stopService().addTimeout(10, stack.reactor)
    assert stack.reactor.seconds() - began < 5
    for client in (firstWord, halfHead):
        await client.lost
        assert client.received == b""
