"""
Load-balancing methods (Apache's ``lbmethod``): choose one member from candidates.

Each method is a small class registered in L{POLICIES} by its config name; the
L{BalancerService} makes one instance per balancer and hands it the members
that may be picked right now. Policies are pure: no clock, no I/O.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from hashlib import blake2b
from math import gcd

from zope.interface import Interface, implementer

from twisted_proxy.balancer.state import MemberState

__all__ = [
    "POLICIES",
    "VIRTUAL_NODES",
    "ByBusyness",
    "ByRequests",
    "ByTraffic",
    "ConsistentHash",
    "ILoadBalancingPolicy",
    "RandomTwo",
    "RoundRobin",
]


class ILoadBalancingPolicy(Interface):
    """A load-balancing method: picks one member among the candidates."""

    def pick(
        members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """
        Return the member to use, or C{None} when C{members} is empty.

        C{members} are already filtered (usable, right tier, ...), in
        configured order. The caller counts the pick. C{key} is the request's
        hash key (``hash_key``); only L{ConsistentHash} reads it.
        """


@implementer(ILoadBalancingPolicy)
class ByRequests:
    """
    Apache's ``byrequests``: weighted request counting, exactly as mod_lbmethod does.

    Every pick adds each candidate's weight to its ``lbStatus``, takes the highest
    (the first one on a tie) and takes the candidates' total weight off it. Over a
    cycle each member gets its weight's share, spread out rather than in runs.
    """

    def pick(
        self, members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """Return the member with the highest running score, then lower its score."""
        best: MemberState | None = None
        total = 0
        for member in members:
            member.lbStatus += member.weight
            total += member.weight
            if best is None or member.lbStatus > best.lbStatus:
                best = member
        if best is not None:
            best.lbStatus -= total
        return best


def _smoothSchedule(members: Sequence[MemberState]) -> list[MemberState]:
    """Return one weighted cycle, each member spread out (smooth weighted order)."""
    divisor = 0
    for member in members:
        divisor = gcd(divisor, member.weight)
    weights = [member.weight // divisor for member in members]
    total = sum(weights)
    scores = [0] * len(members)
    schedule = []
    for _ in range(total):
        best = 0
        for i, weight in enumerate(weights):
            scores[i] += weight
            if scores[i] > scores[best]:
                best = i
        scores[best] -= total
        schedule.append(members[best])
    return schedule


@implementer(ILoadBalancingPolicy)
class RoundRobin:
    """
    Take the members in turn: plain cycling, or a weighted cycle.

    A member of weight 2 appears twice per cycle, interleaved with the others.
    The cycle is worked out once per set of candidates; when that set changes,
    the turn passes to the member after the last one picked, in configured order.
    """

    def __init__(self) -> None:
        self._key: tuple[tuple[MemberState, int], ...] = ()
        self._schedule: list[MemberState] = []
        self._position = 0
        self._last: MemberState | None = None

    def pick(
        self, members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """Return the next member of the cycle over C{members}."""
        if not members:
            return None
        cycle = tuple((member, member.weight) for member in members)
        if cycle != self._key:
            self._rebuild(members, cycle)
        schedule = self._schedule
        chosen = schedule[self._position]
        self._position = (self._position + 1) % len(schedule)
        self._last = chosen
        return chosen

    def _rebuild(
        self,
        members: Sequence[MemberState],
        key: tuple[tuple[MemberState, int], ...],
    ) -> None:
        """Work out the cycle for a new set of candidates and where to resume."""
        self._key = key
        self._schedule = schedule = _smoothSchedule(members)
        last = self._last
        if last is None:
            self._position = 0
        elif last in schedule:
            self._position = (schedule.index(last) + 1) % len(schedule)
        else:
            after = [m for m in members if m.index > last.index]
            following = min(after or members, key=lambda m: m.index)
            self._position = schedule.index(following)


def _leastLoaded(
    members: Sequence[MemberState], load: Callable[[MemberState], int]
) -> list[MemberState]:
    """
    Return the members with the lowest C{load} per unit of weight, in order.

    One pass; the ratios are compared exactly (C{a/b < c/d} as C{a*d < c*b}),
    so equal shares tie however large the counters grow.
    """
    least: list[MemberState] = []
    leastLoad = 0
    leastWeight = 1
    for member in members:
        value = load(member)
        mine = value * leastWeight
        theirs = leastLoad * member.weight
        if not least or mine < theirs:
            least = [member]
            leastLoad = value
            leastWeight = member.weight
        elif mine == theirs:
            least.append(member)
    return least


def _traffic(member: MemberState) -> int:
    """Return the bytes exchanged with C{member}, both ways."""
    return member.bytesIn + member.bytesOut


def _busyness(member: MemberState) -> int:
    """Return the requests (and WebSockets and tunnels) C{member} has in flight."""
    return member.inFlight


@implementer(ILoadBalancingPolicy)
class ByTraffic:
    """
    Apache's ``bytraffic``: the member with the fewest bytes, in plus out, per weight.

    Members tied on that share are told apart by L{ByRequests} counting among
    them alone, so equal traffic (a fresh start, say) is shared by weight
    instead of always going to the first member.
    """

    def __init__(self) -> None:
        """Start with a L{ByRequests} of its own for the ties."""
        self._tieBreak = ByRequests()

    def pick(
        self, members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """Return the member with the least traffic for its weight."""
        return self._tieBreak.pick(_leastLoaded(members, _traffic))


@implementer(ILoadBalancingPolicy)
class ByBusyness:
    """
    Apache's ``bybusyness``: the fewest requests in flight per weight.

    Open WebSockets and tunnels are in flight too. Ties go to L{ByRequests}
    counting, as in mod_lbmethod_bybusyness, but only the tied members are
    scored (Apache scores every usable one): a member held busy by a long
    tunnel does not bank a lead that would later win it every tie.
    """

    def __init__(self) -> None:
        """Start with a L{ByRequests} of its own for the ties."""
        self._tieBreak = ByRequests()

    def pick(
        self, members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """Return the least busy member for its weight."""
        return self._tieBreak.pick(_leastLoaded(members, _busyness))


@implementer(ILoadBalancingPolicy)
class RandomTwo:
    """
    The power of two random choices: draw two distinct members, the less busy wins.

    Busy means in flight per weight, as for L{ByBusyness}; on a tie the first
    drawn wins, which is random already. Nearly as even as L{ByBusyness}, at a
    constant cost per pick and without every proxy rushing to the same member.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        """
        :param rng: where the draws come from; a fresh C{random.Random()} by default.
        """
        self._rng = random.Random() if rng is None else rng

    def pick(
        self, members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """Return the less busy of two distinct members drawn at random."""
        count = len(members)
        if count < 2:
            return members[0] if members else None
        first = self._rng.randrange(count)
        second = self._rng.randrange(count - 1)
        if second >= first:
            second += 1
        a = members[first]
        b = members[second]
        if b.inFlight * a.weight < a.inFlight * b.weight:
            return b
        return a


VIRTUAL_NODES = 100
"""Points a member puts on the L{ConsistentHash} ring per unit of weight."""


def _ringHash(data: bytes) -> int:
    """Return a stable 64-bit position on the ring (unlike C{hash()}, never salted)."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


@implementer(ILoadBalancingPolicy)
class ConsistentHash:
    """
    Consistent hashing on the request's key: one key, one member, while it lasts.

    Each member puts L{VIRTUAL_NODES} x weight points on a ring, at the hashes
    of C{"<name>#<i>"}; a key goes to the member of the first point at or after
    its own hash, clockwise, skipping members that are not candidates now. So
    a member leaving moves only its own keys, spread over the others, and a
    member joining takes only keys from the others: about 1/N of them. Points
    come from the member's name, so every proxy and every restart agrees.

    The ring is rebuilt (sorting 100 points per unit of weight: tens of
    milliseconds for 1,000 members) only when a candidate is new to it or its
    weight has changed, and then holds exactly the candidates. Members dropping
    out (in error, at their cap) are skipped, not rebuilt away, so a member
    flapping costs a pass over the candidates, not a rebuild. A pick is a
    bisection of the ring and a walk (one step, on average, while every member
    on the ring is a candidate), after one allocation-free pass over the
    candidates to notice a weight changed at run time.
    """

    def __init__(self) -> None:
        """Start with an empty ring; the first pick builds it."""
        self._points: list[int] = []
        """The ring: sorted point positions."""
        self._owners: list[MemberState] = []
        """The member each point of the ring belongs to."""
        self._ringWeights: dict[MemberState, int] = {}
        """Each member on the ring, with the weight its points were made for."""
        self._pointCache: dict[str, list[int]] = {}
        """Point positions by member name, C{"<name>#<i>"} for i from 0."""
        # The previous pick's candidates, their weights then, and them as a set.
        self._candidates: list[MemberState] = []
        self._candidateWeights: list[int] = []
        self._candidateSet: frozenset[MemberState] = frozenset()

    def pick(
        self, members: Sequence[MemberState], key: bytes | None = None
    ) -> MemberState | None:
        """
        Return the member that C{key} hashes to among C{members}.

        A key of C{None} hashes as C{b""}: every such request goes to one member.
        """
        if not members:
            return None
        # A list (as the service passes) compares by identity at C speed.
        if members != self._candidates or self._weightsChanged(members):
            self._update(members)
        points = self._points
        owners = self._owners
        candidates = self._candidateSet
        size = len(points)
        start = bisect_left(points, _ringHash(b"" if key is None else key))
        for step in range(size):
            owner = owners[(start + step) % size]
            if owner in candidates:
                return owner
        # Unreachable: every candidate has points on the ring (weights are >= 1).
        return members[0]

    def _weightsChanged(self, members: Sequence[MemberState]) -> bool:
        """Tell whether a candidate's weight changed since the previous pick."""
        for member, weight in zip(members, self._candidateWeights, strict=True):
            if member.weight != weight:
                return True
        return False

    def _update(self, members: Sequence[MemberState]) -> None:
        """Take in a new candidate set, rebuilding the ring if it lacks one of them."""
        ringWeights = self._ringWeights
        for member in members:
            if ringWeights.get(member) != member.weight:
                self._rebuild(members)
                break
        self._candidates = list(members)
        self._candidateWeights = [member.weight for member in members]
        self._candidateSet = frozenset(members)

    def _rebuild(self, members: Sequence[MemberState]) -> None:
        """Build the ring from C{members}' points, sorted; forget other members."""
        entries: list[tuple[int, str, int]] = []
        cache: dict[str, list[int]] = {}
        for position, member in enumerate(members):
            name = member.name
            points = cache.get(name) or self._pointCache.get(name, [])
            wanted = VIRTUAL_NODES * member.weight
            if len(points) < wanted:
                points = points + [
                    _ringHash(f"{name}#{i}".encode())
                    for i in range(len(points), wanted)
                ]
            cache[name] = points
            entries.extend((point, name, position) for point in points[:wanted])
        # Equal points (a 64-bit collision) go by name, so the order is stable.
        entries.sort()
        self._points = [point for point, _, _ in entries]
        self._owners = [members[position] for _, _, position in entries]
        self._ringWeights = {member: member.weight for member in members}
        self._pointCache = cache


POLICIES: dict[str, Callable[[], ILoadBalancingPolicy]] = {
    "byrequests": ByRequests,
    "bytraffic": ByTraffic,
    "bybusyness": ByBusyness,
    "roundrobin": RoundRobin,
    "random2": RandomTwo,
    "hash": ConsistentHash,
}
"""Load-balancing method classes by config name; each is built with no arguments."""
