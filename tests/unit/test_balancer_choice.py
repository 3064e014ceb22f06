"""The balancer's choice of member, on a Clock: stickiness, tiers, flags, caps."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_proxy.balancer.keys import RequestFacts
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import DOWN
from twisted_proxy.config.model import Balancer, Member, Sticky


def member(port: int, route: str | None = None, **kw: Any) -> Member:
    return Member(
        url=f"http://127.0.0.1:{port}",
        scheme="http",
        host="127.0.0.1",
        port=port,
        route=route if route is not None else str(port),
        **kw,
    )


def service(*members: Member, **kw: Any) -> tuple[BalancerService, Clock]:
    clock = Clock()
    return BalancerService([Balancer(name="b", members=members, **kw)], clock), clock


def facts(
    cookie: bytes | None = None, target: bytes = b"/", ip: str = "192.0.2.1"
) -> RequestFacts:
    headers = {b"cookie": cookie} if cookie else {}
    return RequestFacts(
        clientAddress=ip, target=target, header=headers.get, secure=False
    )


def picks(
    balancer: BalancerService, n: int, f: RequestFacts | None = None
) -> list[int]:
    out = []
    for _ in range(n):
        chosen = balancer.pick("b", f)
        assert chosen is not None
        out.append(chosen.member.port)
        balancer.release(chosen, True)
    return out


def test_stickyRouteWins() -> None:
    """A client naming a route in its cookie always gets that member."""
    b, _ = service(member(1), member(2), member(3), sticky=Sticky(name="ROUTEID"))
    assert set(picks(b, 20, facts(b"ROUTEID=.2"))) == {2}
    assert set(picks(b, 20, facts(target=b"/x?ROUTEID=.3"))) == {3}


def test_stickyFailoverAndNoFailover() -> None:
    """The sticky member down: another serves, or none when failover is off."""
    b, _ = service(member(1), member(2), sticky=Sticky(name="ROUTEID"))
    b.setFlags("b", "2", disabled=True)
    assert set(picks(b, 5, facts(b"ROUTEID=.2"))) == {1}
    strict, _ = service(
        member(1), member(2), sticky=Sticky(name="ROUTEID", failover=False)
    )
    strict.setFlags("b", "2", disabled=True)
    assert strict.pick("b", facts(b"ROUTEID=.2")) is None


def test_drainKeepsStickySessionsOnly() -> None:
    """A draining member gets no new sessions but keeps its sticky ones."""
    b, _ = service(member(1), member(2), sticky=Sticky(name="ROUTEID"))
    b.setFlags("b", "2", drain=True)
    assert set(picks(b, 10)) == {1}
    assert set(picks(b, 10, facts(b"ROUTEID=.2"))) == {2}


def test_insertedCookieOnlyWhenMissingOrWrong() -> None:
    """The balancer inserts ROUTEID=.<route> unless the client already has it."""
    b, _ = service(member(1), member(2), sticky=Sticky(name="ROUTEID", insert=True))
    one = b.member("b", "1")
    assert b.stickyCookie("b", facts(), one) == b"ROUTEID=.1; Path=/; HttpOnly"
    assert b.stickyCookie("b", facts(b"ROUTEID=.1"), one) is None
    assert b.stickyCookie("b", facts(b"ROUTEID=.2"), one) is not None


def test_environmentNamesBalancerMemberAndRoute() -> None:
    """BALANCER_NAME, _WORKER_NAME and _WORKER_ROUTE name the member that serves."""
    routeless = Member(
        url="http://127.0.0.1:2", scheme="http", host="127.0.0.1", port=2
    )
    b, _ = service(member(1, route="node1"), routeless)
    one, two = b.member("b", "node1"), b.member("b", "http://127.0.0.1:2")
    assert b.environment("b", facts(), one) == {
        "BALANCER_NAME": "balancer://b",
        "BALANCER_WORKER_NAME": "http://127.0.0.1:1",
        "BALANCER_WORKER_ROUTE": "node1",
    }
    assert b.environment("b", facts(b"ROUTEID=.node1"), two) == {
        "BALANCER_NAME": "balancer://b",
        "BALANCER_WORKER_NAME": "http://127.0.0.1:2",
    }


def test_environmentOfStickySessions() -> None:
    """
    With sticky sessions, the route a request names is its SESSION_ROUTE
    (and SESSION_STICKY the name it came under); ROUTE_CHANGED is 1 when it
    named none or another member's, as in Apache.
    """
    b, _ = service(member(1, route="a"), member(2, route="b"), sticky=Sticky())
    a = b.member("b", "a")
    assert b.environment("b", facts(b"ROUTEID=x.a"), a) == {
        "BALANCER_NAME": "balancer://b",
        "BALANCER_WORKER_NAME": "http://127.0.0.1:1",
        "BALANCER_WORKER_ROUTE": "a",
        "BALANCER_SESSION_STICKY": "ROUTEID",
        "BALANCER_SESSION_ROUTE": "a",
    }
    moved = b.environment("b", facts(target=b"/p;routeid=x.b"), a)
    assert moved["BALANCER_SESSION_STICKY"] == "ROUTEID"
    assert moved["BALANCER_SESSION_ROUTE"] == "b"
    assert moved["BALANCER_ROUTE_CHANGED"] == "1"
    new = b.environment("b", facts(), a)
    assert "BALANCER_SESSION_ROUTE" not in new
    assert new["BALANCER_ROUTE_CHANGED"] == "1"
    assert b.environment("b", None, a)["BALANCER_ROUTE_CHANGED"] == "1"


def test_lowestTierServesStandbyWithinTier() -> None:
    """Tier 0 first; its standby only without its primaries; then tier 1."""
    b, _ = service(
        member(1),
        member(2, standby=True),
        member(3, tier=1),
    )
    assert set(picks(b, 6)) == {1}
    b.setFlags("b", "1", disabled=True)
    assert set(picks(b, 6)) == {2}
    b.setFlags("b", "2", disabled=True)
    assert set(picks(b, 6)) == {3}
    b.setFlags("b", "1", disabled=False)
    assert set(picks(b, 6)) == {1}


def test_healthDownIsPassedOverAndNotForced() -> None:
    """A member its health check found down is never picked, even as last resort."""
    b, _ = service(member(1), member(2))
    b.member("b", "1").health = DOWN
    assert set(picks(b, 6)) == {2}
    b.member("b", "2").health = DOWN
    assert b.pick("b") is None


def test_errorRetryAndIgnoreErrors() -> None:
    """A failure puts a member in error for retry seconds, unless it ignores errors."""
    b, clock = service(member(1), member(2, ignore_errors=True), retry=30.0)
    one, two = b.member("b", "1"), b.member("b", "2")
    b.release(b.pick("b", None, [two]) or one, False, failure="connect")
    assert one.inError(clock.seconds())
    b.release(b.pick("b", None, [one]) or two, False, failure="connect")
    assert not two.inError(clock.seconds())
    assert set(picks(b, 4)) == {2}
    clock.advance(30)
    assert set(picks(b, 4)) == {1, 2}


def test_capWaitsForCapacity() -> None:
    """All at max_connections: a release wakes a waiter, or it times out."""
    b, clock = service(member(1, max_connections=1), member(2, max_connections=1))
    first, second = b.pick("b"), b.pick("b")
    assert first is not None
    assert second is not None
    assert b.pick("b") is None
    assert b.atCapacity("b")
    waited: list[bool] = []
    b.whenCapacity("b", 5.0).addCallback(waited.append)
    b.release(first, True)
    assert waited == [True]
    assert b.pick("b") is first
    b.whenCapacity("b", 5.0).addCallback(waited.append)
    clock.advance(5)
    assert waited == [True, False]
    assert clock.getDelayedCalls() == []


def test_maxAttemptsDefaultsToOtherMembers() -> None:
    """max_attempts defaults to every other member once, as Apache's maxattempts."""
    b, _ = service(member(1), member(2), member(3))
    assert b.maxAttempts("b") == 2
    c, _ = service(member(1), member(2), max_attempts=0)
    assert c.maxAttempts("b") == 0


