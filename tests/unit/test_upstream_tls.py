"""
TLS to backends without sockets: the reasons a refusal is logged with, the
creators and their cache, the start-up warnings, real OpenSSL handshakes in
memory (twisted.test.iosim), and the pool waiting for a handshake on a Clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.exceptions import DNSMismatch
from service_identity.hazmat import DNS_ID
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import platformTrust
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.tlsfiles import Issued, ServingTLS, TestCA
from tests.unit.test_upstream import FakeEndpoint, Sink
from twisted_proxy.config import parseTarget
from twisted_proxy.config.model import Balancer, Member, ProxySettings, Route
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.httprelay import ReverseProxyResource
from twisted_proxy.tls.backend import (
    BackendCAError,
    BackendTLS,
    BackendTLSError,
    CertificateChainError,
    HandshakeTimeoutError,
    TLSPolicy,
    failureReason,
    tlsBackends,
    unverifiedWarnings,
)
from twisted_proxy.upstream.client import UpstreamConnection
from twisted_proxy.upstream.interfaces import Address
from twisted_proxy.upstream.pool import UpstreamPool

codes = SSL.X509VerificationCodes

# -- the reasons --------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            CertificateChainError(codes.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0),
            "certificate not trusted (unable to get local issuer certificate)",
        ),
        (
            CertificateChainError(codes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT, 0),
            "certificate not trusted (self-signed certificate)",
        ),
        (
            CertificateChainError(codes.ERR_SELF_SIGNED_CERT_IN_CHAIN, 1),
            "certificate not trusted "
            "(self-signed certificate in certificate chain at chain depth 1)",
        ),
        (
            CertificateChainError(codes.ERR_CERT_HAS_EXPIRED, 0),
            "certificate refused (certificate has expired)",
        ),
        (
            CertificateChainError(codes.ERR_CERT_NOT_YET_VALID, 0),
            "certificate refused (certificate is not yet valid)",
        ),
        (CertificateChainError(9999, 0), "certificate refused (X.509 error 9999)"),
        (
            VerificationError(
                errors=[DNSMismatch(mismatched_id=DNS_ID("backend.test"))]
            ),
            "certificate does not match host name backend.test",
        ),
        (
            CertificateError("Certificate does not contain any `subjectAltName`s."),
            "certificate names no subjectAltName, "
            "so it cannot match host name backend.test",
        ),
        (
            SSL.Error([("SSL routines", "", "certificate verify failed")]),
            "certificate not trusted (certificate verify failed)",
        ),
        (
            SSL.Error([("SSL routines", "", "wrong version number")]),
            "handshake failed (wrong version number): is this port speaking TLS?",
        ),
        (
            SSL.Error([("SSL routines", "", "sslv3 alert handshake failure")]),
            "handshake failed (sslv3 alert handshake failure)",
        ),
        (ConnectionLost(), "handshake failed (backend closed the connection)"),
        (ValueError("odd"), "handshake failed (odd)"),
    ],
)
def test_failureReasons(error: BaseException, reason: str) -> None:
    """Each way a handshake fails is logged as a short reason a person reads."""
    assert failureReason(error, "backend.test") == reason


def test_failureReasonForAnAddress() -> None:
    """A name mismatch for a backend reached by address says 'IP address'."""
    error = VerificationError(errors=[])
    assert failureReason(error, "127.0.0.1") == (
        "certificate does not match IP address 127.0.0.1"
    )
    assert failureReason(error, "::1") == "certificate does not match IP address ::1"


# -- creators and their cache -------------------------------------------------


@dataclass
class CountingTrust:
    """A stand-in for platformTrust that counts how often it is asked."""

    calls: int = 0

    def __call__(self) -> Any:
        self.calls += 1
        return platformTrust()


def test_creatorsCachedPerHostAndPolicy(tmp_path: Path) -> None:
    """
    One creator per (host, policy); hosts under one policy share an OpenSSL
    context, and the system trust store is loaded once.
    """
    TestCA(tmp_path)
    trust = CountingTrust()
    tls = BackendTLS(trust)
    system = TLSPolicy()
    first = tls.creatorFor("a.test", system)
    assert verifyObject(IOpenSSLClientConnectionCreator, first)
    assert tls.creatorFor("a.test", system) is first
    second = tls.creatorFor("b.test", system)
    assert second is not first
    assert tls.context(system) is tls.context(TLSPolicy(None, True))
    withCA = TLSPolicy(str(tmp_path / "ca.pem"))
    unverified = TLSPolicy(verify=False)
    assert tls.creatorFor("a.test", withCA) is not first
    assert tls.creatorFor("a.test", unverified) is not first
    contexts = {id(tls.context(p)) for p in (system, withCA, unverified)}
    assert len(contexts) == 3
    assert trust.calls == 1


def test_caFileReadOnce(tmp_path: Path) -> None:
    """A tls_ca file is read once per policy: later hosts do not need it again."""
    ca = TestCA(tmp_path)
    tls = BackendTLS()
    policy = TLSPolicy(str(ca.certificate))
    tls.creatorFor("a.test", policy)
    ca.certificate.unlink()
    assert tls.creatorFor("b.test", policy).host == "b.test"


def test_badCAFiles(tmp_path: Path) -> None:
    """A tls_ca that is missing, a folder or not PEM is refused, naming the file."""
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    tls = BackendTLS()
    cases = {
        tmp_path / "missing.pem": "no such file",
        tmp_path: "is a folder, not a file",
        tmp_path / "notes.txt": "no PEM certificate in this file",
    }
    for path, problem in cases.items():
        with pytest.raises(BackendCAError) as caught:
            tls.creatorFor("a.test", TLSPolicy(str(path)))
        assert str(caught.value) == f"{path}: {problem}"


def test_caBundleWithSeveralCertificates(tmp_path: Path) -> None:
    """Every CA in a bundle file is trusted, not only the first."""
    first = TestCA(tmp_path, "first")
    second = TestCA(tmp_path, "second")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first.certificate.read_bytes() + second.certificate.read_bytes())
    tls = BackendTLS()
    result = handshake(
        tls.creatorFor("localhost", TLSPolicy(str(bundle))),
        second.issue("localhost"),
    )
    assert result.done


# -- start-up: which backends speak TLS, and the warnings ---------------------


def _route(url: str, index: int, **kw: Any) -> Route:
    return Route(path=f"/r{index}/", to=parseTarget(url), index=index, **kw)


def _member(url: str, **kw: Any) -> Member:
    target = parseTarget(url)
    return Member(
        url=url, scheme=target.scheme, host=target.host, port=target.port, **kw
    )


def test_tlsBackendsInFileOrder() -> None:
    """https and wss targets and https members are found, with their key paths."""
    routes = [
        _route("http://127.0.0.1:8080/", 0),
        _route("https://backend.test:8443/", 1, tls_ca="/etc/ca.pem"),
        _route("wss://[::1]:9443/", 2, tls_verify=False),
    ]
    balancer = Balancer(
        name="web",
        members=(
            _member("http://127.0.0.1:9001"),
            _member("https://127.0.0.1:9002"),
        ),
    )
    found = [(b.where, b.url, b.policy) for b in tlsBackends(routes, [balancer])]
    assert found == [
        ("route[1]", "https://backend.test:8443", TLSPolicy("/etc/ca.pem", True)),
        ("route[2]", "wss://[::1]:9443", TLSPolicy(None, False)),
        ("balancer.web.member[1]", "https://127.0.0.1:9002", TLSPolicy(None, True)),
    ]


def test_unverifiedWarningsOncePerBackend() -> None:
    """
    Each backend with tls_verify = false gets one warning naming every key
    that turned it off; verified backends get none.
    """
    routes = [
        _route("https://127.0.0.1:9443/", 0, tls_verify=False),
        _route("https://backend.test/", 1),
        _route("https://127.0.0.1:9443/", 2, tls_verify=False),
    ]
    balancer = Balancer(
        name="web",
        members=(_member("https://127.0.0.1:9443", tls_verify=False),),
    )
    assert unverifiedWarnings(tlsBackends(routes, [balancer])) == [
        (
            "https://127.0.0.1:9443",
            "TLS verification is off for https://127.0.0.1:9443 "
            "(route[0].tls_verify = false, route[2].tls_verify = false, "
            "balancer.web.member[0].tls_verify = false): "
            "its certificate is not checked",
        )
    ]
    assert unverifiedWarnings(tlsBackends(routes[1:2])) == []


def test_startUpWarnsOncePerBackend() -> None:
    """
    Building the proxy warns once per unverified backend, whether a member
    or a route names it, and says nothing about verified ones.
    """
    balancer = Balancer(
        name="web",
        members=(
            _member("https://127.0.0.1:9443", tls_verify=False),
            _member("https://127.0.0.1:9444"),
        ),
    )
    with capturedLogs() as events:
        context = ProxyContext.create(
            ProxySettings(), Clock(), balancers={"web": balancer}
        )
        ReverseProxyResource(
            _route("https://127.0.0.1:9443/", 0, tls_verify=False), context
        )
        ReverseProxyResource(
            _route("https://127.0.0.1:9445/", 1, tls_verify=False), context
        )
    lines = [formatEvent(e) for e in events]
    assert lines == [
        "TLS verification is off for https://127.0.0.1:9443 "
        "(balancer.web.member[0].tls_verify = false): its certificate is not checked",
        "TLS verification is off for https://127.0.0.1:9445 "
        "(route[1].tls_verify = false): its certificate is not checked",
    ]


def test_startUpRefusesABadCAFile(tmp_path: Path) -> None:
    """A route whose tls_ca cannot be read stops start-up, naming the key."""
    context = ProxyContext.create(ProxySettings(), Clock())
    missing = str(tmp_path / "missing.pem")
    route = _route("https://backend.test/", 3, tls_ca=missing)
    with pytest.raises(BackendCAError) as caught:
        ReverseProxyResource(route, context)
    assert str(caught.value) == f"route[3].tls_ca: {missing}: no such file"


# -- real handshakes, in memory -----------------------------------------------


@implementer(IHandshakeListener)
class Outcome(Protocol):
    """The client side's view: handshake done, or the connection lost why."""

    def __init__(self) -> None:
        self.done = False
        self.lost: BaseException | None = None
        self.serverNames: list[bytes | None] = []

    def handshakeCompleted(self) -> None:
        self.done = True

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done:
            self.lost = reason.value


