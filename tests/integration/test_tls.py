"""
TLS termination end to end: real listeners on 127.0.0.1, Python's C{ssl}
client and curl on the other side, a plain HTTP backend behind.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.support import RecordingBackend, Stack, curl
from tests.tlsfiles import Issued, TestCA
from twisted_proxy.tls.server import TLSFilesError

ONE_TLS_LISTENER = """
    [proxy]
    access_log = false
    [[listen]]
    endpoint = "tcp:0:interface=127.0.0.1"
    [listen.tls]
    certificate = "proxy.pem"
    key = "proxy.key"
"""


@dataclass
class Seen:
    """What a TLS client saw: the server's certificate, ALPN, the reply."""

    commonName: str
    alpn: str | None
    version: str | None
    reply: bytes


def _commonName(certificate: dict[str, Any]) -> str:
    for rdn in certificate["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


class TLSClient:
    """Python's ssl module, run in a thread so the reactor keeps serving."""

    def __init__(self, ca: Path) -> None:
        self.ca = ca

    def context(
        self, alpn: list[str] | None = None, certificate: Issued | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if alpn:
            context.set_alpn_protocols(alpn)
        if certificate is not None:
            context.load_cert_chain(str(certificate.certificate), str(certificate.key))
        return context

    def _get(
        self,
        port: int,
        serverName: str | None,
        path: str,
        alpn: list[str] | None,
        certificate: Issued | None,
        headers: str,
    ) -> Seen:
        context = self.context(alpn, certificate)
        if serverName is None:
            context.check_hostname = False
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=serverName) as tls,
        ):
            host = serverName or "localhost"
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
                "Connection: close\r\n\r\n".encode()
            )
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
            peer = tls.getpeercert()
            assert peer is not None
            return Seen(
                _commonName(peer),
                tls.selected_alpn_protocol(),
                tls.version(),
                reply,
            )

    def get(
        self,
        port: int,
        serverName: str | None,
        path: str = "/",
        alpn: list[str] | None = None,
        certificate: Issued | None = None,
        headers: str = "",
    ) -> Any:
        """GET C{path} over a new TLS connection; a Deferred of L{Seen}."""
        return threads.deferToThread(
            self._get, port, serverName, path, alpn, certificate, headers
        )