def test_failOnStatusAndResponseTime() -> None:
    """fail_on_status is known per balancer; response time is smoothed."""
    b, _ = service(member(1), fail_on_status=(503,))
    assert b.failsOnStatus("b", 503)
    assert not b.failsOnStatus("b", 500)
    one = b.member("b", "1")
    b.pick("b")
    b.release(one, True, elapsed=1.0)
    b.pick("b")
    b.release(one, True, elapsed=2.0)
    assert one.responseTime == pytest.approx(1.2)


def test_membersAddedAndRemovedKeepCounters() -> None:
    """Adding or removing a member at run time keeps the others' counters."""
    b, _ = service(member(1), member(2))
    picks(b, 10)
    before = {m.name: m.requests for m in b.members("b")}
    b.addMember("b", member(3))
    assert {m.name: m.requests for m in b.members("b")}.items() >= before.items()
    assert 3 in set(picks(b, 9))
    b.removeMember("b", "1")
    assert set(picks(b, 6)) == {2, 3}
    assert b.member("b", "2").requests > before["http://127.0.0.1:2"]
    with pytest.raises(ValueError, match="already a member"):
        b.addMember("b", member(2))


def test_hashMethodIsStickyByKey() -> None:
    """With method hash on ip, one client address always lands on one member."""
    b, _ = service(member(1), member(2), member(3), method="hash", hash_key="ip")
    for ip in ("192.0.2.1", "192.0.2.2", "198.51.100.7"):
        assert len(set(picks(b, 10, facts(ip=ip)))) == 1


def test_snapshotShowsWhatTheManagerShows() -> None:
    """The snapshot has each member's flags, health, counters and response time."""
    b, clock = service(member(1), member(2, standby=True))
    one = b.pick("b")
    assert one is not None
    b.release(one, False, bytesIn=10, bytesOut=3, failure="connect", elapsed=0.5)
    [first, second] = b.snapshot()["b"]
    assert first["name"] == "http://127.0.0.1:1"
    assert first["failures"] == 1
    assert first["in_error"] is True
    assert first["last_failure"] == "connect"
    assert (first["bytes_in"], first["bytes_out"]) == (10, 3)
    assert first["response_time"] == 0.5
    assert first["health"] == "unknown"
    assert second["standby"] is True
    assert second["requests"] == 0
