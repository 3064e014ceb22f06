"""
The live, mutable state of one balancer member: flags, counters, error time.

Plain values only: the policies read it, the L{BalancerService} writes it.
"""

from __future__ import annotations

from twisted_proxy.config.model import Member

__all__ = ["DOWN", "UNKNOWN", "UP", "MemberState"]

# Health states. A member starts UNKNOWN and serves (as HAProxy's "init"
# state without checks does, and unlike Apache's hcheck, which waits): the
# first failed checks take it down, so starting the proxy never blocks traffic.
UNKNOWN = "unknown"
UP = "up"
DOWN = "down"


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
        """Bytes received from the member."""
        self.bytesOut = 0
        """Bytes sent to the member."""
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