def handshake(creator: Any, issued: Issued) -> Outcome:
    """Run a TLS handshake between C{creator} and a server with C{issued}."""
    server = ServingTLS(issued)
    outcome = Outcome()
    serverFactory = TLSMemoryBIOFactory(server, False, Factory.forProtocol(Protocol))
    clientFactory = TLSMemoryBIOFactory(
        creator, True, Factory.forProtocol(lambda: outcome)
    )
    _client, _server, pump = connectedServerAndClient(
        lambda: serverFactory.buildProtocol(None),
        lambda: clientFactory.buildProtocol(None),
    )
    pump.flush()
    outcome.serverNames = server.serverNames
    return outcome


@dataclass
class Handshakes:
    """A CA, and creators that trust it."""

    ca: TestCA
    tls: BackendTLS = field(default_factory=BackendTLS)

    def trusting(self, host: str, verify: bool = True) -> Any:
        policy = TLSPolicy(str(self.ca.certificate), verify)
        return self.tls.creatorFor(host, policy)


@pytest.fixture
def ca(tmp_path: Path) -> Handshakes:
    """A test CA and a creator cache."""
    return Handshakes(TestCA(tmp_path))


def test_handshakeAcceptedWithSNI(ca: Handshakes) -> None:
    """A certificate from the tls_ca for the host name is accepted; SNI is sent."""
    result = handshake(ca.trusting("localhost"), ca.ca.issue("localhost"))
    assert (result.done, result.lost) == (True, None)
    assert result.serverNames == [b"localhost"]


