"""
One view of the balancers across worker processes: what the owner sends
(L{balancerView}), how a follower takes it (L{follow}), and what a follower
reports back for the owner to add up (L{workerCounts}, L{WorkerCounts}).

Pure: documents in, changes to a L{BalancerService} out; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import MemberCounts, MemberState, countsOf
from twisted_proxy.config.model import Member
from twisted_proxy.core.traffic import Traffic

__all__ = ["WorkerCounts", "balancerView", "follow", "workerCounts"]

# A member's run-time values (the manager's), then its health and passive
# error as the owner knows them: the view's entries carry them in this order.
_RUNTIME = (
    "weight",
    "standby",
    "disabled",
    "drain",
    "tier",
    "ignoreErrors",
    "maxConnections",
)
_LIVE = ("health", "errorUntil", "lastFailure", "lastCheck", "lastCheckResult")
# The configuration's names of the run-time values, for Member.
_MEMBER_KEYS = (
    "weight",
    "standby",
    "disabled",
    "drain",
    "tier",
    "ignore_errors",
    "max_connections",
)


def balancerView(service: BalancerService) -> dict[str, Any]:
    """
    Every balancer's members as the owner runs them: for each, its
    configuration (the file's, or the manager's for a member it added), its
    run-time values, its health and error, and its place (for the policies
    that go round in order), as C{[configuration, [run-time...], [live...],
    index]}. Cheap enough to take four times a second: plain values read
    off the member, no copies.
    """
    return {
        name: [
            [
                vars(state.member),
                [getattr(state, key) for key in _RUNTIME],
                [getattr(state, key) for key in _LIVE],
                state.index,
            ]
            for state in service.members(name)
        ]
        for name in service.balancerNames()
    }


def _wanted(entry: Sequence[Any]) -> Member:
    """The member an entry describes, its run-time values in it."""
    configured, runtime = entry[0], entry[1]
    member = Member(**configured)
    return replace(member, **dict(zip(_MEMBER_KEYS, runtime, strict=True)))


def follow(service: BalancerService, view: Mapping[str, Any]) -> list[str]:
    """
    Make C{service}'s members what C{view} (a L{balancerView}) says: members
    added or removed, run-time changes, health and errors. Balancers only one
    side has (a reload under way) are left alone. Returns the changes made
    to the members' set and flags, in words; health and error are taken
    silently, as the owner logged them.
    """
    said: list[str] = []
    present = set(service.balancerNames())
    for balancer, members in view.items():
        if balancer not in present:
            continue
        wanted = [_wanted(entry) for entry in members]
        names = {member.name for member in wanted}
        for state in service.members(balancer):
            if state.name not in names:
                service.removeMember(balancer, state.name)
                said.append(f"{balancer}: {state.name} removed")
        running = {state.name: state for state in service.members(balancer)}
        for member, entry in zip(wanted, members, strict=True):
            known = running.get(member.name)
            if known is None:
                state = service.addMember(balancer, member)
                said.append(f"{balancer}: {member.name} added")
            else:
                state = known
                if state.current() != member:
                    state.adopt(member)
                    said.append(f"{balancer}: {member.name} changed")
            _take(service, balancer, state, entry)
            state.index = entry[3]
        order = [member.name for member in wanted]
        if [state.name for state in service.members(balancer)] != order:
            # A member removed and added again is last in the owner's list.
            service.arrange(balancer, order)
    return said


def _take(
    service: BalancerService,
    balancer: str,
    state: MemberState,
    entry: Sequence[Any],
) -> None:
    """The owner's word on C{state}'s health and error."""
    healthBefore = state.health
    live = dict(zip(_LIVE, entry[2], strict=True))
    for key, value in live.items():
        setattr(state, key, value)
    if state.health != healthBefore:
        # Wakes the requests waiting for a member, as a check here would.
        service.healthChanged(balancer, state, state.health, "")
        state.errorUntil = live["errorUntil"]


def workerCounts(
    service: BalancerService,
    traffic: Traffic,
    connections: Mapping[str, int],
    busy: int,
) -> dict[str, Any]:
    """What a follower has counted, for the owner's pages to add up."""
    return {
        "members": countsOf(
            (name, service.members(name)) for name in service.balancerNames()
        ),
        "traffic": traffic.document(),
        "connections": dict(connections),
        "busy": busy,
    }


@dataclass
class WorkerCounts:
    """The followers' latest L{workerCounts}, by worker number, added up."""

    reports: dict[int, Mapping[str, Any]] = field(default_factory=dict)

    def members(self) -> MemberCounts:
        """Every follower's member counters, summed."""
        total: dict[str, dict[str, list[int]]] = {}
        for report in self.reports.values():
            for balancer, members in report["members"].items():
                into = total.setdefault(balancer, {})
                for name, values in members.items():
                    held = into.get(name)
                    if held is None:
                        into[name] = list(values)
                    else:
                        into[name] = [a + b for a, b in zip(held, values, strict=True)]
        return total

    def traffic(self, own: Traffic) -> Traffic:
        """C{own} traffic plus every follower's."""
        return own.merged(report["traffic"] for report in self.reports.values())

    def connections(self, own: Mapping[str, int]) -> dict[str, int]:
        """C{own} open connections by protocol plus every follower's."""
        total = dict(own)
        for report in self.reports.values():
            for protocol, count in report["connections"].items():
                total[protocol] = total.get(protocol, 0) + count
        return total

    def busy(self, own: int) -> int:
        """C{own} busy connections plus every follower's."""
        return own + sum(int(report["busy"]) for report in self.reports.values())

    def forget(self, workers: Iterable[int]) -> None:
        """Drop the reports of C{workers} (they ended)."""
        for worker in workers:
            self.reports.pop(worker, None)
