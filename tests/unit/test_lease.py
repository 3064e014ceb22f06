"""Tests for L{twisted_proxy.balancer.lease}: the balancer's client, in memory."""

from __future__ import annotations

from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.defer import CancelledError
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    TimeoutError,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_proxy.balancer import BalancerService
from twisted_proxy.balancer.keys import RequestFacts, headerLookup
from twisted_proxy.balancer.lease import (
    CAPACITY_WAIT,
    Lease,
    connectFailure,
    endpointFailure,
    upgradeFailure,
)
from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import Balancer, Member, Sticky
from twisted_proxy.tls.backend import (
    BackendCAError,
    BackendTLSError,
    CertificateChainError,
    HandshakeTimeoutError,
)
from twisted_proxy.upstream.interfaces import (
    FAIL_CONNECT,
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
)


def member(port: int, **flags: Any) -> Member:
    """A member on 127.0.0.1:C{port} whose route is C{rPORT}."""
    return Member(
        url=f"http://127.0.0.1:{port}",
        scheme="http",
        host="127.0.0.1",
        port=port,
        route=f"r{port}",
        **flags,
    )


def addressOf(state: MemberState) -> Address:
    """The pool key of a member, as ProxyContext.memberAddress makes it."""
    m = state.member
    return Address(m.scheme, m.host, m.port)


def facts(cookie: bytes | None = None) -> RequestFacts:
    """A request's facts, with a Cookie header when given."""
    pairs = [(b"Cookie", cookie)] if cookie is not None else []
    return RequestFacts("127.0.0.1", b"/", headerLookup(pairs), False)


class Connector:
    """
    A front end in memory: it "connects" to each address its lease gives it
    and fails with the kind listed for that port, failing over whenever the
    lease allows; any other port answers.
    """

    def __init__(self, failures: dict[int, str] | None = None) -> None:
        self.failures = failures or {}
        self.replayable = True
        self.attempts: list[int] = []
        self.answered: int | None = None
        self.unavailable503 = 0
        self.gaveUp: str | None = None
        self.lease: Lease

    def attempt(self, address: Address) -> None:
        self.attempts.append(address.port)
        kind = self.failures.get(address.port)
        if kind is None:
            self.answered = address.port
            return
        lease = self.lease
        if lease.canFailOver(self.replayable):
            lease.failOver(kind)
            return
        self.gaveUp = kind
        lease.release(False, kind)

    def unavailable(self) -> None:
        self.unavailable503 += 1


def leaseFor(
    *members: Member,
    failures: dict[int, str] | None = None,
    requestFacts: RequestFacts | None = None,
    capacityWait: float | None = CAPACITY_WAIT,
    **config: Any,
) -> tuple[Lease, Connector, BalancerService, Clock]:
    """A lease on balancer "web" of C{members}, and its connector, unstarted."""
    clock = Clock()
    svc = BalancerService([Balancer("web", members=members, **config)], clock)
    connector = Connector(failures)
    lease = Lease(
        connector,
        clock,
        "route *",
        balancer=svc,
        balancerName="web",
        facts=requestFacts or facts(),
        memberAddress=addressOf,
        capacityWait=capacityWait,
    )
    connector.lease = lease
    return lease, connector, svc, clock


def state(svc: BalancerService, port: int) -> MemberState:
    """The state of the member on C{port}."""
    return svc.member("web", f"http://127.0.0.1:{port}")


# -- sorting failures --


@pytest.mark.parametrize(
    ("error", "kind", "detail"),
    [
        (ConnectionRefusedError("refused"), FAIL_CONNECT, "connect failed: "),
        (ConnectError("unreachable"), FAIL_CONNECT, "connect failed: "),
        (TimeoutError("slow"), FAIL_TIMEOUT, "connect timed out ("),
        (BackendTLSError("certificate unknown"), FAIL_CONNECT, "TLS failed: "),
        (BackendCAError("no such file"), FAIL_CONNECT, "TLS failed: "),
        (HandshakeTimeoutError("handshake stalled"), FAIL_TIMEOUT, "TLS failed: "),
    ],
)
def test_connectFailureKinds(error: Exception, kind: str, detail: str) -> None:
    """A pool connection failure is refused, timed out or TLS, as the log says."""
    failed = connectFailure(Failure(error))
    assert failed is not None
    assert failed[0] == kind
    assert failed[1].startswith(detail)
    assert str(error.args[0]) in failed[1]


@pytest.mark.parametrize("error", [CancelledError(), ConnectingCancelledError(None)])
def test_connectCancelledIsNoFailure(error: Exception) -> None:
    """A connection attempt the exchange cancelled is not a backend failure."""
    assert connectFailure(Failure(error)) is None