def test_addressIsCheckedAgainstIPSANWithoutSNI(ca: Handshakes) -> None:
    """
    A backend named by address: no SNI, and its certificate must list the
    address as an IP subjectAltName (a DNS name does not do).
    """
    result = handshake(ca.trusting("127.0.0.1"), ca.ca.issue("localhost", "127.0.0.1"))
    assert result.done
    assert result.serverNames == [None]
    refused = handshake(ca.trusting("127.0.0.1"), ca.ca.issue("localhost"))
    assert isinstance(refused.lost, VerificationError)
    assert failureReason(refused.lost, "127.0.0.1") == (
        "certificate does not match IP address 127.0.0.1"
    )


def test_untrustedChainRefusedWithItsReason(ca: Handshakes, tmp_path: Path) -> None:
    """A certificate from another CA is refused: not trusted, and why."""
    stranger = TestCA(tmp_path, "stranger")
    result = handshake(ca.trusting("localhost"), stranger.issue("localhost"))
    assert not result.done
    assert isinstance(result.lost, CertificateChainError)
    assert failureReason(result.lost, "localhost") == (
        "certificate not trusted (unable to get local issuer certificate)"
    )


def test_expiredCertificateRefused(ca: Handshakes) -> None:
    """An expired certificate is refused, and the reason says it expired."""
    result = handshake(ca.trusting("localhost"), ca.ca.issue("localhost", expired=True))
    assert result.lost is not None
    assert failureReason(result.lost, "localhost") == (
        "certificate refused (certificate has expired)"
    )