@dataclass
class Site:
    """A TLS proxy in front of a recording backend, and what made it."""

    stack: Stack
    ca: TestCA
    folder: Path
    backend: RecordingBackend
    backendPort: int
    port: int
    service: Any

    @property
    def client(self) -> TLSClient:
        return TLSClient(self.ca.certificate)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def tlsSite(
    stack: Stack, folder: Path, extra: str = "", sni: bool = True
) -> Site:
    ca = TestCA(folder)
    ca.issue("localhost", "127.0.0.1", commonName="default.test", stem="proxy")
    ca.issue("api.example.test", stem="api")
    ca.issue("*.apps.example.test", commonName="apps.example.test", stem="apps")
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    port = freePort()
    sniTables = """
        [[listen.tls.sni]]
        hosts = ["api.example.test"]
        certificate = "api.pem"
        key = "api.key"
        [[listen.tls.sni]]
        hosts = ["*.apps.example.test"]
        certificate = "apps.pem"
        key = "apps.key"
    """
    service = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:{port}:interface=127.0.0.1"
        [listen.tls]
        certificate = "proxy.pem"
        key = "proxy.key"
        {extra}
        {sni}
        [[route]]
        path = "/"
        to = "http://127.0.0.1:{backendPort}/"
        """,
        configDir=str(folder),
        port=port,
        backendPort=backendPort,
        extra=extra,
        sni=sniTables if sni else "",
    )
    return Site(stack, ca, folder, backend, backendPort, port, service)


# -- termination, SNI and ALPN --------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sniChoosesCertificate(stack: Stack, tmp_path: Path) -> None:
    """Each server name gets its own certificate; others get the default."""
    site = await tlsSite(stack, tmp_path)
    api = await site.client.get(site.port, "api.example.test")
    assert api.commonName == "api.example.test"
    assert api.reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert api.reply.endswith(b"backend saw GET /")
    apps = await site.client.get(site.port, "shop.apps.example.test")
    assert apps.commonName == "apps.example.test"
    default = await site.client.get(site.port, "localhost")
    assert default.commonName == "default.test"
    noName = await site.client.get(site.port, None)
    assert noName.commonName == "default.test"


@pytest_twisted.ensureDeferred
async def test_chainServedWithLeaf(stack: Stack, tmp_path: Path) -> None:
    """
    A certificate file holding the leaf then its intermediate: clients that
    trust only the root verify it, so the intermediate was sent.
    """
    root = TestCA(tmp_path, "root")
    root.intermediate("intermediate").issue("localhost", stem="proxy")
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    service = await stack.proxy(
        ONE_TLS_LISTENER
        + """
        [[route]]
        path = "/"
        to = "http://127.0.0.1:{backendPort}/"
        """,
        configDir=str(tmp_path),
        backendPort=backendPort,
    )
    seen = await TLSClient(root.certificate).get(service.port, "localhost")
    assert seen.reply.endswith(b"backend saw GET /")
    out, err, code = await curl(
        "--cacert",
        str(root.certificate),
        "--resolve",
        f"localhost:{service.port}:127.0.0.1",
        f"https://localhost:{service.port}/chain",
    )
    assert (code, out) == (0, b"backend saw GET /chain"), err


@pytest_twisted.ensureDeferred
async def test_curlVerifiesEachName(stack: Stack, tmp_path: Path) -> None:
    """curl trusts the CA and sees the right certificate for each name."""
    site = await tlsSite(stack, tmp_path)
    ca = str(site.ca.certificate)
    for name in ("api.example.test", "x.apps.example.test", "localhost"):
        out, err, code = await curl(
            "--cacert",
            ca,
            "--resolve",
            f"{name}:{site.port}:127.0.0.1",
            f"https://{name}:{site.port}/hello",
        )
        assert (code, err) == (0, b""), name
        assert out == b"backend saw GET /hello"
    # A name nobody configured gets the default certificate, not valid for it.
    out, err, code = await curl(
        "--cacert",
        ca,
        "--resolve",
        f"unknown.test:{site.port}:127.0.0.1",
        f"https://unknown.test:{site.port}/",
    )
    assert code == 60
    assert b"unknown.test" in err


@pytest_twisted.ensureDeferred
async def test_alpnIsHTTP11UnlessH2Listed(stack: Stack, tmp_path: Path) -> None:
    """A client offering h2 gets http/1.1 on a listener that did not ask for h2."""
    site = await tlsSite(stack, tmp_path)
    seen = await site.client.get(site.port, "localhost", alpn=["h2", "http/1.1"])
    assert seen.alpn == "http/1.1"
    assert seen.reply.startswith(b"HTTP/1.1 200 OK")
    out, _, code = await curl(
        "--http2",
        "--cacert",
        str(site.ca.certificate),
        "--resolve",
        f"localhost:{site.port}:127.0.0.1",
        "-w",
        "%{http_version}",
        "-o",
        os.devnull,
        f"https://localhost:{site.port}/",
    )
    assert (code, out) == (0, b"1.1")


@pytest_twisted.ensureDeferred
async def test_minVersion13(stack: Stack, tmp_path: Path) -> None:
    """min_version = "1.3" serves TLS 1.3 and refuses a TLS 1.2-only client."""
    site = await tlsSite(stack, tmp_path, 'min_version = "1.3"')
    seen = await site.client.get(site.port, "localhost")
    assert seen.version == "TLSv1.3"
    _, _, code = await curl(
        "--tls-max",
        "1.2",
        "--cacert",
        str(site.ca.certificate),
        "--resolve",
        f"localhost:{site.port}:127.0.0.1",
        f"https://localhost:{site.port}/",
    )
    assert code == 35  # handshake failed
    assert len(site.backend.requests) == 1  # only the TLS 1.3 client got through


# -- what the backend is told, and what the client is told -----------------------


@pytest_twisted.ensureDeferred
async def test_backendToldHTTPSAndPort(stack: Stack, tmp_path: Path) -> None:
    """X-Forwarded-Proto: https and X-Forwarded-Port: the TLS listener's port."""
    site = await tlsSite(stack, tmp_path)
    await site.client.get(site.port, "api.example.test", "/x?y=1")
    received = site.backend.requests[-1]
    assert received.header(b"x-forwarded-proto") == b"https"
    assert received.header(b"x-forwarded-port") == str(site.port).encode()
    assert received.header(b"x-forwarded-host") == b"api.example.test"
    assert received.uri == b"/x?y=1"


