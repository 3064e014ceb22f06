"""Tests for L{twisted_proxy.balancer.policy}: every load-balancing method."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import get_args

import pytest
from zope.interface.verify import verifyClass, verifyObject

from twisted_proxy.balancer.policy import (
    POLICIES,
    ByBusyness,
    ByRequests,
    ByTraffic,
    ConsistentHash,
    ILoadBalancingPolicy,
    RandomTwo,
    RoundRobin,
)
from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import BalancerMethod, Member

KEYS = [b"key-%d" % i for i in range(10_000)]


def state(
    port: int,
    weight: int = 1,
    *,
    inFlight: int = 0,
    bytesIn: int = 0,
    bytesOut: int = 0,
) -> MemberState:
    """Return the state of a member on 127.0.0.1:C{port}, with the given counters."""
    member = MemberState(
        Member(
            url=f"http://127.0.0.1:{port}",
            scheme="http",
            host="127.0.0.1",
            port=port,
            route=str(port),
            weight=weight,
        ),
        index=port,
    )
    member.inFlight = inFlight
    member.bytesIn = bytesIn
    member.bytesOut = bytesOut
    return member


def ports(chosen: Iterable[MemberState | None]) -> list[int]:
    """Return the ports of the members picked."""
    result = []
    for member in chosen:
        assert member is not None
        result.append(member.member.port)
    return result


def pickMany(
    policy: ILoadBalancingPolicy,
    members: Sequence[MemberState],
    count: int,
    *,
    hold: bool = False,
    sent: int = 0,
) -> list[int]:
    """
    Pick C{count} times as the service does; return the ports picked.

    Each pick is in flight until the next one, or for good with C{hold};
    C{sent} bytes are counted against the member picked.
    """
    picked = []
    for _ in range(count):
        chosen = policy.pick(members)
        assert chosen is not None
        chosen.requests += 1
        chosen.bytesOut += sent
        if hold:
            chosen.inFlight += 1
        picked.append(chosen.member.port)
    return picked


def mapping(
    policy: ILoadBalancingPolicy, members: Sequence[MemberState]
) -> dict[bytes, int]:
    """Return the port every one of L{KEYS} goes to."""
    result = {}
    for key in KEYS:
        chosen = policy.pick(members, key)
        assert chosen is not None
        result[key] = chosen.member.port
    return result


ALL_POLICIES = sorted(POLICIES)


def test_everyMethodRegistered() -> None:
    """Every method the config model allows has its class registered by that name."""
    assert set(POLICIES) == set(get_args(BalancerMethod))
    assert dict(POLICIES) == {
        "byrequests": ByRequests,
        "bytraffic": ByTraffic,
        "bybusyness": ByBusyness,
        "roundrobin": RoundRobin,
        "random2": RandomTwo,
        "hash": ConsistentHash,
    }


@pytest.mark.parametrize("name", ALL_POLICIES)
def test_providesInterface(name: str) -> None:
    """Every policy, built with no arguments, provides ILoadBalancingPolicy."""
    factory = POLICIES[name]
    assert verifyClass(ILoadBalancingPolicy, factory)  # type: ignore[arg-type]
    assert verifyObject(ILoadBalancingPolicy, factory())


@pytest.mark.parametrize("name", ALL_POLICIES)
def test_noCandidates(name: str) -> None:
    """Every policy picks nothing from no candidates, with or without a key."""
    policy = POLICIES[name]()
    assert policy.pick([]) is None
    assert policy.pick([], b"key") is None


@pytest.mark.parametrize("name", ALL_POLICIES)
def test_oneCandidate(name: str) -> None:
    """Every policy picks the only candidate, whatever its counters."""
    only = state(1, 3, inFlight=7, bytesIn=100)
    policy = POLICIES[name]()
    assert [policy.pick([only]), policy.pick([only], b"k")] == [only, only]


@pytest.mark.parametrize("name", ALL_POLICIES)
def test_tupleCandidates(name: str) -> None:
    """Every policy takes any sequence of candidates, not only a list."""
    members = (state(1), state(2))
    policy = POLICIES[name]()
    assert policy.pick(members, b"k") in members


@pytest.mark.parametrize(
    "name", ["byrequests", "roundrobin", "bytraffic", "bybusyness"]
)
def test_keyIgnored(name: str) -> None:
    """Methods that do not hash pick the same members whether a key is given."""
    withKey = [state(1, 1), state(2, 2), state(3, 3)]
    without = [state(1, 1), state(2, 2), state(3, 3)]
    first, second = POLICIES[name](), POLICIES[name]()
    assert ports(first.pick(withKey, b"key-%d" % i) for i in range(12)) == ports(
        second.pick(without) for _ in range(12)
    )


def test_byTrafficFewestBytes() -> None:
    """bytraffic picks the member with the fewest bytes in and out together."""
    members = [
        state(1, bytesIn=500, bytesOut=0),
        state(2, bytesIn=200, bytesOut=200),
        state(3, bytesIn=0, bytesOut=450),
    ]
    assert ports([ByTraffic().pick(members)]) == [2]


def test_byTrafficPerWeight() -> None:
    """bytraffic divides each member's bytes by its weight."""
    members = [state(1, 1, bytesIn=100), state(2, 3, bytesIn=240)]
    assert ports([ByTraffic().pick(members)]) == [2]


