"""
BalancerService.reconfigure: what a reload does to running balancers.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import DOWN, UNKNOWN, MemberState
from twisted_proxy.config.model import Balancer, HealthCheck, Member


def member(port: int, **settings: Any) -> Member:
    return Member(f"http://127.0.0.1:{port}", "http", "127.0.0.1", port, **settings)


def check(state: MemberState) -> Deferred[tuple[bool, str]]:
    return succeed((True, "ok"))


def served(svc: BalancerService, count: int) -> list[int]:
    ports = []
    for _ in range(count):
        chosen = svc.pick("web")
        assert chosen is not None
        ports.append(chosen.member.port)
        svc.release(chosen, ok=True, bytesIn=10)
    return ports


def test_membersThatStayKeepTheirCounters() -> None:
    """Kept members keep counts; a new one starts at zero; a gone one is gone."""
    svc = BalancerService([Balancer("web", members=(member(1), member(2)))], Clock())
    served(svc, 4)
    svc.reconfigure([Balancer("web", members=(member(2), member(3)))])
    snapshot = {m["name"]: m for m in svc.snapshot()["web"]}
    assert sorted(snapshot) == ["http://127.0.0.1:2", "http://127.0.0.1:3"]
    assert snapshot["http://127.0.0.1:2"]["requests"] == 2
    assert snapshot["http://127.0.0.1:2"]["bytes_in"] == 20
    assert snapshot["http://127.0.0.1:3"]["requests"] == 0
    assert sorted(served(svc, 4)) == [2, 2, 3, 3]


def test_runTimeChangesSurviveUnlessTheFileChangedTheMember() -> None:
    """
    A member drained at run time stays drained when the file did not touch
    it; a member whose weight the file changed takes the file's values.
    """
    svc = BalancerService([Balancer("web", members=(member(1), member(2)))], Clock())
    svc.setFlags("web", "http://127.0.0.1:1", drain=True)
    svc.setFlags("web", "http://127.0.0.1:2", disabled=True)
    svc.reconfigure([Balancer("web", members=(member(1), member(2, weight=3)))])
    one, two = svc.members("web")
    assert (one.drain, one.weight) == (True, 1)
    assert (two.disabled, two.weight) == (False, 3)


def test_aChangedMethodTakesANewPolicy() -> None:
    """The method of the reloaded table is the one that picks."""
    svc = BalancerService([Balancer("web", members=(member(1), member(2)))], Clock())
    svc.reconfigure(
        [Balancer("web", method="hash", hash_key="ip", members=(member(1), member(2)))]
    )
    assert svc.config("web").method == "hash"
    assert len(set(served(svc, 6))) in (1, 2)


def test_balancersComeAndGo() -> None:
    """A new balancer serves; a removed one is no longer known."""
    svc = BalancerService([Balancer("web", members=(member(1),))], Clock())
    svc.reconfigure([Balancer("api", members=(member(5),))])
    assert svc.balancerNames() == ("api",)
    chosen = svc.pick("api")
    assert chosen is not None
    assert chosen.member.port == 5


def test_healthChecksFollowTheFile() -> None:
    """
    A [health] table added is watched (checked at once); removed, its
    members are no longer held down by it.
    """
    clock = Clock()
    svc = BalancerService(
        [Balancer("web", members=(member(1),))], clock, healthCheck=check
    )
    svc.startService()
    try:
        health = HealthCheck(interval=10.0, passes=1, fails=1)
        svc.reconfigure([Balancer("web", members=(member(1),), health=health)])
        [state] = svc.members("web")
        assert svc.health.nextCheck(state) is not None
        state.health = DOWN
        svc.reconfigure([Balancer("web", members=(member(1),))])
        assert state.health == UNKNOWN
        with pytest.raises(KeyError):
            svc.health.tracker(state)
        assert clock.getDelayedCalls() == []
    finally:
        svc.stopService()


def test_membersAddedOrRemovedAtRunTimeStaySoUnlessTheFileSaysOtherwise(
    logged: list[str],
) -> None:
    """
    A member added at run time outlives a reload that does not name it; one
    removed at run time stays removed while the file has it unchanged, and
    comes back when the file changes it. An added member whose route the
    file now gives to another member is dropped, and the log says so.
    """
    svc = BalancerService(
        [Balancer("web", members=(member(1), member(2), member(3)))], Clock()
    )
    svc.addMember("web", member(4))
    svc.addMember("web", member(5, route="e"))
    svc.removeMember("web", "http://127.0.0.1:2")
    svc.removeMember("web", "http://127.0.0.1:3")
    served(svc, 3)
    svc.reconfigure(
        [
            Balancer(
                "web",
                members=(
                    member(1),
                    member(2),
                    member(3, weight=2),
                    member(6, route="e"),
                ),
            )
        ]
    )
    ports = [m.member.port for m in svc.members("web")]
    assert ports == [1, 3, 6, 4]
    assert [m.index for m in svc.members("web")] == [0, 1, 2, 3]
    assert svc.member("web", "http://127.0.0.1:4").requests == 1
    assert (
        "reload: balancer://web: member http://127.0.0.1:5, added at run time, is"
        " dropped: the file gives its route e to another member"
    ) in logged
