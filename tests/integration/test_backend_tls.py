"""
https:// backends on 127.0.0.1: what a client gets and what is logged when
the backend's certificate is trusted, untrusted, for another name, or not
checked at all; balancer members over TLS; TLS connections kept and reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    RecordingBackend,
    Stack,
    deferLater,
    hasReplies,
    parseReplies,
    request,
)
from tests.tlsfiles import Issued, ServingTLS, TestCA

ROUTE = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "https://{host}:{port}/"
{tls}
"""

BALANCED = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://pool/"
[balancer.pool]
method = "roundrobin"
[[balancer.pool.member]]
url = "https://localhost:{first}"
tls_ca = "ca.pem"
[[balancer.pool.member]]
url = "https://localhost:{second}"
tls_ca = "ca.pem"
"""


class CountingTLS(TLSMemoryBIOFactory):
    """A TLS server factory that counts the connections it accepts."""

    noisy = False
    accepted = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.accepted += 1
        return super().buildProtocol(addr)


@dataclass
class HTTPSBackend:
    """A backend behind TLS, listening on C{port}."""

    port: int
    resource: RecordingBackend
    tls: ServingTLS
    factory: CountingTLS


async def httpsBackend(
    stack: Stack, issued: Issued, name: str = "backend"
) -> HTTPSBackend:
    """A twisted.web backend behind TLS with C{issued}'s certificate."""
    resource = RecordingBackend(name)
    site = Site(resource)
    site.noisy = False
    stack.sites.append(site)
    tls = ServingTLS(issued)
    factory = CountingTLS(tls, False, site)
    port = await stack.listen(factory)
    return HTTPSBackend(port, resource, tls, factory)


def _logLine(lines: list[str], *words: str) -> str:
    """The one logged line that holds every word in C{words}."""
    found = [line for line in lines if all(word in line for word in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


async def _get(stack: Stack, proxyPort: int, count: int = 1) -> list[Any]:
    """C{count} GETs, one after another, on one client connection."""
    client = await stack.connect(proxyPort)
    for n in range(count):
        client.transport.write(request(b"GET", b"/page/%d" % n))  # type: ignore[union-attr]
        await client.waitFor(hasReplies(n + 1))
    return parseReplies(client.received)


async def _proxyTo(
    stack: Stack, folder: Path, host: str, port: int, tls: str = ""
) -> int:
    """A proxy whose one route goes to https://host:port/; its port."""
    proxy = await stack.proxy(
        ROUTE, configDir=str(folder), host=host, port=port, tls=tls
    )
    return proxy.port


WITH_CA = 'tls_ca = "ca.pem"'


@pytest_twisted.ensureDeferred
async def test_trustedBackendWithCAFile(stack: Stack, tmp_path: Path) -> None:
    """
    A backend whose certificate chains to the route's tls_ca answers 200 with
    its body; the proxy sent its host name as SNI.
    """
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("localhost"))
    port = await _proxyTo(stack, tmp_path, "localhost", backend.port, WITH_CA)
    [reply] = await _get(stack, port)
    assert reply.status == 200
    assert reply.body == b"backend saw GET /page/0"
    assert [r.uri for r in backend.resource.requests] == [b"/page/0"]
    assert backend.tls.serverNames == [b"localhost"]


@pytest_twisted.ensureDeferred
async def test_trustedBackendByAddress(stack: Stack, tmp_path: Path) -> None:
    """
    A backend named by IP address answers 200 when its certificate lists that
    address; no SNI is sent for an address.
    """
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("localhost", "127.0.0.1"))
    port = await _proxyTo(stack, tmp_path, "127.0.0.1", backend.port, WITH_CA)
    [reply] = await _get(stack, port)
    assert reply.status == 200
    assert backend.tls.serverNames == [None]


@pytest_twisted.ensureDeferred
async def test_untrustedBackendIs502(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A backend whose CA is not in the system trust store (and no tls_ca is
    set) gets 502; the log names it and says its certificate is not trusted.
    """
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("localhost"))
    port = await _proxyTo(stack, tmp_path, "localhost", backend.port)
    [reply] = await _get(stack, port)
    assert reply.status == 502
    assert backend.resource.requests == []
    _logLine(
        logged,
        f"https://localhost:{backend.port}: TLS failed: certificate not trusted "
        "(unable to get local issuer certificate)",
    )


@pytest_twisted.ensureDeferred
async def test_wrongNameIs502(stack: Stack, tmp_path: Path, logged: list[str]) -> None:
    """
    A trusted certificate for another host name gets 502, logged as a name
    mismatch, and the request never reaches the backend.
    """
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("other.test"))
    port = await _proxyTo(stack, tmp_path, "localhost", backend.port, WITH_CA)
    [reply] = await _get(stack, port)
    assert reply.status == 502
    assert backend.resource.requests == []
    _logLine(
        logged,
        f"https://localhost:{backend.port}: TLS failed: "
        "certificate does not match host name localhost",
    )


@pytest_twisted.ensureDeferred
async def test_wrongAddressIs502(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """A certificate that does not list the target's IP address gets 502, logged."""
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("localhost"))
    port = await _proxyTo(stack, tmp_path, "127.0.0.1", backend.port, WITH_CA)
    [reply] = await _get(stack, port)
    assert reply.status == 502
    _logLine(
        logged,
        f"https://127.0.0.1:{backend.port}: TLS failed: "
        "certificate does not match IP address 127.0.0.1",
    )


