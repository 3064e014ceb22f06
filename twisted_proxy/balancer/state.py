"""
The live, mutable state of one balancer member: flags, counters, error time.

Plain values only: the policies read it, the L{BalancerService} writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from twisted_proxy.config.model import Member

__all__ = [
    "COUNTED",
    "DOWN",
    "UNKNOWN",
    "UP",
    "MemberCounts",
    "MemberState",
    "addCounts",
    "countsOf",
]

# Health states. A member starts UNKNOWN and serves (as HAProxy's "init"
# state without checks does, and unlike Apache's hcheck, which waits): the
# first failed checks take it down, so starting the proxy never blocks traffic.
UNKNOWN = "unknown"
UP = "up"
DOWN = "down"


COUNTED = ("requests", "failures", "bytes_in", "bytes_out", "in_flight")
"""The counters of L{MemberState.snapshot} that processes add up."""

MemberCounts = Mapping[str, Mapping[str, Sequence[int]]]
"""Balancer name -> member name -> the L{COUNTED} values, in that order."""


def countsOf(balancers: Iterable[tuple[str, Iterable[MemberState]]]) -> MemberCounts:
    """The L{COUNTED} values of every member, for another process to add."""
    return {
        name: {
            m.name: [m.requests, m.failures, m.bytesIn, m.bytesOut, m.inFlight]
            for m in members
        }
        for name, members in balancers
    }


def addCounts(
    views: Mapping[str, Sequence[dict[str, Any]]], counts: MemberCounts
) -> None:
    """
    Add C{counts} into member snapshots (L{MemberState.snapshot}s by
    balancer); counts of members C{views} does not have are left out.
    """
    for balancer, members in views.items():
        theirs = counts.get(balancer)
        if not theirs:
            continue
        for view in members:
            values = theirs.get(view["name"])
            if values is None:
                continue
            for key, value in zip(COUNTED, values, strict=False):
                view[key] += value


# The numbers L{MemberState.change} checks: attribute -> (its name in the
# error, the least value allowed).
_FLOORS = {
    "weight": ("weight", 1),
    "tier": ("tier", 0),
    "maxConnections": ("max_connections", 0),
}


class MemberState:
    """
    One member as the balancer sees it now, starting from its configuration.

    ``weight``, ``standby`` and ``disabled`` start from the config and can be
    changed at run time (the balancer-manager); the counters only grow, except
    ``inFlight`` and ``lbStatus``.
    """

    __slots__ = (
        "balancerName",
        "bytesIn",
        "bytesOut",
        "disabled",
        "drain",
        "errorUntil",
        "failures",
        "health",
        "ignoreErrors",
        "inFlight",
        "index",
        "lastCheck",
        "lastCheckResult",
        "lastFailure",
        "lbStatus",
        "maxConnections",
        "member",
        "requests",
        "responseTime",
        "retrying",
        "standby",
        "tier",
        "weight",
    )

    def __init__(self, member: Member, index: int = 0) -> None:
        self.member = member
        self.balancerName = ""
        """The balancer it belongs to (set by the service)."""
        self.index = index
        """Position in its balancer, for policies that keep the configured order."""
        self.weight = member.weight
        self.standby = member.standby
        self.disabled = member.disabled
        self.requests = 0
        """Times this member was picked (Apache's ``elected``)."""
        self.failures = 0
        self.bytesIn = 0
        """Response body bytes received from the member (Apache's C{Read})."""
        self.bytesOut = 0
        """Request body bytes sent to the member (Apache's C{Transferred})."""
        self.inFlight = 0
        """Picked and not yet released (Apache's ``busy``)."""
        self.lbStatus = 0
        """The running score of the ``byrequests`` method."""
        self.errorUntil = 0.0
        """In error until this time (epoch seconds); 0 when fine."""
        self.lastFailure: str | None = None
        """Why the member last failed (``"refused"``, ``"timeout"``...)."""
        self.retrying = False
        """Picked while in error because nothing else was usable."""
        self.drain = member.drain
        """+N: no new sessions; sticky sessions still reach it."""
        self.tier = member.tier
        """lbset: lower tiers serve first."""
        self.ignoreErrors = member.ignore_errors
        """+I: failures never put it in error."""
        self.maxConnections = member.max_connections
        """In-flight cap (0: none)."""
        self.health = UNKNOWN
        """Active health: L{UNKNOWN} until a check says L{UP} or L{DOWN}."""
        self.lastCheck = 0.0
        """When the last health check finished (epoch seconds; 0: never)."""
        self.lastCheckResult: str | None = None
        """What the last health check found, in words."""
        self.responseTime = 0.0
        """Smoothed seconds from request to response end (EWMA)."""

    @property
    def name(self) -> str:
        """The worker name, as Apache logs it in ``BALANCER_WORKER_NAME``."""
        return self.member.name

    def inError(self, now: float) -> bool:
        """Tell whether the member is still in error at C{now}."""
        return self.errorUntil > now

    def usable(self, now: float) -> bool:
        """
        Tell whether the member may take a request at C{now}: not disabled, not
        in error, not found down by its health check, not at its cap.
        """
        return (
            not self.disabled
            and self.errorUntil <= now
            and self.health != DOWN
            and (not self.maxConnections or self.inFlight < self.maxConnections)
        )

    def adopt(self, member: Member) -> None:
        """
        Take the file's word for this member again (a reload changed it):
        its configuration and flags; the counters are kept.
        """
        self.member = member
        self.weight = member.weight
        self.standby = member.standby
        self.disabled = member.disabled
        self.drain = member.drain
        self.tier = member.tier
        self.ignoreErrors = member.ignore_errors
        self.maxConnections = member.max_connections

    def current(self) -> Member:
        """The member's configuration with its run-time values in it."""
        return replace(
            self.member,
            weight=self.weight,
            standby=self.standby,
            disabled=self.disabled,
            drain=self.drain,
            tier=self.tier,
            ignore_errors=self.ignoreErrors,
            max_connections=self.maxConnections,
        )

    def change(self, **values: int | bool | None) -> None:
        """
        Set the run-time values given (C{None} leaves one as it is): all of
        them, or none when one is out of range.

        :raise ValueError: for a weight below 1 or a negative tier or cap.
        """
        given = {key: value for key, value in values.items() if value is not None}
        for key, (word, least) in _FLOORS.items():
            value = given.get(key)
            if value is not None and value < least:
                bound = f"at least {least}" if least else "0 or more"
                raise ValueError(f"{word} must be {bound}, not {value}")
        for key, value in given.items():
            setattr(self, key, value)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The member as plain values: what the balancer-manager and metrics show."""
        return {
            "name": self.name,
            "route": self.member.route,
            "weight": self.weight,
            "tier": self.tier,
            "standby": self.standby,
            "disabled": self.disabled,
            "drain": self.drain,
            "ignore_errors": self.ignoreErrors,
            "max_connections": self.maxConnections,
            "in_error": self.inError(now),
            "last_failure": self.lastFailure,
            "health": self.health,
            "last_check": self.lastCheck or None,
            "last_check_result": self.lastCheckResult,
            "requests": self.requests,
            "failures": self.failures,
            "bytes_in": self.bytesIn,
            "bytes_out": self.bytesOut,
            "in_flight": self.inFlight,
            "response_time": self.responseTime,
        }

    @property
    def busy(self) -> int:
        """Requests in flight (open WebSockets and tunnels included)."""
        return self.inFlight

    def __repr__(self) -> str:
        return (
            f"<MemberState {self.name} weight={self.weight} requests={self.requests}"
            f" inFlight={self.inFlight}"
            f"{' standby' if self.standby else ''}"
            f"{' disabled' if self.disabled else ''}"
            f"{f' errorUntil={self.errorUntil}' if self.errorUntil else ''}>"
        )
