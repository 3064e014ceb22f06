"""
One balancer at run time (L{Cluster}): its configuration, its members'
states, its policy instance, its sticky routes, and the requests waiting for
capacity; and which of its members a pick chooses among.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from twisted_proxy.balancer.keys import RequestFacts, StickyRoutes, hashKeyExtractor
from twisted_proxy.balancer.policy import POLICIES, ILoadBalancingPolicy
from twisted_proxy.balancer.state import DOWN, MemberState
from twisted_proxy.config.model import Balancer, Member

__all__ = ["Cluster"]


class Cluster:
    """One balancer at run time: its config, members and policy instance."""

    __slots__ = (
        "config",
        "failOnStatus",
        "hashKey",
        "members",
        "policy",
        "retry",
        "sticky",
        "waiters",
    )

    def __init__(self, config: Balancer, retry: float | None) -> None:
        self.config = config
        self.members = [
            MemberState(member, index) for index, member in enumerate(config.members)
        ]
        for state in self.members:
            state.balancerName = config.name
        self.policy: ILoadBalancingPolicy = POLICIES[config.method]()
        self.retry = config.retry if retry is None else retry
        self.sticky = StickyRoutes(config.sticky) if config.sticky else None
        self.hashKey: Callable[[RequestFacts], bytes] | None = (
            hashKeyExtractor(config.hash_key) if config.method == "hash" else None
        )
        self.failOnStatus = frozenset(config.fail_on_status)
        self.waiters: list[Deferred[None]] = []

    def byRoute(self, route: str) -> MemberState | None:
        """The member with this sticky route, if there is one."""
        for member in self.members:
            if member.member.route == route:
                return member
        return None

    def candidates(
        self, now: float, exclude: Collection[MemberState]
    ) -> list[MemberState]:
        """
        The members the policy chooses among at C{now}: usable, not draining,
        not in C{exclude}; of the lowest tier that has one; standbys only
        when the tier has nothing else.
        """
        # One pass (a pick is on every request): the usable members of the
        # lowest tier seen so far, primaries and standbys apart, in order.
        tier: int | None = None
        primaries: list[MemberState] = []
        standbys: list[MemberState] = []
        for m in self.members:
            if m.drain or m in exclude or not m.usable(now):
                continue
            if tier is None or m.tier < tier:
                tier = m.tier
                primaries, standbys = [], []
            elif m.tier > tier:
                continue
            (standbys if m.standby else primaries).append(m)
        return primaries or standbys

    def add(self, member: Member) -> MemberState:
        """Add a member at the end; the others keep their counters."""
        name = self.config.name
        for existing in self.members:
            if existing.name == member.name:
                raise ValueError(f"{member.name} is already a member of {name}")
        state = MemberState(member, len(self.members))
        state.balancerName = name
        self.members.append(state)
        return state

    def carryOver(self, previous: Cluster) -> list[str]:
        """
        Follow C{previous}, the same balancer before a reload: the members
        that stay (the same URL) are the running ones, with their counters
        and run-time flags, taking the file's word where it changed them;
        a member removed at run time stays removed, and one added at run
        time stays, unless the file changed or now names it; the requests
        waiting for capacity, and the policy if the method is the same,
        carry over too. Returns what the file overrode, in words.
        """
        running = {m.name: m for m in previous.members}
        before = {m.name: m for m in previous.config.members}
        members = []
        for fresh in self.members:
            state = running.get(fresh.name)
            if state is None:
                if before.get(fresh.name) == fresh.member:
                    continue  # removed at run time; the file did not change it
                state = fresh
            elif before.get(fresh.name) != fresh.member:
                state.adopt(fresh.member)
            members.append(state)
        notes = []
        named = {m.name for m in self.members}
        for state in previous.members:
            if state.name in before or state.name in named:
                continue
            route = state.member.route
            if route is not None and any(m.member.route == route for m in members):
                notes.append(
                    f"member {state.name}, added at run time, is dropped: the"
                    f" file gives its route {route} to another member"
                )
                continue
            members.append(state)
        for index, state in enumerate(members):
            state.index = index
        self.members = members
        self.waiters = previous.waiters
        if previous.config.method == self.config.method:
            self.policy = previous.policy
        return notes

    def arrange(self, names: Sequence[str]) -> None:
        """Put the members in the order of C{names} (others last, in order)."""
        order = {name: place for place, name in enumerate(names)}
        self.members.sort(key=lambda m: order.get(m.name, len(order)))

    # -- requests waiting for a member's capacity --

    def atCapacity(self, now: float) -> bool:
        """Whether members could serve but every one is at its max_connections."""
        open_ = [
            m
            for m in self.members
            if not m.disabled
            and not m.drain
            and m.health != DOWN
            and not m.inError(now)
        ]
        return bool(open_) and all(
            m.maxConnections and m.inFlight >= m.maxConnections for m in open_
        )

    def whenCapacity(self, clock: IReactorTime, timeout: float) -> Deferred[bool]:
        """
        Fire with True when a member is released (L{wakeOne}), or with False
        after C{timeout} seconds.
        """
        waiter: Deferred[None] = Deferred()
        self.waiters.append(waiter)
        result: Deferred[bool] = Deferred()

        def timedOut() -> None:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            result.callback(False)

        timer: IDelayedCall = clock.callLater(timeout, timedOut)

        def released(_: object) -> None:
            if timer.active():
                timer.cancel()
            if not result.called:
                result.callback(True)

        waiter.addCallback(released)
        return result

    def wakeOne(self) -> None:
        """A member was released or came back: the oldest waiting request goes."""
        if self.waiters:
            self.waiters.pop(0).callback(None)

    def wakeAll(self) -> None:
        """Every waiting request goes (to be answered without a member)."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(None)