@pytest_twisted.ensureDeferred
async def test_verificationOffAcceptsAnyCertificate(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    With tls_verify = false an untrusted backend for another name answers
    200, and start-up warned once that its certificate is not checked.
    """
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("other.test"))
    port = await _proxyTo(
        stack, tmp_path, "localhost", backend.port, "tls_verify = false"
    )
    line = _logLine(logged, "TLS verification is off")
    assert line == (
        f"TLS verification is off for https://localhost:{backend.port} "
        "(route[0].tls_verify = false): its certificate is not checked"
    )
    [reply] = await _get(stack, port)
    assert reply.status == 200
    assert backend.tls.serverNames == [b"localhost"]


@pytest_twisted.ensureDeferred
async def test_tlsConnectionsAreReused(stack: Stack, tmp_path: Path) -> None:
    """Five requests in a row to an https backend share one TLS connection."""
    ca = TestCA(tmp_path)
    backend = await httpsBackend(stack, ca.issue("localhost"))
    port = await _proxyTo(stack, tmp_path, "localhost", backend.port, WITH_CA)
    replies = await _get(stack, port, count=5)
    assert [r.status for r in replies] == [200] * 5
    assert len(backend.resource.requests) == 5
    assert backend.factory.accepted == 1


@pytest_twisted.ensureDeferred
async def test_balancerMembersOverTLS(stack: Stack, tmp_path: Path) -> None:
    """https members verified against their tls_ca share the requests: all 200."""
    ca = TestCA(tmp_path)
    one = await httpsBackend(stack, ca.issue("localhost"), "one")
    two = await httpsBackend(stack, ca.issue("localhost"), "two")
    proxy = await stack.proxy(
        BALANCED, configDir=str(tmp_path), first=one.port, second=two.port
    )
    replies = await _get(stack, proxy.port, count=4)
    assert [r.status for r in replies] == [200] * 4
    assert (len(one.resource.requests), len(two.resource.requests)) == (2, 2)
    assert (one.factory.accepted, two.factory.accepted) == (1, 1)


@pytest_twisted.ensureDeferred
async def test_untrustedMemberFailsOver(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A member whose certificate is refused counts as unreachable: the request
    goes to the other member (200) and the refusal is logged once.
    """
    ca = TestCA(tmp_path)
    stranger = TestCA(tmp_path, "stranger")
    refused = await httpsBackend(stack, stranger.issue("localhost"), "one")
    good = await httpsBackend(stack, ca.issue("localhost"), "two")
    proxy = await stack.proxy(
        BALANCED, configDir=str(tmp_path), first=refused.port, second=good.port
    )
    replies = await _get(stack, proxy.port, count=2)
    assert [r.status for r in replies] == [200, 200]
    assert refused.resource.requests == []
    assert len(good.resource.requests) == 2
    _logLine(
        logged,
        f"member https://localhost:{refused.port}: TLS failed: certificate not trusted",
    )


@pytest_twisted.ensureDeferred
async def test_plainBackendBehindHttpsTarget(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    An https:// target whose port answers in plain HTTP (as nginx does to a
    ClientHello) gets 502, logged as a handshake that is not TLS.
    """

    def answerInPlain(proto: RawServerProtocol) -> None:
        proto.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
        )
        proto.transport.loseConnection()  # type: ignore[union-attr]

    port = await stack.rawBackend(RawBackend(onData=answerInPlain))
    [reply] = await _get(stack, await _proxyTo(stack, tmp_path, "127.0.0.1", port))
    assert reply.status == 502
    line = _logLine(logged, f"https://127.0.0.1:{port}", "TLS failed: handshake failed")
    assert "is this port speaking TLS?" in line


@pytest_twisted.ensureDeferred
async def test_stalledHandshakeIs504(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A backend that accepts the connection but never answers the TLS
    handshake gets 504 once connect_timeout has passed, logged as such.
    """
    port = await stack.rawBackend(RawBackend())
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        connect_timeout = 0.2
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [[route]]
        path = "/"
        to = "https://127.0.0.1:{port}/"
        """,
        configDir=str(tmp_path),
        port=port,
    )
    [reply] = await _get(stack, proxy.port)
    assert reply.status == 504
    _logLine(
        logged,
        f"https://127.0.0.1:{port}: TLS failed: no handshake within 0.2s",
    )


async def _healthOf(stack: Stack, proxy: Any, url: str, want: str) -> dict[str, Any]:
    """Wait (bounded) until member C{url} has health C{want}; its snapshot."""
    for _ in range(200):
        [member] = [m for m in proxy.balancer.snapshot()["pool"] if m["name"] == url]
        if member["health"] == want:
            return dict(member)
        await deferLater(stack.reactor, 0.01)
    raise AssertionError(f"{url} never became {want}: {member}")


@pytest_twisted.ensureDeferred
async def test_healthChecksVerifyLikeRequests(stack: Stack, tmp_path: Path) -> None:
    """
    An https member's health check trusts its tls_ca (up); one whose
    certificate is not trusted fails its checks (down, saying why).
    """
    ca = TestCA(tmp_path)
    stranger = TestCA(tmp_path, "stranger")
    good = await httpsBackend(stack, ca.issue("localhost"), "good")
    refused = await httpsBackend(stack, stranger.issue("localhost"), "refused")
    health = """
[balancer.pool.health]
method = "GET"
uri = "/health"
interval = 0.1
timeout = 0.09
passes = 1
fails = 1
"""
    proxy = await stack.proxy(
        BALANCED + health,
        configDir=str(tmp_path),
        first=good.port,
        second=refused.port,
    )
    up = await _healthOf(stack, proxy, f"https://localhost:{good.port}", "up")
    assert up["last_check_result"] == "GET /health answered 200"
    down = await _healthOf(stack, proxy, f"https://localhost:{refused.port}", "down")
    assert down["last_check_result"] == (
        "TLS failed: certificate not trusted (unable to get local issuer certificate)"
    )
    assert refused.resource.requests == []
