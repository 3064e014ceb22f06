"""
TLS settings an Apache configuration brings, end to end on 127.0.0.1: a
C{chain} file of intermediates (SSLCertificateChainFile) verified by clients
that trust only the root, and TLS 1.1 and 1.0 (SSLProtocol all -SSLv3)
served, with a warning, to Python's C{ssl} clients that go no higher.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import threads

from tests.integration.support import RecordingBackend, Stack, curl
from tests.tlsfiles import TestCA
from twisted_proxy.service import ProxyService

TLS_SITE = """
    [proxy]
    access_log = false
    [[listen]]
    endpoint = "tcp:0:interface=127.0.0.1"
    [listen.tls]
    certificate = "leaf.pem"
    key = "proxy.key"
    {extra}
    [[route]]
    path = "/"
    to = "http://127.0.0.1:{backendPort}/"
"""


def _get(context: ssl.SSLContext, port: int, path: str) -> tuple[str, bytes]:
    """GET C{path} over a new TLS connection: the version and the reply."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
        return str(tls.version()), reply


async def get(context: ssl.SSLContext, port: int, path: str = "/") -> tuple[str, bytes]:
    """L{_get} in a thread, so the reactor keeps serving."""
    result: tuple[str, bytes] = await threads.deferToThread(_get, context, port, path)
    return result


def rootOnly(root: Path, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """
    A client trusting only C{root}; with C{maximum} below TLS 1.2, one that
    goes no higher, at security level 0 (as such old clients are).
    """
    context = ssl.create_default_context(cafile=str(root))
    if maximum is not None:
        with warnings.catch_warnings():
            # ssl deprecates naming TLS 1.0 and 1.1; testing them is the point.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def site(
    stack: Stack, folder: Path, extra: str = ""
) -> tuple[ProxyService, RecordingBackend, Path]:
    """
    A proxy for localhost whose certificate (leaf.pem) is the leaf alone,
    issued by an intermediate (intermediate.pem) of a root (root.pem); its
    service, its backend and the root.
    """
    root = TestCA(folder, "root")
    issued = root.intermediate("intermediate").issue("localhost", stem="proxy")
    leaf = x509.load_pem_x509_certificates(issued.certificate.read_bytes())[0]
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    service = await stack.proxy(
        TLS_SITE, configDir=str(folder), backendPort=backendPort, extra=extra
    )
    return service, backend, root.certificate


# -- chain --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_chainLetsRootOnlyClientsVerify(stack: Stack, tmp_path: Path) -> None:
    """Leaf plus chain file: ssl and curl trusting only the root get through."""
    service, backend, root = await site(stack, tmp_path, 'chain = "intermediate.pem"')
    _, reply = await get(rootOnly(root), service.port, "/chained")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"backend saw GET /chained")
    out, err, code = await curl(
        "--cacert",
        str(root),
        "--resolve",
        f"localhost:{service.port}:127.0.0.1",
        f"https://localhost:{service.port}/curl",
    )
    assert (code, out) == (0, b"backend saw GET /curl"), err
    assert [r.uri for r in backend.requests] == [b"/chained", b"/curl"]


@pytest_twisted.ensureDeferred
async def test_withoutChainRootOnlyClientsRefuse(stack: Stack, tmp_path: Path) -> None:
    """The same leaf without chain: a client trusting only the root refuses it."""
    service, backend, root = await site(stack, tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError) as raised:
        await get(rootOnly(root), service.port)
    assert "unable to get local issuer certificate" in str(raised.value)
    assert backend.requests == []


# -- TLS 1.1 and 1.0 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "maximum", "version"),
    [
        ("1.1", ssl.TLSVersion.TLSv1_1, "TLSv1.1"),
        ("1.0", ssl.TLSVersion.TLSv1, "TLSv1"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_olderTLSServedWithOneWarning(
    stack: Stack,
    tmp_path: Path,
    logged: list[str],
    minimum: str,
    maximum: ssl.TLSVersion,
    version: str,
) -> None:
    """A client going no higher than min_version is served; start warned once."""
    service, backend, root = await site(
        stack,
        tmp_path,
        f'chain = "intermediate.pem"\nmin_version = "{minimum}"',
    )
    seen, reply = await get(rootOnly(root, maximum), service.port, "/old")
    assert seen == version
    assert reply.endswith(b"backend saw GET /old")
    warned = [line for line in logged if "tls.min_version" in line]
    assert warned == [
        f'listen[0].tls.min_version: "{minimum}" is weaker than the default'
        f' "1.2": {"TLS 1.0 and 1.1 are" if minimum == "1.0" else "TLS 1.1 is"}'
        " let in (deprecated by RFC 8996), at OpenSSL security level 0, with"
        ' Mozilla\'s "old" cipher list (CBC suites with SHA-1) since ciphers is'
        " not set"
    ]


@pytest_twisted.ensureDeferred
async def test_tls11RefusedByDefault(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """Without min_version, the same TLS 1.1 client is refused, and nothing warned."""
    service, backend, root = await site(stack, tmp_path, 'chain = "intermediate.pem"')
    with pytest.raises(ssl.SSLError):
        await get(rootOnly(root, ssl.TLSVersion.TLSv1_1), service.port)
    assert backend.requests == []
    assert not [line for line in logged if "is weaker than the default" in line]