def test_byTrafficExactShares() -> None:
    """Equal requests on weights 1:2:3 split 600 picks exactly 100/200/300."""
    members = [state(1, 1), state(2, 2), state(3, 3)]
    picked = pickMany(ByTraffic(), members, 600, sent=1000)
    assert Counter(picked) == {1: 100, 2: 200, 3: 300}
    assert [m.bytesOut for m in members] == [100_000, 200_000, 300_000]


def test_byTrafficTiesByRequests() -> None:
    """bytraffic shares ties by request counting, leaving the others' scores alone."""
    members = [state(1, 1), state(2, 2), state(3, 1, bytesIn=10)]
    assert pickMany(ByTraffic(), members, 6) == [2, 1, 2] * 2
    assert [m.lbStatus for m in members] == [0, 0, 0]


def test_byTrafficExactComparison() -> None:
    """Shares are compared exactly: a byte of difference counts at any size."""
    members = [state(1, 1, bytesIn=2**60 + 1), state(2, 1, bytesIn=2**60)]
    assert ports([ByTraffic().pick(members)]) == [2]
    members = [state(1, 3, bytesIn=3 * 10**17 + 3), state(2, 1, bytesIn=10**17 + 1)]
    assert ports([ByTraffic().pick(members)]) == [1]


def test_byBusynessFewestInFlight() -> None:
    """bybusyness picks the member with the fewest requests in flight."""
    members = [state(1, inFlight=3), state(2, inFlight=1), state(3, inFlight=2)]
    assert ports([ByBusyness().pick(members)]) == [2]


def test_byBusynessPerWeight() -> None:
    """bybusyness divides each member's requests in flight by its weight."""
    members = [state(1, 1, inFlight=2), state(2, 2, inFlight=3)]
    assert ports([ByBusyness().pick(members)]) == [2]


def test_byBusynessHeldRequestsExact() -> None:
    """Requests that stay open (tunnels) fill weights 1:1:2 exactly 100/100/200."""
    members = [state(1, 1), state(2, 1), state(3, 2)]
    picked = pickMany(ByBusyness(), members, 400, hold=True)
    assert [m.inFlight for m in members] == [100, 100, 200]
    assert Counter(picked[:4]) == {1: 1, 2: 1, 3: 2}


def test_byBusynessIdleIsByRequests() -> None:
    """With nothing in flight, bybusyness gives byrequests' exact sequence."""
    members = [state(1, 1), state(2, 2), state(3, 3)]
    picked = pickMany(ByBusyness(), members, 600)
    assert picked[:18] == [3, 2, 1, 3, 2, 3] * 3
    assert Counter(picked) == {1: 100, 2: 200, 3: 300}


def test_byBusynessBusyMemberBanksNothing() -> None:
    """A member held busy is not scored meanwhile, so it wins no run of ties later."""
    members = [state(1, inFlight=1), state(2), state(3)]
    policy = ByBusyness()
    assert pickMany(policy, members, 10) == [2, 3] * 5
    assert [m.lbStatus for m in members] == [0, 0, 0]
    members[0].inFlight = 0
    assert pickMany(policy, members, 6) == [1, 2, 3] * 2