def test_endpointFailureKinds() -> None:
    """A WebSocket leg's connect failure is a timeout when it says so."""
    refused = endpointFailure(Failure(ConnectionRefusedError("no")))
    timedOut = endpointFailure(Failure(TimeoutError("x")))
    assert refused is not None
    assert refused[0] == FAIL_CONNECT
    assert refused[1].startswith("connect failed: ")
    assert timedOut is not None
    assert timedOut[0] == FAIL_TIMEOUT
    assert timedOut[1].startswith("connect failed: ")
    assert endpointFailure(Failure(ConnectingCancelledError(None))) is None


def test_upgradeFailureKinds() -> None:
    """A backend that never finished its WebSocket handshake: why, sorted."""
    tls = upgradeFailure(Failure(SSL.Error([])), "b.test", False, None)
    chain = upgradeFailure(Failure(CertificateChainError(18, 0)), "b.test", False, None)
    assert tls[0] == chain[0] == FAIL_CONNECT
    assert tls[1].startswith("TLS failed: ")
    assert upgradeFailure(None, "b.test", True, None) == (
        FAIL_TIMEOUT,
        "WebSocket handshake timed out",
    )
    assert upgradeFailure(None, "b.test", False, "no 101") == (
        FAIL_PROTOCOL,
        "bad handshake: no 101",
    )
    lost = Failure(ConnectionRefusedError("gone"))
    assert upgradeFailure(lost, "b.test", False, None) == (
        FAIL_RESET,
        "closed before the WebSocket handshake",
    )


# -- a fixed backend --


def test_fixedBackendIsTriedOnceAndNeverFailsOver() -> None:
    """A route to one backend tries it; there is no member to fail over from."""
    connector = Connector({3000: FAIL_CONNECT})
    fixed = Address("http", "127.0.0.1", 3000)
    lease = Lease(connector, Clock(), "route *", address=fixed)
    connector.lease = lease
    lease.start()
    assert connector.attempts == [3000]
    assert connector.gaveUp == FAIL_CONNECT
    assert lease.member is None
    assert lease.environment() == {}
    assert lease.stickyCookie() is None


# -- failover --


@pytest.mark.parametrize("kind", [FAIL_CONNECT, FAIL_TIMEOUT, FAIL_RESET])
def test_failoverTriesEachMemberOnce(kind: str) -> None:
    """Every member failing: each is tried once and put in error, then none left."""
    lease, connector, svc, _ = leaseFor(
        member(1), member(2), member(3), failures={1: kind, 2: kind, 3: kind}
    )
    lease.start()
    assert sorted(connector.attempts) == [1, 2, 3]
    assert connector.gaveUp == kind
    for port in (1, 2, 3):
        s = state(svc, port)
        assert (s.failures, s.lastFailure, s.inFlight) == (1, kind, 0)


def test_failoverReachesAWorkingMember() -> None:
    """A refused member is put in error and the next one answers."""
    lease, connector, svc, _ = leaseFor(
        member(1), member(2), failures={1: FAIL_CONNECT}, method="bybusyness"
    )
    lease.start()
    assert connector.attempts == [1, 2]
    assert connector.answered == 2
    assert lease.member is state(svc, 2)
    assert state(svc, 1).failures == 1
    lease.release(True)
    assert state(svc, 2).inFlight == 0
    assert state(svc, 2).failures == 0


def test_maxAttemptsBoundsTheMembersTried() -> None:
    """max_attempts = 1: the first member and one other, never a third."""
    lease, connector, _, _ = leaseFor(
        member(1),
        member(2),
        member(3),
        failures={1: FAIL_CONNECT, 2: FAIL_CONNECT, 3: FAIL_CONNECT},
        max_attempts=1,
    )
    lease.start()
    assert len(connector.attempts) == 2
    assert connector.gaveUp == FAIL_CONNECT


def test_maxAttemptsZeroNeverFailsOver() -> None:
    """max_attempts = 0: the first member's failure is the request's."""
    lease, connector, _, _ = leaseFor(
        member(1),
        member(2),
        failures={1: FAIL_CONNECT, 2: FAIL_CONNECT},
        max_attempts=0,
    )
    lease.start()
    assert len(connector.attempts) == 1


def test_aBodyAlreadySentIsNeverSentAgain() -> None:
    """A request that cannot be replayed stays with the member that failed it."""
    lease, connector, svc, _ = leaseFor(
        member(1), member(2), failures={1: FAIL_RESET, 2: FAIL_RESET}
    )
    connector.replayable = False
    lease.start()
    assert len(connector.attempts) == 1
    assert connector.gaveUp == FAIL_RESET
    assert sum(state(svc, p).failures for p in (1, 2)) == 1


