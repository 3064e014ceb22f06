"""
One request's hold on a backend: the balancer's client, shared by every front end.

A L{Lease} picks a balancer member, turns it into the pool's L{Address}, and
hands that to its holder to connect to and try. The holder reports how the
try went, its failure sorted into a kind (L{connectFailure},
L{upgradeFailure}); the lease decides whether another member is tried (up to
the balancer's max_attempts, never once a request that cannot run twice has
gone out), waits briefly when every member is at its max_connections, waits
up to the balancer's C{wait} when no member can take the request (asking
again every L{WAIT_STEP} seconds on its clock), and releases each member it
picked exactly once, with the bytes and time of the exchange. A route to one
fixed backend has a lease too: it never fails over and has nothing to release.

The holder supplies "connect to this address and try" (L{ILeaseHolder});
HTTP requests and WebSocket handshakes use it, and a CONNECT tunnel or a TCP
forward can in the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectingCancelledError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_proxy.tls.backend import (
    BackendCAError,
    BackendTLSError,
    CertificateChainError,
    HandshakeTimeoutError,
    failureReason,
)
from twisted_proxy.upstream.interfaces import (
    FAIL_CONNECT,
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
)

if TYPE_CHECKING:
    from twisted_proxy.balancer.interfaces import IBalancer
    from twisted_proxy.balancer.keys import RequestFacts
    from twisted_proxy.balancer.state import MemberState
    from twisted_proxy.core.traffic import Traffic

# What the metrics count by name: the failure kinds, and a request sent
# again (to another member, or to the same on a fresh connection); any other
# failure (a fail_on_status answer) as "status".
_COUNTED = frozenset(
    {FAIL_CONNECT, FAIL_RESET, FAIL_TIMEOUT, FAIL_PROTOCOL, "failover", "retry"}
)

__all__ = [
    "CAPACITY_WAIT",
    "WAIT_STEP",
    "ILeaseHolder",
    "Lease",
    "connectFailure",
    "endpointFailure",
    "upgradeFailure",
]

_log = Logger()

CAPACITY_WAIT = 5.0
"""How long a request waits when every member is at its max_connections."""

WAIT_STEP = 0.1
"""How often a request waiting for a usable member (a balancer's C{wait}) asks."""


class ILeaseHolder(Protocol):
    """What a front end does for its lease: try an address, or answer 503."""

    def attempt(self, address: Address) -> None:
        """
        Connect to C{address} and send the request. The lease's C{member} is
        the balancer member it stands for (None for a fixed backend).
        """

    def unavailable(self) -> None:
        """No member can take the request (logged already): answer 503."""


class _Released:
    """The holder of a lease that is over: nothing more is tried for it."""

    def attempt(self, address: Address) -> None:
        pass

    def unavailable(self) -> None:
        pass


_RELEASED = _Released()


class Lease:
    """
    A front end's way to a backend for one request: pick, try, fail over,
    release.

    :param holder: what connects and tries (L{ILeaseHolder}).
    :param clock: times the exchange, for the member's response time, and
        the waits for a member.
    :param label: the route, for the log.
    :param address: a fixed backend; then C{balancer} is not asked.
    :param balancer: the balancer service, for a route to C{balancerName}.
    :param facts: what stickiness and hashing look at in the request.
    :param memberAddress: a member's pool key.
    :param capacityWait: seconds to wait once when every member is at its
        max_connections (None: answer 503 at once).
    """

    __slots__ = (
        "_balancer",
        "_capacityWait",
        "_clock",
        "_holder",
        "_label",
        "_memberAddress",
        "_missedAt",
        "_over",
        "_pickedAt",
        "_retriedFresh",
        "_statusFailure",
        "_traffic",
        "_tried",
        "_waitTimer",
        "_waited",
        "address",
        "balancerName",
        "facts",
        "member",
    )

    def __init__(
        self,
        holder: ILeaseHolder,
        clock: IReactorTime,
        label: str,
        *,
        address: Address | None = None,
        balancer: IBalancer | None = None,
        balancerName: str = "",
        facts: RequestFacts | None = None,
        memberAddress: Callable[[MemberState], Address] | None = None,
        capacityWait: float | None = CAPACITY_WAIT,
        traffic: Traffic | None = None,
    ) -> None:
        self._holder = holder
        self._traffic = traffic
        self._clock = clock
        self._label = label
        self._balancer = balancer
        self._memberAddress = memberAddress
        self._capacityWait = capacityWait
        self._tried: list[MemberState] = []
        self._waited = False
        # When a pick first found no member, and the next ask (balancer wait).
        self._missedAt: float | None = None
        self._waitTimer: IDelayedCall | None = None
        self._over = False
        self._retriedFresh = False
        self._statusFailure: str | None = None
        self._pickedAt = 0.0
        self.address: Address | None = address
        """Where the current attempt goes (None until a member is picked)."""
        self.balancerName = balancerName
        self.facts = facts
        self.member: MemberState | None = None
        """The balancer member held now, if any."""

    # -- picking --

    def start(self) -> None:
        """Try the fixed backend, or pick a first member and try it."""
        if self.address is not None:
            self._holder.attempt(self.address)
        else:
            self._pick()

    def _pick(self) -> None:
        balancer = self._balancer
        name = self.balancerName
        try:
            member = (
                balancer.pick(name, self.facts, self._tried)
                if balancer is not None
                else None
            )
        except KeyError:
            # A reload took the balancer away while the request waited.
            _log.error(
                "{label}: balancer {name} is no longer configured",
                label=self._label,
                name=name,
            )
            self._over = True
            self._holder.unavailable()
            return
        if member is None:
            if self._missedAt is None:
                self._missedAt = self._clock.seconds()
            if (
                balancer is not None
                and self._capacityWait is not None
                and not self._waited
                and balancer.atCapacity(name)
            ):
                # Every member is at max_connections: wait briefly for one.
                self._waited = True
                waiting = balancer.whenCapacity(name, self._capacityWait)
                waiting.addCallback(self._capacityWaitOver)
                return
            if balancer is not None and self._waitForMember(balancer, name):
                return
            waited = self._clock.seconds() - self._missedAt
            _log.error(
                "{label}: no usable member in balancer {name}{after}",
                label=self._label,
                name=name,
                after=f" after waiting {waited:.1f} s" if self._waited else "",
                waited=waited if self._waited else 0.0,
            )
            self._over = True
            self._holder.unavailable()
            return
        self.member = member
        self._tried.append(member)
        self._pickedAt = self._clock.seconds()
        assert self._memberAddress is not None
        address = self.address = self._memberAddress(member)
        self._holder.attempt(address)

    def _capacityWaitOver(self, released: bool) -> None:
        if not self._over:
            self._pick()

    def _waitForMember(self, balancer: IBalancer, name: str) -> bool:
        """
        No member can take the request now: ask again in L{WAIT_STEP}
        seconds, unless the balancer's C{wait}, counted from the first miss
        (a wait for capacity included), is over or is 0. Return whether the
        request waits.
        """
        wait = balancer.memberWait(name)
        if wait <= 0:
            return False
        assert self._missedAt is not None
        remaining = self._missedAt + wait - self._clock.seconds()
        if remaining <= 1e-9:
            return False
        # Waiting already: no separate wait for capacity on top of this one.
        self._waited = True
        self._waitTimer = self._clock.callLater(
            min(WAIT_STEP, remaining), self._askAgain
        )
        return True

    def _askAgain(self) -> None:
        self._waitTimer = None
        if not self._over:
            self._pick()

    # -- what the front end asks of the member it holds --

    def environment(self) -> dict[str, str]:
        """The access log's balancer variables for the member held."""
        if self.member is None or self._balancer is None:
            return {}
        return self._balancer.environment(self.balancerName, self.facts, self.member)

    def stickyCookie(self) -> bytes | None:
        """The C{Set-Cookie} value binding the client to the member, if due."""
        member = self.member
        if member is None or self._balancer is None or self.facts is None:
            return None
        return self._balancer.stickyCookie(self.balancerName, self.facts, member)

    def answered(self, status: int) -> None:
        """
        The member answered C{status}: one in its balancer's fail_on_status
        puts it in error when it is released, however the exchange ends.
        """
        balancer = self._balancer
        if (
            self.member is not None
            and balancer is not None
            and balancer.failsOnStatus(self.balancerName, status)
        ):
            self._statusFailure = f"answered {status}"

    # -- failures --

    def canFailOver(self, replayable: bool = True) -> bool:
        """
        Whether another member may be tried after this one failed: a member
        is held, the request can be sent again (C{replayable}: nothing of it
        that could not be replayed has gone out) and attempts remain.
        """
        balancer = self._balancer
        if self.member is None or balancer is None or not replayable or self._over:
            return False
        return len(self._tried) <= balancer.maxAttempts(self.balancerName)

    def failOver(self, kind: str) -> None:
        """
        Put the member held in error (C{kind}: a C{FAIL_*} name) and try
        another, as Apache does (maxattempts); check L{canFailOver} first.
        """
        self._count(kind)
        self._count("failover")
        self._releaseMember(False, failure=kind)
        self._pick()

    def retryFresh(self) -> bool:
        """
        Whether the request may go once more to the same member on a fresh
        connection (it failed on a reused one before any answer): True the
        first time only, outside max_attempts.
        """
        if self._retriedFresh:
            return False
        self._retriedFresh = True
        self._count("retry")
        return True

    def _count(self, kind: str) -> None:
        """Count trouble reaching backends (for the metrics)."""
        if self._traffic is not None:
            self._traffic.upstreamEvent(kind if kind in _COUNTED else "status")

    # -- the end --

    def release(
        self,
        ok: bool,
        failure: str | None = None,
        bytesIn: int = 0,
        bytesOut: int = 0,
        timed: bool = False,
    ) -> None:
        """
        The exchange is over: hand the member held back to the balancer (at
        most once; nothing when none is held), with C{ok=False} and
        C{failure} when it failed, or with its fail_on_status answer. The
        lease is over: a wait for capacity ends without a pick.

        :param timed: report the time since the member was picked.
        """
        if not ok and failure is not None:
            self._count(failure)
        self._over = True
        # The holder holds the lease: letting go of it leaves no cycle, so
        # the exchange is freed as soon as its last reference goes.
        self._holder = _RELEASED
        if self._waitTimer is not None:
            # Gone while waiting for a usable member: stop asking.
            self._waitTimer.cancel()
            self._waitTimer = None
        if self.member is None:
            return
        if ok and self._statusFailure is not None:
            ok, failure = False, self._statusFailure
        self._releaseMember(
            ok,
            failure=failure,
            bytesIn=bytesIn,
            bytesOut=bytesOut,
            elapsed=self._clock.seconds() - self._pickedAt if timed else None,
        )

    def _releaseMember(
        self,
        ok: bool,
        failure: str | None = None,
        bytesIn: int = 0,
        bytesOut: int = 0,
        elapsed: float | None = None,
    ) -> None:
        member, self.member = self.member, None
        if member is not None and self._balancer is not None:
            self._balancer.release(
                member,
                ok,
                bytesIn=bytesIn,
                bytesOut=bytesOut,
                failure=failure,
                elapsed=elapsed,
            )


# -- sorting failures into kinds --


def connectFailure(failure: Failure) -> tuple[str, str] | None:
    """
    How a connection through the upstream pool failed: (kind, detail), or
    None when the attempt was cancelled. A TLS failure comes before any byte
    of the request was sent, so it fails over like a refused connection; a
    stalled handshake is a timeout.
    """
    if failure.check(CancelledError, ConnectingCancelledError):
        return None
    if failure.check(TimeoutError):
        return FAIL_TIMEOUT, f"connect timed out ({failure.getErrorMessage()})"
    if failure.check(BackendTLSError, BackendCAError):
        kind = FAIL_TIMEOUT if failure.check(HandshakeTimeoutError) else FAIL_CONNECT
        return kind, f"TLS failed: {failure.getErrorMessage()}"
    return FAIL_CONNECT, f"connect failed: {failure.getErrorMessage()}"


def endpointFailure(failure: Failure) -> tuple[str, str] | None:
    """
    How a connection straight through an endpoint failed (a WebSocket's
    backend leg): (kind, detail), or None when it was cancelled.
    """
    if failure.check(ConnectingCancelledError):
        return None
    message = failure.getErrorMessage()
    kind = FAIL_TIMEOUT if "timeout" in message.lower() else FAIL_CONNECT
    return kind, f"connect failed: {message}"


def upgradeFailure(
    lost: Failure | None, host: str, timedOut: bool, badHandshake: str | None
) -> tuple[str, str]:
    """
    Why a backend connected but never completed its WebSocket handshake:
    (kind, detail). C{lost} is why its connection ended, C{timedOut} whether
    the handshake ran out of time, C{badHandshake} what was wrong with its
    answer.
    """
    if lost is not None and lost.value is not None and _isTLSFailure(lost):
        return FAIL_CONNECT, f"TLS failed: {failureReason(lost.value, host)}"
    if timedOut:
        return FAIL_TIMEOUT, "WebSocket handshake timed out"
    if badHandshake is not None:
        return FAIL_PROTOCOL, f"bad handshake: {badHandshake}"
    return FAIL_RESET, "closed before the WebSocket handshake"


def _isTLSFailure(reason: Failure) -> bool:
    from OpenSSL import SSL
    from service_identity import CertificateError, VerificationError

    return bool(
        reason.check(
            SSL.Error, CertificateChainError, VerificationError, CertificateError
        )
    )