@pytest_twisted.ensureDeferred
async def test_hstsOnEveryResponse(stack: Stack, tmp_path: Path) -> None:
    """hsts adds Strict-Transport-Security to proxied and error responses."""
    site = await tlsSite(stack, tmp_path, "hsts = 31536000")
    seen = await site.client.get(site.port, "localhost")
    assert b"\r\nStrict-Transport-Security: max-age=31536000\r\n" in seen.reply
    # The proxy's own error page (a refused forward-proxy request) too.
    refused = await site.client.get(site.port, "localhost", "http://elsewhere.test/")
    assert refused.reply.startswith(b"HTTP/1.1 403 ")
    assert b"\r\nStrict-Transport-Security: max-age=31536000\r\n" in refused.reply


@pytest_twisted.ensureDeferred
async def test_redirectHTTPS(stack: Stack, tmp_path: Path) -> None:
    """A redirect_https listener answers 301 to the same path and query."""
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    service = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        redirect_https = "https://proxy.example.test:8443"
        [[route]]
        path = "/"
        to = "http://127.0.0.1:{backendPort}/"
        """,
        backendPort=backendPort,
    )
    out, _, code = await curl(
        "-i", "-d", "body", f"http://127.0.0.1:{service.port}/shop/cart?id=7&x=%20"
    )
    assert code == 0
    head = out.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 301 Moved Permanently"
    assert b"Location: https://proxy.example.test:8443/shop/cart?id=7&x=%20" in head
    assert backend.requests == []


# -- client certificates ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mutualTLS(stack: Stack, tmp_path: Path) -> None:
    """
    With client_ca, a client with a certificate from that CA is served and the
    backend gets its subject; a forged header of that name never gets through.
    """
    clients = TestCA(tmp_path, "clients")
    alice = clients.clientCertificate("alice")
    site = await tlsSite(
        stack,
        tmp_path,
        'client_ca = "clients.pem"\nclient_cert_header = "X-Client-Subject"',
    )
    seen = await site.client.get(
        site.port,
        "localhost",
        certificate=alice,
        headers="X-Client-Subject: CN=admin\r\nx-client-subject: CN=root\r\n",
    )
    assert seen.reply.startswith(b"HTTP/1.1 200 OK")
    received = site.backend.requests[-1]
    assert received.headerValues(b"x-client-subject") == [b"CN=alice"]
    # curl with the certificate works too.
    out, _, code = await curl(
        "--cacert",
        str(site.ca.certificate),
        "--cert",
        str(alice.certificate),
        "--key",
        str(alice.key),
        "--resolve",
        f"localhost:{site.port}:127.0.0.1",
        f"https://localhost:{site.port}/mtls",
    )
    assert (code, out) == (0, b"backend saw GET /mtls")


@pytest_twisted.ensureDeferred
async def test_mutualTLSRefusesOthers(stack: Stack, tmp_path: Path) -> None:
    """No certificate, or one from another CA: the handshake fails, no request."""
    TestCA(tmp_path, "clients")
    mallory = TestCA(tmp_path, "stranger").clientCertificate("mallory")
    site = await tlsSite(stack, tmp_path, 'client_ca = "clients.pem"')
    base = [
        "--cacert",
        str(site.ca.certificate),
        "--resolve",
        f"localhost:{site.port}:127.0.0.1",
        f"https://localhost:{site.port}/",
    ]
    _, _, code = await curl(*base)
    assert code in (35, 56)  # handshake failure / failure receiving data
    _, _, code = await curl(
        "--cert", str(mallory.certificate), "--key", str(mallory.key), *base
    )
    assert code in (35, 56)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await site.client.get(site.port, "localhost")
    assert site.backend.requests == []


# -- reload -------------------------------------------------------------------------


def _openKeepAlive(port: int, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def _exchange(tls: ssl.SSLSocket, path: str) -> bytes:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    reply = b""
    while not reply.endswith(path.encode()):
        chunk = tls.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


@pytest_twisted.ensureDeferred
async def test_reloadUnderOpenConnection(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    After renewed files and a reload, new handshakes get the new certificate,
    while a connection opened before goes on being served.
    """
    site = await tlsSite(stack, tmp_path, sni=False)
    before = await threads.deferToThread(_openKeepAlive, site.port, site.ca.certificate)
    try:
        first = await threads.deferToThread(_exchange, before, "/one")
        assert first.startswith(b"HTTP/1.1 200 OK")
        renewed = site.ca.issue("localhost", commonName="renewed.test")
        os.replace(renewed.certificate, tmp_path / "proxy.pem")
        os.replace(renewed.key, tmp_path / "proxy.key")
        assert site.service.reloadCertificates() is True
        after = await site.client.get(site.port, "localhost")
        assert after.commonName == "renewed.test"
        again = await threads.deferToThread(_exchange, before, "/two")
        assert again.startswith(b"HTTP/1.1 200 OK")
        old = before.getpeercert()
        assert old is not None
        assert _commonName(old) == "default.test"
    finally:
        before.close()
    assert any("certificates reloaded" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_brokenReloadKeepsServing(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """A renewed certificate with the wrong key is refused; the old one serves."""
    site = await tlsSite(stack, tmp_path, sni=False)
    (tmp_path / "proxy.key").write_text("not a key\n")
    assert site.service.reloadCertificates() is False
    seen = await site.client.get(site.port, "localhost")
    assert seen.commonName == "default.test"
    assert seen.reply.startswith(b"HTTP/1.1 200 OK")
    assert any(
        "certificate reload failed, keeping the old certificate" in line
        and "no PEM private key" in line
        for line in logged
    )


# -- bad files at start-up ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_missingCertificateStopsStart(stack: Stack, tmp_path: Path) -> None:
    """A listener whose key file is missing does not start; the error names it."""
    TestCA(tmp_path).issue("localhost", stem="proxy")
    os.remove(tmp_path / "proxy.key")
    with pytest.raises(TLSFilesError) as raised:
        await stack.proxy(ONE_TLS_LISTENER, configDir=str(tmp_path))
    assert str(raised.value) == (
        f"listen[0].tls.key: {tmp_path / 'proxy.key'}: no such file"
    )


@pytest_twisted.ensureDeferred
async def test_expiredCertificateWarnsAtStart(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """An expired certificate still serves, with a warning logged at start."""
    TestCA(tmp_path).issue("localhost", expired=True, stem="proxy")
    await stack.proxy(ONE_TLS_LISTENER, configDir=str(tmp_path))
    assert any(
        line.startswith("listen[0].tls.certificate: ")
        and "the certificate expired on" in line
        for line in logged
    )


@pytest_twisted.ensureDeferred
async def test_stalledHandshakeClosedAfterHeaderTimeout(
    stack: Stack, tmp_path: Path
) -> None:
    """A client that connects and never starts TLS is closed by header_timeout."""
    TestCA(tmp_path).issue("localhost", stem="proxy")
    service = await stack.proxy(
        ONE_TLS_LISTENER.replace("[proxy]", "[proxy]\nheader_timeout = 0.2"),
        configDir=str(tmp_path),
    )
    client = await stack.connect(service.port)
    started = stack.reactor.seconds()
    await client.lost.addTimeout(5, stack.reactor)
    assert 0.15 <= stack.reactor.seconds() - started < 5
    assert client.received == b""