def test_freshRetryOnceOnly() -> None:
    """The extra try on a fresh connection is granted once per request."""
    lease, _, _, _ = leaseFor(member(1))
    assert lease.retryFresh()
    assert not lease.retryFresh()


# -- sticky sessions --


def stickyToRefusing(sticky: Sticky) -> tuple[Lease, Connector, BalancerService]:
    """A started lease for a request stuck to member 2, which refuses."""
    lease, connector, svc, _ = leaseFor(
        member(1),
        member(2),
        failures={2: FAIL_CONNECT},
        requestFacts=facts(b"ROUTEID=.r2"),
        sticky=sticky,
    )
    lease.start()
    return lease, connector, svc


def test_stickyMemberFailsOverToAnother() -> None:
    """A sticky request whose member is refused goes to another (failover on)."""
    lease, connector, _ = stickyToRefusing(Sticky(insert=True))
    assert connector.attempts == [2, 1]
    assert connector.answered == 1
    # The client is moved to the member that answered.
    assert lease.stickyCookie() == b"ROUTEID=.r1; Path=/; HttpOnly"
    env = lease.environment()
    assert env["BALANCER_WORKER_ROUTE"] == "r1"
    assert env["BALANCER_ROUTE_CHANGED"] == "1"


def test_stickyWithoutFailoverAnswers503() -> None:
    """With sticky failover off, a request whose member failed gets 503."""
    lease, connector, svc = stickyToRefusing(Sticky(failover=False))
    assert connector.attempts == [2]
    assert connector.unavailable503 == 1
    assert state(svc, 2).inFlight == 0


# -- capacity --


def test_allMembersFullWaitsThen503() -> None:
    """Every member at max_connections: the request waits, then gets 503."""
    lease, connector, svc, clock = leaseFor(member(1, max_connections=1))
    busy = svc.pick("web")
    assert busy is not None
    lease.start()
    assert (connector.attempts, connector.unavailable503) == ([], 0)
    clock.advance(CAPACITY_WAIT)
    assert (connector.attempts, connector.unavailable503) == ([], 1)
    assert clock.getDelayedCalls() == []


def test_aMemberFreedDuringTheWaitServes() -> None:
    """A member released while the request waits for capacity takes it."""
    lease, connector, svc, clock = leaseFor(member(1, max_connections=1))
    busy = svc.pick("web")
    assert busy is not None
    lease.start()
    svc.release(busy, True)
    assert connector.attempts == [1]
    assert clock.getDelayedCalls() == []


def test_noCapacityWaitAnswers503AtOnce() -> None:
    """A lease without a capacity wait (WebSocket handshakes) answers at once."""
    lease, connector, svc, _ = leaseFor(member(1, max_connections=1), capacityWait=None)
    assert svc.pick("web") is not None
    lease.start()
    assert connector.unavailable503 == 1


# -- releasing --


def test_releaseIsOnceOnly() -> None:
    """Releasing twice hands the member back once, with its bytes and time."""
    lease, _, svc, clock = leaseFor(member(1))
    lease.start()
    clock.advance(2)
    lease.release(True, bytesIn=10, bytesOut=5, timed=True)
    lease.release(False, FAIL_RESET, bytesIn=10, bytesOut=5, timed=True)
    s = state(svc, 1)
    assert (s.inFlight, s.failures, s.bytesIn, s.bytesOut) == (0, 0, 10, 5)
    assert s.responseTime == 2


def test_clientGoneDuringTheCapacityWait() -> None:
    """A client gone while waiting for capacity: no member is picked for it."""
    lease, connector, svc, clock = leaseFor(member(1, max_connections=1))
    busy = svc.pick("web")
    assert busy is not None
    lease.start()
    lease.release(True)
    svc.release(busy, True)
    clock.advance(CAPACITY_WAIT)
    assert connector.attempts == []
    assert connector.unavailable503 == 0
    assert state(svc, 1).inFlight == 0


def test_failOnStatusPutsTheMemberInError() -> None:
    """A member answering a fail_on_status status is in error once released."""
    lease, _, svc, _ = leaseFor(member(1), member(2), fail_on_status=(503,))
    lease.start()
    served = lease.member
    assert served is not None
    lease.answered(200)
    lease.answered(503)
    lease.release(True)
    assert served.lastFailure == "answered 503"
    assert served.inFlight == 0


def test_otherStatusesLeaveTheMemberWell() -> None:
    """A status not in fail_on_status is a good exchange."""
    lease, _, _, _ = leaseFor(member(1), fail_on_status=(503,))
    lease.start()
    served = lease.member
    assert served is not None
    lease.answered(500)
    lease.release(True)
    assert served.failures == 0