class FixedDraws(random.Random):
    """A random source whose C{randrange} answers are given in advance."""

    def __new__(cls, draws: Iterable[int]) -> FixedDraws:
        # Python 3.10's Random.__new__ seeds itself with the arguments given
        # to the class (a list cannot be a seed): it gets a fixed one instead.
        return super().__new__(cls, 0)  # type: ignore[call-arg]

    def __init__(self, draws: Iterable[int]) -> None:
        """Answer C{randrange} with C{draws}, in order."""
        super().__init__(0)
        self.draws = iter(draws)

    def randrange(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        """Return the next given draw."""
        return next(self.draws)


def test_randomTwoLessBusyWins() -> None:
    """random2 compares its two draws by requests in flight per weight."""
    members = [state(1, 1, inFlight=2), state(2, 3, inFlight=2), state(3, 1)]
    assert ports([RandomTwo(FixedDraws([0, 0])).pick(members)]) == [2]
    assert ports([RandomTwo(FixedDraws([1, 1])).pick(members)]) == [3]


def test_randomTwoDrawsDistinct() -> None:
    """The second draw skips the first member, so the two are always distinct."""
    members = [state(1), state(2, inFlight=1), state(3)]
    # Drawn 1 then 1 of the two others: the second, then the third member.
    assert ports([RandomTwo(FixedDraws([1, 1])).pick(members)]) == [3]
    idle, busy = state(1), state(2, inFlight=1)
    policy = RandomTwo(random.Random(1))
    assert set(pickMany(policy, [idle, busy], 1000)) == {1}


def test_randomTwoTieGoesToFirstDraw() -> None:
    """On equal busyness the first member drawn wins."""
    members = [state(1), state(2), state(3)]
    assert ports([RandomTwo(FixedDraws([2, 0])).pick(members)]) == [3]
    assert ports([RandomTwo(FixedDraws([0, 1])).pick(members)]) == [1]


def test_randomTwoStatistics() -> None:
    """With busyness 0, 5, 10, the busiest never wins and the idlest wins ~2/3."""
    members = [state(1, inFlight=0), state(2, inFlight=5), state(3, inFlight=10)]
    picked = Counter(pickMany(RandomTwo(random.Random(42)), members, 3000))
    assert picked[3] == 0
    assert abs(picked[1] - 2000) < 150
    assert abs(picked[2] - 1000) < 150


def test_randomTwoEvenWhenIdle() -> None:
    """Idle members of equal weight are picked about equally often."""
    members = [state(port) for port in range(1, 5)]
    picked = Counter(pickMany(RandomTwo(random.Random(7)), members, 4000))
    assert all(abs(count - 1000) < 150 for count in picked.values()), picked


def test_randomTwoSeeded() -> None:
    """The injected random source alone decides the draws: one seed, one sequence."""
    members = [state(port) for port in range(1, 6)]
    first = pickMany(RandomTwo(random.Random(3)), members, 50)
    again = pickMany(RandomTwo(random.Random(3)), members, 50)
    assert first == again
    assert len(set(first)) == 5
    assert RandomTwo().pick(members) in members


def test_hashSameKeySameMember() -> None:
    """A key keeps going to one member, and fresh states of the same members agree."""
    members = [state(port) for port in range(1, 6)]
    policy = ConsistentHash()
    first = mapping(policy, members)
    assert mapping(policy, members) == first
    assert mapping(ConsistentHash(), [state(port) for port in range(1, 6)]) == first
    assert len(set(first.values())) == 5


def test_hashIgnoresOrderAndCounters() -> None:
    """Where a key goes depends on the members, not their order or their load."""
    members = [state(port) for port in range(1, 6)]
    expected = mapping(ConsistentHash(), members)
    for member in members:
        member.inFlight = member.member.port * 10
        member.requests = 99
    assert mapping(ConsistentHash(), members[::-1]) == expected


def test_hashNoKey() -> None:
    """No key hashes like an empty key: all such requests go to one member."""
    members = [state(port) for port in range(1, 11)]
    policy = ConsistentHash()
    chosen = {policy.pick(members) for _ in range(5)}
    assert chosen == {policy.pick(members, b"")}


def test_hashEvenSpread() -> None:
    """Ten members of equal weight get about a tenth of the keys each."""
    members = [state(port) for port in range(1, 11)]
    counts = Counter(mapping(ConsistentHash(), members).values())
    assert len(counts) == 10
    assert all(700 <= count <= 1300 for count in counts.values()), counts


def test_hashRemoveOneMember() -> None:
    """Removing one of ten members moves only its own keys, about a tenth of them."""
    members = [state(port) for port in range(1, 11)]
    policy = ConsistentHash()
    before = mapping(policy, members)
    after = mapping(policy, members[:4] + members[5:])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert {before[key] for key in moved} == {5}
    assert moved == [key for key in KEYS if before[key] == 5]
    assert 0 < len(moved) <= 1500
    assert mapping(ConsistentHash(), members[:4] + members[5:]) == after


def test_hashAddOneMember() -> None:
    """Adding an eleventh member moves keys only to it, about an eleventh of them."""
    members = [state(port) for port in range(1, 11)]
    policy = ConsistentHash()
    before = mapping(policy, members)
    after = mapping(policy, [*members, state(11)])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert {after[key] for key in moved} == {11}
    assert 0 < len(moved) <= 1500 * 10 // 11


def test_hashMemberReturns() -> None:
    """A member that drops out and comes back gets exactly its old keys back."""
    members = [state(port) for port in range(1, 11)]
    policy = ConsistentHash()
    before = mapping(policy, members)
    without = mapping(policy, members[1:])
    assert mapping(policy, members) == before
    assert mapping(policy, members[1:]) == without
    assert 1 not in without.values()


def test_hashWeights() -> None:
    """A member of weight 3 gets about three times the keys of one of weight 1."""
    members = [state(1, 3), *(state(port) for port in range(2, 6))]
    counts = Counter(mapping(ConsistentHash(), members).values())
    light = sum(counts[port] for port in range(2, 6)) / 4
    assert 2.4 <= counts[1] / light <= 3.6, counts


def test_hashWeightChangeNextPick() -> None:
    """A weight changed at run time reshapes the ring on the very next pick."""
    members = [state(port) for port in range(1, 6)]
    policy = ConsistentHash()
    before = mapping(policy, members)
    members[0].weight = 3
    after = mapping(policy, members)
    fresh = [state(1, 3), *(state(port) for port in range(2, 6))]
    assert after == mapping(ConsistentHash(), fresh)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved
    assert {after[key] for key in moved} == {1}