def test_wrongNameRefused(ca: Handshakes) -> None:
    """A trusted certificate for another name is refused as a name mismatch."""
    result = handshake(ca.trusting("localhost"), ca.ca.issue("other.test"))
    assert isinstance(result.lost, VerificationError)


def test_certificateWithoutSubjectAltNameRefused(ca: Handshakes) -> None:
    """
    A trusted certificate with no subjectAltName is refused, even when its
    common name is the host (optionsForClientTLS accepts it: see tls.py).
    """
    result = handshake(ca.trusting("localhost"), ca.ca.issue(commonName="localhost"))
    assert not result.done
    assert isinstance(result.lost, CertificateError)


def test_unverifiedAcceptsAnythingButSendsSNI(ca: Handshakes, tmp_path: Path) -> None:
    """With verification off any certificate is accepted, and SNI is still sent."""
    stranger = TestCA(tmp_path, "stranger")
    result = handshake(
        ca.trusting("localhost", verify=False), stranger.issue("other.test")
    )
    assert result.done
    assert result.serverNames == [b"localhost"]


# -- the pool waits for the handshake -----------------------------------------

HTTPS = Address("https", "backend.test", 443, TLSPolicy())


@dataclass
class Attempt:
    """What one pool.acquire reported."""

    ready: list[tuple[Any, bool]] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    deferred: Any = None


def makePool() -> tuple[UpstreamPool, FakeEndpoint, Clock]:
    clock = Clock()
    endpoint = FakeEndpoint()
    pool = UpstreamPool(
        None,  # type: ignore[arg-type]
        clock,
        connectTimeout=5.0,
        endpointFactory=lambda address: endpoint,
    )
    return pool, endpoint, clock


def acquire(pool: UpstreamPool, address: Address = HTTPS) -> Attempt:
    attempt = Attempt()
    attempt.deferred = pool.acquire(
        address, lambda c, r: attempt.ready.append((c, r)), attempt.failed.append
    )
    return attempt


def test_connectionHandedOutAfterHandshake() -> None:
    """A TLS connection is handed out only once its handshake is done."""
    pool, endpoint, clock = makePool()
    attempt = acquire(pool)
    [conn] = endpoint.connected
    assert attempt.ready == []
    assert attempt.deferred is not None
    conn.handshakeCompleted()
    assert attempt.ready == [(conn, False)]
    assert clock.getDelayedCalls() == []
    conn.abort()


def test_refusedCertificateIsAConnectFailure() -> None:
    """
    A handshake refused by verification fails the attempt with the reason;
    no request was written, so nothing could be retried as stale.
    """
    pool, endpoint, clock = makePool()
    attempt = acquire(pool)
    [conn] = endpoint.connected
    error = VerificationError(errors=[])
    conn.connectionLost(Failure(error))
    assert attempt.ready == []
    [failure] = attempt.failed
    assert failure.check(BackendTLSError)
    assert failure.getErrorMessage() == (
        "certificate does not match host name backend.test"
    )
    assert conn.transport.value() == b""
    assert clock.getDelayedCalls() == []


