"""
Load-balancing methods (Apache's ``lbmethod``): choose one member from candidates.

Each method is a small class registered in L{POLICIES} by its config name; the
L{BalancerService} makes one instance per balancer and hands it the members
that may be picked right now. Policies are pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import gcd

from zope.interface import Interface, implementer

from twisted_proxy.balancer.state import MemberState

__all__ = ["POLICIES", "ByRequests", "ILoadBalancingPolicy", "RoundRobin"]


class ILoadBalancingPolicy(Interface):
    """A load-balancing method: picks one member among the candidates."""

    def pick(members: Sequence[MemberState]) -> MemberState | None:
        """
        Return the member to use, or C{None} when C{members} is empty.

        C{members} are already filtered (usable, right tier, ...), in
        configured order. The caller counts the pick.
        """


@implementer(ILoadBalancingPolicy)
class ByRequests:
    """
    Apache's ``byrequests``: weighted request counting, exactly as mod_lbmethod does.

    Every pick adds each candidate's weight to its ``lbStatus``, takes the highest
    (the first one on a tie) and takes the candidates' total weight off it. Over a
    cycle each member gets its weight's share, spread out rather than in runs.
    """

    def pick(self, members: Sequence[MemberState]) -> MemberState | None:
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

    def pick(self, members: Sequence[MemberState]) -> MemberState | None:
        """Return the next member of the cycle over C{members}."""
        if not members:
            return None
        key = tuple((member, member.weight) for member in members)
        if key != self._key:
            self._rebuild(members, key)
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


POLICIES: dict[str, Callable[[], ILoadBalancingPolicy]] = {
    "byrequests": ByRequests,
    "roundrobin": RoundRobin,
}
"""Load-balancing method classes by config name; each is built with no arguments."""
