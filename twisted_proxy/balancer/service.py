"""
The one balancer service every front end shares.

Front ends ask it for a member (L{BalancerService.pick}) and report back how the
exchange went (L{BalancerService.release}); health checks, the balancer-manager
and metrics read and set the same state. Time comes from the injected clock,
so tests run on a Clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_proxy.balancer.cluster import Cluster
from twisted_proxy.balancer.health import HealthMonitor
from twisted_proxy.balancer.interfaces import IBalancer, Outcome
from twisted_proxy.balancer.keys import RequestFacts
from twisted_proxy.balancer.state import (
    DOWN,
    UNKNOWN,
    MemberCounts,
    MemberState,
    addCounts,
)
from twisted_proxy.config.model import Balancer, Member
from twisted_proxy.upstream.interfaces import FAILURE_WORDS

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_RETRY", "BalancerService"]

DEFAULT_RETRY = 60.0
"""Seconds a failed member stays in error before it is tried again (Apache's retry)."""

# Weight of the newest sample in a member's smoothed response time.
_EWMA = 0.2


@implementer(IBalancer)
class BalancerService(MultiService):
    """
    Every balancer, its members, their flags and counters, and the choice of member.

    The choice, for one request:
      1. a sticky route (cookie or URL parameter) names a usable member: that one
         (even when draining); named but unusable: another (C{failover}) or none;
      2. otherwise the lowest tier (lbset) with a usable member serves; within
         it, standby members (+H) only when no other is usable; disabled (+D),
         draining (+N), down and full members are passed over; the method picks;
      3. nothing usable at all: members in error (not disabled, not down) are
         tried anyway, as Apache does, and one that then succeeds is back at once.
    A member that fails is in error for the balancer's C{retry} seconds (and
    logged); with health checks, C{passes} checks in a row bring it back sooner.
    """

    name = "balancer"
    _log = Logger()

    def __init__(
        self,
        balancers: Sequence[Balancer],
        clock: IReactorTime,
        retry: float | None = None,
        healthCheck: Callable[[MemberState], Deferred[tuple[bool, str]]] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._retry = retry
        self._balancers = {
            balancer.name: Cluster(balancer, retry) for balancer in balancers
        }
        # Active health checks, for the balancers that have a [health] table.
        self.health = HealthMonitor(
            clock,
            [
                (name, b.config.health, b.members)
                for name, b in self._balancers.items()
                if b.config.health is not None
            ],
            self.healthChanged,
            check=healthCheck,
        )
        self.health.setServiceParent(self)
        self._changeObservers: list[Callable[[], object]] = []
        self.failureObservers: list[Callable[[MemberState, str], object]] = []
        """Called with each member a failed exchange puts in error, and why."""
        self.countedElsewhere: Callable[[], MemberCounts] | None = None
        """Other processes' counters, added to L{snapshot}'s (worker processes)."""

    def observeChanges(self, observer: Callable[[], object]) -> None:
        """
        Call C{observer} after each run-time change (L{setFlags},
        L{addMember}, L{removeMember}); not for a reload's L{reconfigure}.
        """
        self._changeObservers.append(observer)

    def _changed(self) -> None:
        for observer in self._changeObservers:
            observer()

    # -- reading --

    def balancerNames(self) -> Sequence[str]:
        """Return the names of all balancers, in configured order."""
        return tuple(self._balancers)

    def config(self, balancerName: str) -> Balancer:
        """Return a balancer's configuration."""
        return self._balancers[balancerName].config

    def members(self, balancerName: str) -> Sequence[MemberState]:
        """
        Return the members of a balancer, in configured order.

        :raise KeyError: if there is no such balancer.
        """
        return tuple(self._balancers[balancerName].members)

    def member(self, balancerName: str, memberName: str) -> MemberState:
        """
        Return one member of a balancer by its name (``http://host:port``) or route.

        :raise KeyError: if there is no such balancer or member.
        """
        for state in self._balancers[balancerName].members:
            if memberName in (state.name, state.member.route):
                return state
        raise KeyError(f"balancer {balancerName!r} has no member {memberName!r}")

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """
        Every balancer's members as plain values: what the balancer-manager
        and the metrics show.
        """
        now = self._clock.seconds()
        views = {
            name: [m.snapshot(now) for m in balancer.members]
            for name, balancer in self._balancers.items()
        }
        if self.countedElsewhere is not None:
            addCounts(views, self.countedElsewhere())
        return views

    def maxAttempts(self, balancerName: str) -> int:
        """Other members a request may be re-sent to (Apache's maxattempts)."""
        balancer = self._balancers[balancerName]
        configured = balancer.config.max_attempts
        if configured is not None:
            return configured
        return max(0, len(balancer.members) - 1)

    def readsRequests(self, balancerName: str) -> bool:
        """Whether a pick looks at the request (sticky sessions, hash)."""
        balancer = self._balancers[balancerName]
        return balancer.sticky is not None or balancer.hashKey is not None

    def failsOnStatus(self, balancerName: str, status: int) -> bool:
        """Whether C{status} from a member puts it in error (failonstatus)."""
        return status in self._balancers[balancerName].failOnStatus

    # -- choosing --

    def pick(
        self,
        balancerName: str,
        facts: RequestFacts | None = None,
        exclude: Collection[MemberState] = (),
    ) -> MemberState | None:
        """
        Choose a member of C{balancerName} for one request, and count it as busy.

        Return C{None} when no member can take it (or the sticky member is
        down and C{failover} is off). The caller must L{release} the member it
        gets once the exchange is over.

        :param facts: what stickiness and the hash method look at.
        :param exclude: members already tried for this request.
        :raise KeyError: if there is no such balancer.
        """
        balancer = self._balancers[balancerName]
        now = self._clock.seconds()
        chosen: MemberState | None = None
        retrying = False
        if balancer.sticky is not None and facts is not None:
            route = balancer.sticky.route(facts)
            if route is not None:
                sticky = balancer.byRoute(route)
                if sticky is not None and sticky not in exclude and sticky.usable(now):
                    chosen = sticky
                elif sticky is not None and not balancer.sticky.sticky.failover:
                    return None
        if chosen is None:
            candidates = balancer.candidates(now, exclude)
            if not candidates:
                candidates = [
                    m
                    for m in balancer.members
                    if m not in exclude
                    and not m.disabled
                    and not m.drain
                    and m.health != DOWN
                    and m.inError(now)
                    and (not m.maxConnections or m.inFlight < m.maxConnections)
                ]
                retrying = True
            key = None
            if balancer.hashKey is not None and facts is not None:
                key = balancer.hashKey(facts)
            chosen = balancer.policy.pick(candidates, key)
        if chosen is not None:
            chosen.requests += 1
            chosen.inFlight += 1
            if retrying:
                chosen.retrying = True
        return chosen

    def stickyCookie(
        self, balancerName: str, facts: RequestFacts, member: MemberState
    ) -> bytes | None:
        """
        The C{Set-Cookie} value that binds the client to C{member}, when the
        balancer inserts one and the client's route does not already say so.
        """
        balancer = self._balancers[balancerName]
        sticky = balancer.sticky
        config = balancer.config.sticky
        route = member.member.route
        if sticky is None or config is None or not config.insert or route is None:
            return None
        if not sticky.needsInsert(sticky.route(facts), route):
            return None
        return sticky.setCookie(route, facts.secure)

    def environment(
        self, balancerName: str, facts: RequestFacts | None, member: MemberState
    ) -> dict[str, str]:
        """
        The variables mod_proxy_balancer sets for a request sent to C{member}:
        C{BALANCER_NAME} (C{balancer://NAME}), C{BALANCER_WORKER_NAME} and,
        for a member with a route, C{BALANCER_WORKER_ROUTE}. With sticky
        sessions, a request naming a route also gets C{BALANCER_SESSION_STICKY}
        (the cookie or parameter name) and C{BALANCER_SESSION_ROUTE}; and
        C{BALANCER_ROUTE_CHANGED} is C{"1"} when the request named no route or
        another member's (the client needs the new route).
        """
        env = {
            "BALANCER_NAME": f"balancer://{balancerName}",
            "BALANCER_WORKER_NAME": member.name,
        }
        route = member.member.route
        if route is not None:
            env["BALANCER_WORKER_ROUTE"] = route
        sticky = self._balancers[balancerName].sticky
        if sticky is not None:
            asked = sticky.route(facts) if facts is not None else None
            if asked is not None:
                env["BALANCER_SESSION_STICKY"] = sticky.sticky.name
                env["BALANCER_SESSION_ROUTE"] = asked
            if asked is None or asked != route:
                env["BALANCER_ROUTE_CHANGED"] = "1"
        return env

    def atCapacity(self, balancerName: str) -> bool:
        """Whether members could serve but every one is at its max_connections."""
        return self._balancers[balancerName].atCapacity(self._clock.seconds())

    def whenCapacity(self, balancerName: str, timeout: float) -> Deferred[bool]:
        """
        Fire with True when a member of C{balancerName} is released, or with
        False after C{timeout} seconds.
        """
        return self._balancers[balancerName].whenCapacity(self._clock, timeout)

    def memberWait(self, balancerName: str) -> float:
        """
        Seconds a request that finds no usable member waits for one (the
        balancer's C{wait}, Apache's C{timeout=}); 0: none, or no such
        balancer any more (a reload took it away).
        """
        balancer = self._balancers.get(balancerName)
        return balancer.config.wait if balancer is not None else 0.0

    # -- hearing back --

    def release(
        self, member: MemberState, ok: bool, **outcome: Unpack[Outcome]
    ) -> None:
        """
        Report how an exchange with a picked member went.

        C{ok=False} means the member failed (connection refused or reset,
        timeout, a status in ``fail_on_status``): it is in error for the
        balancer's retry time, unless it ignores errors (+I), or until
        C{passes} health checks in a row pass when the balancer has health
        checks. C{failure} names the reason, for the balancer-manager and the
        log line that says the member is in error. A client that went away is
        not the member's fault: report that as C{ok=True}.

        The rest of the outcome (L{Outcome}) is given by keyword: the bytes
        each way, the failure's reason, and the seconds the exchange took
        (for the smoothed response time).
        """
        if member.inFlight > 0:
            member.inFlight -= 1
        member.bytesIn += outcome.get("bytesIn", 0)
        member.bytesOut += outcome.get("bytesOut", 0)
        elapsed = outcome.get("elapsed")
        if elapsed is not None:
            if member.responseTime:
                member.responseTime += _EWMA * (elapsed - member.responseTime)
            else:
                member.responseTime = elapsed
        balancer = self._balancerOf(member)
        if ok:
            if member.retrying:
                # A forced retry worked: the member is back before its retry time.
                member.errorUntil = 0.0
                member.retrying = False
        else:
            member.failures += 1
            member.lastFailure = outcome.get("failure") or "error"
            member.retrying = False
            if not member.ignoreErrors:
                self._putInError(member, balancer, member.lastFailure)
        if balancer is not None and balancer.waiters:
            balancer.wakeOne()

    def _putInError(
        self, member: MemberState, balancer: Cluster | None, why: str
    ) -> None:
        """
        A failed exchange puts C{member} in error for the retry time; entering
        error is logged once. With health checks, C{passes} checks in a row,
        checked at the fast interval, bring it back sooner.
        """
        now = self._clock.seconds()
        retry = balancer.retry if balancer is not None else DEFAULT_RETRY
        if not member.inError(now):
            self._log.warn(
                "member {member} of balancer://{balancer} in error: {why}",
                member=member.name,
                balancer=member.balancerName,
                why=FAILURE_WORDS.get(why, why),
                retry=retry,
            )
        member.errorUntil = now + retry
        if balancer is not None and balancer.config.health is not None:
            self.health.requestFailed(member)
        for observer in self.failureObservers:
            observer(member, why)

    def memberFailed(self, balancerName: str, memberName: str, why: str) -> None:
        """
        Another process's exchange with a member failed (it counted the
        failure): put it in error here too, as L{release} does, unless it
        ignores errors.

        :raise KeyError: if there is no such balancer or member.
        """
        member = self.member(balancerName, memberName)
        member.lastFailure = why
        if not member.ignoreErrors:
            self._putInError(member, self._balancerOf(member), why)

    def _balancerOf(self, member: MemberState) -> Cluster | None:
        return self._balancers.get(member.balancerName)

    # -- changing at run time (the balancer-manager) --

    def setFlags(
        self,
        balancerName: str,
        memberName: str,
        *,
        disabled: bool | None = None,
        standby: bool | None = None,
        drain: bool | None = None,
        ignoreErrors: bool | None = None,
        weight: int | None = None,
        tier: int | None = None,
        maxConnections: int | None = None,
        route: str | None = None,
    ) -> None:
        """
        Change a member's flags, weight, tier, cap or sticky route; the next
        pick obeys.

        C{None} leaves a value as it is; C{route=""} takes the route away.
        C{memberName} is the member's name or route.

        :raise KeyError: if there is no such balancer or member.
        :raise ValueError: for a weight below 1, a negative tier or cap, or a
            route another member of the balancer has.
        """
        state = self.member(balancerName, memberName)
        if route is not None:
            newRoute = route or None
            for other in self._balancers[balancerName].members:
                if other is not state and newRoute and other.member.route == newRoute:
                    raise ValueError(f"route {newRoute} is {other.name}'s already")
        state.change(
            weight=weight,
            tier=tier,
            maxConnections=maxConnections,
            disabled=disabled,
            standby=standby,
            drain=drain,
            ignoreErrors=ignoreErrors,
        )
        if route is not None:
            state.member = replace(state.member, route=route or None)
        self._changed()

    def addMember(self, balancerName: str, member: Member) -> MemberState:
        """Add a member at run time; the others keep their counters."""
        state = self._balancers[balancerName].add(member)
        self._membersChanged(balancerName)
        self._changed()
        return state

    def removeMember(self, balancerName: str, memberName: str) -> MemberState:
        """
        Remove a member at run time; requests in flight to it finish, the
        others keep their counters.
        """
        balancer = self._balancers[balancerName]
        state = self.member(balancerName, memberName)
        balancer.members.remove(state)
        self._membersChanged(balancerName)
        self._changed()
        return state

    def arrange(self, balancerName: str, names: Sequence[str]) -> None:
        """Put C{balancerName}'s members in the order of C{names} (its owner's)."""
        self._balancers[balancerName].arrange(names)

    def reconfigure(self, balancers: Sequence[Balancer]) -> None:
        """
        Take a reloaded file's balancers: new ones start, gone ones stop
        (their requests in flight finish on the members they hold); a
        member that stays (the same URL) keeps its counters and its run-time
        changes (the balancer-manager's), unless the file changed that
        member, whose word then wins; members added or removed at run time
        stay so unless the file changed or now names them. Health checks
        follow the new tables.
        """
        old = self._balancers
        self._balancers = {}
        for config in balancers:
            cluster = Cluster(config, self._retry)
            previous = old.get(config.name)
            if previous is not None:
                for note in cluster.carryOver(previous):
                    self._log.warn(
                        "reload: balancer://{balancer}: {note}",
                        balancer=config.name,
                        note=note,
                    )
            self._balancers[config.name] = cluster
            self.health.setTarget(config.name, config.health, tuple(cluster.members))
            if config.health is None:
                for member in cluster.members:
                    member.health = UNKNOWN
        for name, cluster in old.items():
            if name not in self._balancers:
                self.health.setTarget(name, None, ())
                cluster.wakeAll()

    def _membersChanged(self, balancerName: str) -> None:
        balancer = self._balancers[balancerName]
        if balancer.config.health is not None:
            self.health.setMembers(balancerName, tuple(balancer.members))

    # -- health (set by the monitor) --

    def healthChanged(
        self, balancerName: str, member: MemberState, state: str, reason: str
    ) -> None:
        """
        A health check moved C{member} to C{state} (it is already recorded),
        or, with L{UP}, found it fit again after a failed request.
        """
        if state != DOWN:
            # Healthy again by its checks: any passive error is over too.
            member.errorUntil = 0.0
            balancer = self._balancers.get(balancerName)
            if balancer is not None:
                balancer.wakeOne()

    def stopService(self) -> Deferred[Any]:
        """Stop the health checks; members waiting for capacity give up."""
        for balancer in self._balancers.values():
            balancer.wakeAll()
        d = super().stopService()
        return d if d is not None else succeed(None)