def test_stalledHandshakeTimesOut() -> None:
    """A backend that never finishes the handshake fails after connect_timeout."""
    pool, endpoint, clock = makePool()
    attempt = acquire(pool)
    [conn] = endpoint.connected
    clock.advance(4.9)
    assert attempt.failed == []
    clock.advance(0.1)
    [failure] = attempt.failed
    assert failure.check(HandshakeTimeoutError)
    assert failure.getErrorMessage() == "no handshake within 5s"
    assert conn.transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_aRouteConnectTimeoutBoundsItsHandshake() -> None:
    """
    A connection asked for with its own connect timeout (a route's
    connect_timeout) gives up its handshake then; others keep the pool's.
    """
    pool, endpoint, clock = makePool()
    quick = Attempt()
    pool.acquire(
        HTTPS,
        lambda c, r: quick.ready.append((c, r)),
        quick.failed.append,
        False,
        None,
        0.5,
    )
    slow = acquire(pool)
    clock.advance(0.5)
    [failure] = quick.failed
    assert failure.getErrorMessage() == "no handshake within 0.5s"
    assert slow.failed == []
    clock.advance(4.5)
    [failure] = slow.failed
    assert failure.getErrorMessage() == "no handshake within 5s"
    assert [conn.transport.disconnecting for conn in endpoint.connected] == [
        True,
        True,
    ]
    assert clock.getDelayedCalls() == []


def test_cancelledDuringHandshake() -> None:
    """Giving up on the attempt mid-handshake drops the connection."""
    pool, endpoint, clock = makePool()
    attempt = acquire(pool)
    [conn] = endpoint.connected
    attempt.deferred.cancel()
    [failure] = attempt.failed
    assert failure.check(CancelledError)
    assert conn.transport.disconnecting
    conn.connectionLost(Failure(ConnectionLost()))
    assert len(attempt.failed) == 1
    assert clock.getDelayedCalls() == []


def test_tlsConnectionsPooledPerPolicy() -> None:
    """
    A TLS connection is reused like a plain one, but never by a route that
    checks the backend under another policy.
    """
    pool, endpoint, _clock = makePool()
    first = acquire(pool)
    [conn] = endpoint.connected
    conn.handshakeCompleted()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert first.ready == [(conn, False)]
    assert pool.idleCount(HTTPS) == 1
    other = HTTPS._replace(tls=TLSPolicy(verify=False))
    elsewhere = acquire(pool, other)
    assert len(endpoint.connected) == 2
    assert elsewhere.ready == []
    again = acquire(pool, HTTPS)
    assert again.ready == [(conn, True)]
    assert again.deferred is None
    for c in endpoint.connected:
        c.abort()


def test_plainConnectionsDoNotWait() -> None:
    """A plain http connection is handed out as soon as it is connected."""
    pool, endpoint, _clock = makePool()
    attempt = acquire(pool, Address("http", "127.0.0.1", 80))
    [conn] = endpoint.connected
    assert attempt.ready == [(conn, False)]
    assert attempt.deferred is None
    conn.abort()


def test_handshakeLostBeforeAnyoneWaited() -> None:
    """A handshake that failed before the pool asked still reports why."""
    pool, _endpoint, _clock = makePool()
    conn = UpstreamConnection(pool, HTTPS)
    conn.makeConnection(StringTransport())
    conn.connectionLost(Failure(SSL.Error([("SSL routines", "", "bad record mac")])))
    failures: list[Failure] = []
    conn.whenReady().addErrback(failures.append)
    [failure] = failures
    assert failure.check(BackendTLSError)
    assert failure.getErrorMessage() == "handshake failed (bad record mac)"


def test_unusableCAFileFailsTheAttempt(tmp_path: Path) -> None:
    """
    A backend whose tls_ca cannot be read (one added after start-up) fails
    its connection attempt, saying which file, rather than raising.
    """
    reactor = MemoryReactorClock()
    pool = UpstreamPool(reactor, reactor)
    missing = str(tmp_path / "missing.pem")
    attempt = acquire(pool, HTTPS._replace(tls=TLSPolicy(missing)))
    assert attempt.deferred is None
    [failure] = attempt.failed
    assert failure.check(BackendCAError)
    assert failure.getErrorMessage() == f"{missing}: no such file"
