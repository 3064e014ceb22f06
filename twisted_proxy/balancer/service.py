"""
The one balancer service every front end shares.

Front ends ask it for a member (L{BalancerService.pick}) and report back how the
exchange went (L{BalancerService.release}); the balancer-manager reads and sets
the same state. Time comes from the injected clock, so tests run on a Clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_proxy.balancer import IBalancer
from twisted_proxy.balancer.policy import POLICIES, ILoadBalancingPolicy
from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import Balancer

__all__ = ["DEFAULT_RETRY", "BalancerService"]

DEFAULT_RETRY = 60.0
"""Seconds a failed member stays in error before it is tried again (Apache's retry)."""


class _BalancerState:
    """One balancer at run time: its config, members and policy instance."""

    __slots__ = ("config", "members", "policy", "retry")

    def __init__(self, config: Balancer, retry: float) -> None:
        self.config = config
        self.members = tuple(
            MemberState(member, index) for index, member in enumerate(config.members)
        )
        self.policy: ILoadBalancingPolicy = POLICIES[config.method]()
        self.retry = retry


@implementer(IBalancer)
class BalancerService(Service):
    """
    Every balancer, its members, their flags and counters, and the choice of member.

    A member that fails is in error for C{retry} seconds. Standby members
    (``+H``) are used only while no other member is usable; when nothing at all
    is usable, members in error (but not disabled) are tried anyway, as Apache
    does, and one that then succeeds is back at once.
    """

    name = "balancer"

    def __init__(
        self,
        balancers: Sequence[Balancer],
        clock: IReactorTime,
        retry: float = DEFAULT_RETRY,
    ) -> None:
        self._clock = clock
        self._balancers = {
            balancer.name: _BalancerState(balancer, retry) for balancer in balancers
        }

    def balancerNames(self) -> Sequence[str]:
        """Return the names of all balancers, in configured order."""
        return tuple(self._balancers)

    def members(self, balancerName: str) -> Sequence[MemberState]:
        """
        Return the members of a balancer, in configured order.

        :raise KeyError: if there is no such balancer.
        """
        return self._balancers[balancerName].members

    def member(self, balancerName: str, memberName: str) -> MemberState:
        """
        Return one member of a balancer by its name (``http://host:port``) or route.

        :raise KeyError: if there is no such balancer or member.
        """
        for state in self._balancers[balancerName].members:
            if memberName in (state.name, state.member.route):
                return state
        raise KeyError(f"balancer {balancerName!r} has no member {memberName!r}")

    def pick(self, balancerName: str) -> MemberState | None:
        """
        Choose a member of C{balancerName} for one request, and count it as busy.

        Return C{None} when every member is disabled. The caller must
        L{release} the member it gets once the exchange is over.

        :raise KeyError: if there is no such balancer.
        """
        balancer = self._balancers[balancerName]
        now = self._clock.seconds()
        members = balancer.members
        candidates = [m for m in members if not m.standby and m.usable(now)]
        retrying = False
        if not candidates:
            candidates = [m for m in members if m.standby and m.usable(now)]
            if not candidates:
                candidates = [m for m in members if not m.disabled]
                retrying = True
        chosen = balancer.policy.pick(candidates)
        if chosen is not None:
            chosen.requests += 1
            chosen.inFlight += 1
            if retrying:
                chosen.retrying = True
        return chosen

    def release(
        self,
        member: MemberState,
        ok: bool,
        bytesIn: int = 0,
        bytesOut: int = 0,
        failure: str | None = None,
    ) -> None:
        """
        Report how an exchange with a picked member went.

        C{ok=False} means the member failed (connection refused or reset,
        timeout, a status in ``fail_on_status``): it is in error for the
        balancer's retry time. C{failure} names the reason, for the
        balancer-manager. A client that went away is not the member's fault:
        report that as C{ok=True}.

        :param bytesIn: bytes received from the member.
        :param bytesOut: bytes sent to the member.
        """
        if member.inFlight > 0:
            member.inFlight -= 1
        member.bytesIn += bytesIn
        member.bytesOut += bytesOut
        if ok:
            if member.retrying:
                # A forced retry worked: the member is back before its retry time.
                member.errorUntil = 0.0
                member.retrying = False
            return
        member.failures += 1
        member.lastFailure = failure or "error"
        member.retrying = False
        member.errorUntil = self._clock.seconds() + self._retryFor(member)

    def _retryFor(self, member: MemberState) -> float:
        """Return the retry time of the balancer that C{member} belongs to."""
        for balancer in self._balancers.values():
            if member in balancer.members:
                return balancer.retry
        return DEFAULT_RETRY

    def setFlags(
        self,
        balancerName: str,
        memberName: str,
        *,
        disabled: bool | None = None,
        standby: bool | None = None,
        weight: int | None = None,
    ) -> None:
        """
        Change a member's flags or weight (the balancer-manager); the next pick obeys.

        C{None} leaves a value as it is. C{memberName} is the member's name or route.

        :raise KeyError: if there is no such balancer or member.
        :raise ValueError: if C{weight} is below 1.
        """
        state = self.member(balancerName, memberName)
        if weight is not None:
            if weight < 1:
                raise ValueError(f"weight must be at least 1, not {weight}")
            state.weight = weight
        if disabled is not None:
            state.disabled = disabled
        if standby is not None:
            state.standby = standby

    def startService(self) -> None:
        """Start the balancer (health-check loops will start here)."""
        super().startService()

    def stopService(self) -> None:
        """Stop the balancer (health-check loops will stop here)."""
        return super().stopService()  # type: ignore[no-any-return]
