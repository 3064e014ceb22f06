"""
The live, mutable state of one balancer member: flags, counters, error time.

Plain values only: the policies read it, the L{BalancerService} writes it.
"""

from __future__ import annotations

from twisted_proxy.config.model import Member

__all__ = ["MemberState"]


class MemberState:
    """
    One member as the balancer sees it now, starting from its configuration.

    ``weight``, ``standby`` and ``disabled`` start from the config and can be
    changed at run time (the balancer-manager); the counters only grow, except
    ``inFlight`` and ``lbStatus``.
    """

    __slots__ = (
        "bytesIn",
        "bytesOut",
        "disabled",
        "errorUntil",
        "failures",
        "inFlight",
        "index",
        "lastFailure",
        "lbStatus",
        "member",
        "requests",
        "retrying",
        "standby",
        "weight",
    )

    def __init__(self, member: Member, index: int = 0) -> None:
        self.member = member
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

    @property
    def name(self) -> str:
        """The worker name, as Apache logs it in ``BALANCER_WORKER_NAME``."""
        return self.member.name

    def inError(self, now: float) -> bool:
        """Tell whether the member is still in error at C{now}."""
        return self.errorUntil > now

    def usable(self, now: float) -> bool:
        """Tell whether the member may be picked at C{now}: not disabled or in error."""
        return not self.disabled and self.errorUntil <= now

    def __repr__(self) -> str:
        return (
            f"<MemberState {self.name} weight={self.weight} requests={self.requests}"
            f" inFlight={self.inFlight}"
            f"{' standby' if self.standby else ''}"
            f"{' disabled' if self.disabled else ''}"
            f"{f' errorUntil={self.errorUntil}' if self.errorUntil else ''}>"
        )
