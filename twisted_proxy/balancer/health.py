"""
Active health checks: mod_proxy_hcheck's job, with HAProxy's rise and fall.

The deciding part is pure: L{HealthTracker} turns a run of passed and failed
checks (and failed requests) into state transitions and says whether a member
is settled, L{nextCheckDelay} turns that into the time to its next check,
L{statusMatches} and L{Expectation} judge an answer. L{HealthMonitor} is the
thin I/O around them: one timer per member, a TCP connect or an HTTP request
per check, each with its own timeout.

A member starts L{UNKNOWN} and serves meanwhile (HAProxy's choice; Apache's
hcheck waits for a first check instead): C{fails} failed checks in a row,
counted from the very first, take it L{DOWN}, C{passes} passed checks in a row
make it L{UP}, so starting the proxy never holds traffic back. Settled members
are checked every C{interval}; the others (unknown yet, failing or recovering,
in error after a failed request, or down without ever having been up) every
C{fast_interval}, as HAProxy's fastinter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from http.cookiejar import DefaultCookiePolicy
from typing import Any

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from zope.interface import implementer

from twisted_proxy.balancer.state import DOWN, UNKNOWN, UP, MemberState
from twisted_proxy.config.model import HealthCheck
from twisted_proxy.core.headers import formatHostPort
from twisted_proxy.core.schemes import isTLS, wireScheme
from twisted_proxy.tls.backend import (
    BackendTLS,
    CertificateChainError,
    TLSPolicy,
    failureReason,
)

__all__ = [
    "DEFAULT_FAST_INTERVAL",
    "MAX_BODY",
    "Expectation",
    "HealthMonitor",
    "HealthTracker",
    "describeFailure",
    "fastInterval",
    "nextCheckDelay",
    "statusMatches",
]

MAX_BODY = 65536
"""Bytes of an answer's body read at most for C{expect_body}."""

USER_AGENT = b"twisted-proxy health check"
"""What the HTTP checks send as C{User-Agent}, so backends can tell them apart."""

DEFAULT_FAST_INTERVAL = 2.0
"""Seconds between checks of a member not settled, unless C{fast_interval} says."""


class HealthTracker:
    """
    One member's rise/fall counter: checks in, state transitions out.

    From any state, C{fails} failed checks in a row lead to L{DOWN} and
    C{passes} passed checks in a row to L{UP} (when not already there); a
    result of the other kind resets the run. Counting starts with the very
    first check, so a member is never down after fewer than C{fails} checks.

    A request that failed (L{requestFailed}) makes an up or unknown member
    I{suspect}: its run of passes starts again, and C{passes} passed checks
    in a row clear the suspicion (L{observe} says L{UP} then, even if the
    member was up all along).

    L{settled} tells whether the member may wait the normal interval for its
    next check, or should be re-checked at the fast interval. Pure: no
    clock, no I/O.
    """

    __slots__ = (
        "_doubted",
        "consecutiveFails",
        "consecutivePasses",
        "everUp",
        "fails",
        "passes",
        "state",
        "suspect",
    )

    def __init__(self, passes: int, fails: int, state: str = UNKNOWN) -> None:
        if passes < 1 or fails < 1:
            raise ValueError(f"passes and fails must be at least 1: {passes}, {fails}")
        if state not in (UNKNOWN, UP, DOWN):
            raise ValueError(f"unknown health state {state!r}")
        self.passes = passes
        self.fails = fails
        self.state = state
        """L{UNKNOWN}, L{UP} or L{DOWN}."""
        self.consecutivePasses = 0
        """Checks passed in a row, up to now."""
        self.consecutiveFails = 0
        """Checks failed in a row, up to now."""
        self.suspect = False
        """A request failed since the last confirmation; passes must clear it."""
        self.everUp = state == UP
        """Whether the member has been up (since it was first watched)."""
        # A result against the state (or none yet) that no full run of
        # passes or fails has confirmed or overruled since.
        self._doubted = state == UNKNOWN

    def observe(self, ok: bool) -> str | None:
        """
        Count one check's result; return the new state if it changed (or
        L{UP} when C{passes} checks in a row clear a suspect member), else None.
        """
        if ok:
            self.consecutivePasses += 1
            self.consecutiveFails = 0
            if self.state != UP:
                self._doubted = True
            if self.consecutivePasses >= self.passes:
                self._doubted = False
                if self.state != UP or self.suspect:
                    self.state = UP
                    self.everUp = True
                    self.suspect = False
                    return UP
        else:
            self.consecutiveFails += 1
            self.consecutivePasses = 0
            if self.state != DOWN:
                self._doubted = True
            if self.consecutiveFails >= self.fails:
                self._doubted = False
                if self.state != DOWN:
                    self.state = DOWN
                    self.suspect = False
                    return DOWN
        return None

    def requestFailed(self) -> None:
        """
        A request to the member failed: its passes start again from zero, and
        only C{passes} of them in a row clear it. No effect on a down member.
        """
        if self.state != DOWN:
            self.suspect = True
            self.consecutivePasses = 0

    @property
    def settled(self) -> bool:
        """
        Whether the normal interval applies to the next check.

        Not while the member is unknown, nor after a check against its state
        (a failure while up, a pass while down) until C{passes} checks in a
        row pass or C{fails} fail, nor while it is suspect; nor while it is
        down without ever having been up, so that a backend started after
        the proxy is in service soon after it answers.
        """
        if self.suspect or self._doubted:
            return False
        return self.state != DOWN or self.everUp


def fastInterval(check: HealthCheck) -> float:
    """
    The seconds between checks of a member whose state is not settled:
    C{fast_interval}, by default the smaller of 2 s and C{interval}, and
    never more than C{interval}.
    """
    fast = DEFAULT_FAST_INTERVAL if check.fast_interval is None else check.fast_interval
    return min(fast, check.interval)


def nextCheckDelay(tracker: HealthTracker, check: HealthCheck) -> float:
    """Seconds from the start of a member's last check to the start of its next."""
    return check.interval if tracker.settled else fastInterval(check)


def statusMatches(status: int, expect: Sequence[str]) -> bool:
    """
    Tell whether C{status} is one of C{expect}: classes like ``"2xx"`` or exact
    codes like ``"204"`` (an empty C{expect} matches nothing).
    """
    for pattern in expect:
        pattern = pattern.strip().lower()
        if len(pattern) == 3 and pattern.endswith("xx") and pattern[0].isdigit():
            if status // 100 == int(pattern[0]):
                return True
        elif pattern.isdigit() and int(pattern) == status:
            return True
    return False


class Expectation:
    """
    What an HTTP check expects of an answer, compiled once per balancer.

    The body, when C{expect_body} is set, is searched (C{re.search}) as UTF-8
    text, undecodable bytes replaced; only its first L{MAX_BODY} bytes count.

    :raise re.error: if C{expect_body} is not a valid regular expression.
    """

    def __init__(self, check: HealthCheck) -> None:
        self.method = check.method
        self.uri = check.uri
        self.expectStatus = tuple(check.expect_status)
        self.bodyPattern = check.expect_body
        self._body = (
            None if check.expect_body is None else re.compile(check.expect_body)
        )

    @property
    def readsBody(self) -> bool:
        """Whether the body must be read at all."""
        return self._body is not None

    def judge(self, status: int, body: bytes = b"") -> tuple[bool, str]:
        """Return whether an answer passes, and what it was in words."""
        said = f"{self.method} {self.uri} answered {status}"
        if not statusMatches(status, self.expectStatus):
            return False, said
        if self._body is not None and not self._body.search(
            body[:MAX_BODY].decode("utf-8", "replace")
        ):
            return False, f"{said}, body did not match {self.bodyPattern!r}"
        return True, said


_TLS_FAILURES = (SSL.Error, CertificateChainError, VerificationError, CertificateError)


def describeFailure(failure: Failure, host: str = "") -> str:
    """
    Say in a few words why a check could not get an answer (from C{host},
    named when its certificate does not match it).
    """
    exc = failure.value
    if isinstance(exc, error.ConnectionRefusedError):
        return "connect refused"
    if isinstance(exc, error.DNSLookupError):
        return "name lookup failed"
    if isinstance(exc, (error.TimeoutError, error.TCPTimedOutError)):
        return "connect timed out"
    if isinstance(exc, error.NoRouteError):
        return "no route to host"
    if isinstance(exc, error.ConnectError):
        return f"connect failed: {exc}"
    if isinstance(exc, _TLS_FAILURES):
        return f"TLS failed: {failureReason(exc, host)}"
    if isinstance(exc, (ResponseNeverReceived, ResponseFailed)):
        for reason in exc.reasons:
            if isinstance(reason, Failure) and reason.check(*_TLS_FAILURES):
                why = reason.value
                assert why is not None
                return f"TLS failed: {failureReason(why, host)}"
        if isinstance(exc, ResponseNeverReceived):
            return "connection closed without an answer"
        return "answer cut short"
    if isinstance(exc, (error.ConnectionLost, error.ConnectionDone)):
        return "connection lost"
    return f"check failed: {type(exc).__name__}: {exc}"


def _timedOut(result: object, timeout: float) -> tuple[bool, str]:
    """The result of a check cut off by its timeout."""
    return False, f"timed out after {timeout:g}s"


class _Connections:
    """Every connection the checks opened and that has not closed yet."""

    def __init__(self) -> None:
        self._open: set[ProtocolWrapper] = set()
        self._waiting: list[Deferred[None]] = []

    def opened(self, connection: ProtocolWrapper) -> None:
        """Count a connection that was just made."""
        self._open.add(connection)

    def closed(self, connection: ProtocolWrapper) -> None:
        """Forget a connection that is gone; wake the waiters once none is left."""
        self._open.discard(connection)
        if not self._open:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def abortAll(self) -> None:
        """Cut every connection still open."""
        for connection in list(self._open):
            transport: Any = connection.transport
            if transport is not None:
                transport.abortConnection()

    def whenClosed(self) -> Deferred[None]:
        """Fire once no connection is open."""
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d


class _TrackingFactory(WrappingFactory):
    """Wraps a protocol factory so that L{_Connections} sees each connection."""

    noisy = False

    def __init__(self, wrappedFactory: IProtocolFactory, connections: _Connections):
        super().__init__(wrappedFactory)
        self._connections = connections
        if isinstance(wrappedFactory, Factory):
            # Agent's pool makes a factory per connection, which would log
            # "Starting factory" and "Stopping factory" at every check.
            wrappedFactory.noisy = False

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        """Called by a wrapped protocol once connected."""
        super().registerProtocol(p)
        self._connections.opened(p)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Called by a wrapped protocol once its connection is gone."""
        super().unregisterProtocol(p)
        self._connections.closed(p)


@implementer(IStreamClientEndpoint)
class _TrackingEndpoint:
    """An endpoint whose connections L{_Connections} keeps count of."""

    def __init__(
        self, endpoint: IStreamClientEndpoint, connections: _Connections
    ) -> None:
        self._endpoint = endpoint
        self._connections = connections

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect, handing back the caller's own protocol (not the wrapper)."""
        factory = _TrackingFactory(protocolFactory, self._connections)
        d = self._endpoint.connect(factory)
        return d.addCallback(_unwrap)


def _unwrap(wrapper: IProtocol) -> IProtocol:
    """The caller's protocol inside a L{_TrackingFactory}'s wrapper."""
    wrapped: IProtocol = wrapper.wrappedProtocol  # type: ignore[attr-defined]
    return wrapped


@implementer(IAgentEndpointFactory)
class _AgentEndpoints:
    """The HTTP checks' endpoints: plain TCP, TLS for https and wss, all tracked."""

    def __init__(
        self,
        endpointFor: Callable[[str, int], IStreamClientEndpoint],
        connections: _Connections,
        tlsFor: Callable[[str, int], Any],
    ) -> None:
        self._endpointFor = endpointFor
        self._connections = connections
        self._tlsFor = tlsFor

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """Return the endpoint that reaches C{uri}'s host and port."""
        host = uri.host.decode("idna").strip("[]")
        endpoint = self._endpointFor(host, uri.port)
        if isTLS(uri.scheme):
            endpoint = wrapClientTLS(self._tlsFor(host, uri.port), endpoint)
        return _TrackingEndpoint(endpoint, self._connections)


class _Probe(Protocol):
    """A TCP check's connection: it is closed as soon as it is made."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        """The check was cancelled while closing: cut the connection now."""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The connection is gone: the check is over."""
        if not self.lost.called:
            self.lost.callback(None)


class _BoundedBody(Protocol):
    """Reads at most C{limit} bytes of a response body, then drops the rest."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._finished = False
        self.done: Deferred[bytes] = Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        """Read no more, and have the connection closed."""
        self._finished = True
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def _finish(self) -> None:
        """Enough was read: hand it over and stop the rest."""
        body = b"".join(self._parts)
        self._stop()
        if not self.done.called:
            self.done.callback(body)

    def connectionMade(self) -> None:
        """A body that is not wanted is not read."""
        if self._limit <= 0:
            self._finish()

    def dataReceived(self, data: bytes) -> None:
        """Keep what fits in the limit."""
        if self._finished:
            return
        data = data[: self._limit - self._size]
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._limit:
            self._finish()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The body ended (or broke) before the limit."""
        if self._finished or self.done.called:
            return
        self._finished = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)


class _Target:
    """One balancer under watch: its check, members and expectation."""

    __slots__ = ("check", "expectation", "members", "name")

    def __init__(
        self, name: str, check: HealthCheck, members: Sequence[MemberState]
    ) -> None:
        self.name = name
        self.check = check
        self.members = tuple(members)
        self.expectation = Expectation(check)


class _Watch:
    """One member under watch: its counter, its next check, the one running."""

    __slots__ = (
        "inFlight",
        "member",
        "stale",
        "startedAt",
        "target",
        "timer",
        "tracker",
    )

    def __init__(self, target: _Target, member: MemberState) -> None:
        self.target = target
        self.member = member
        self.tracker = HealthTracker(
            target.check.passes, target.check.fails, member.health
        )
        self.timer: IDelayedCall | None = None
        self.inFlight: Deferred[Any] | None = None
        self.startedAt: float | None = None
        self.stale = False
        """A request failed while this check ran: a pass of it does not count."""

    def cancelTimer(self) -> None:
        """Forget the next check."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class HealthMonitor(Service):
    """
    Checks every member of the balancers it is given, each on its own timer.

    Every member is checked at once when the service starts (and when it is
    added), then again C{interval} seconds after the start of its previous
    check once its state is settled, or C{fast_interval} seconds after while
    it is not (see L{HealthTracker.settled}): from the start until the first
    checks confirm it, after a failed check until it is confirmed down or
    back, after a failed request (L{requestFailed}) until C{passes} checks
    pass. Each member has its own timer, so one member that flaps speeds up
    no other. A member never has two checks at once: the next one starts
    when it is due and the previous one is over. Each check is cut off after
    C{timeout} seconds; a check that fails, raises or hangs counts as a
    failed check and never stops the timers.

    Each result sets the member's C{lastCheck} and C{lastCheckResult} and feeds
    its L{HealthTracker}; a transition sets C{member.health}, is logged once
    and reported to C{onTransition(balancerName, member, newState, reason)}.
    L{UP} is also reported when a member in error after a failed request has
    passed C{passes} checks since. The tracker is the truth about the health
    state: it starts from the member's C{health} when the member is first
    watched.

    C{stopService} cancels every timer and the checks in flight, cuts their
    connections and returns a Deferred that fires once every connection is
    closed; results that arrive later are dropped.

    :param reactor: the clock for timers, timeouts and C{lastCheck}; with the
        default checks, also the reactor to connect with.
    :param targets: C{(balancerName, healthCheck, members)} for each
        balancer to check.
    :param check: replaces the TCP and HTTP checks (for tests): called with a
        member, it returns a Deferred of C{(passed, what happened)}.
    :param endpointFor: the plain TCP endpoint to reach C{(host, port)} (TLS
        is added for https and wss members); by default a TCP4/TCP6 endpoint for an
        address, a L{HostnameEndpoint} for a name.
    """

    name = "health"
    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        targets: Sequence[tuple[str, HealthCheck, Sequence[MemberState]]],
        onTransition: Callable[[str, MemberState, str, str], object] | None = None,
        check: Callable[[MemberState], Deferred[tuple[bool, str]]] | None = None,
        endpointFor: Callable[[str, int], IStreamClientEndpoint] | None = None,
    ) -> None:
        self._reactor = reactor
        self._onTransition = onTransition
        self._check = check or self._defaultCheck
        self._endpointFor = endpointFor or self._defaultEndpoint
        self._targets: dict[str, _Target] = {}
        self._watched: dict[MemberState, _Watch] = {}
        self._connections = _Connections()
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._tls = BackendTLS()
        self._pool.retryAutomatically = False
        self._http: HTTPClient | None = None
        for name, healthCheck, members in targets:
            self._targets[name] = target = _Target(name, healthCheck, members)
            self._watch(target)

    def setMembers(self, balancerName: str, members: Sequence[MemberState]) -> None:
        """
        Watch C{members} from now on for C{balancerName}, after members were
        added or removed; those kept keep their counts and timers, a new one
        is checked at once, a removed one's timer and check in flight are
        cancelled and its result dropped.

        :raise KeyError: if the balancer is not watched.
        """
        target = self._targets[balancerName]
        keep = set(members)
        for member in target.members:
            if member not in keep:
                watch = self._watched.pop(member)
                watch.cancelTimer()
                if watch.inFlight is not None:
                    watch.inFlight.cancel()
        target.members = tuple(members)
        self._watch(target)

    def _watch(self, target: _Target) -> None:
        """Watch each new member of C{target}, checking it at once if running."""
        for member in target.members:
            if member not in self._watched:
                watch = self._watched[member] = _Watch(target, member)
                if self.running:
                    self._startCheck(watch)

    def tracker(self, member: MemberState) -> HealthTracker:
        """
        Return the rise/fall counter of a watched member.

        :raise KeyError: if the member is not watched.
        """
        return self._watched[member].tracker

    def nextCheck(self, member: MemberState) -> float | None:
        """
        When the next check of a watched member is due (C{None} while one
        runs or the service is stopped).

        :raise KeyError: if the member is not watched.
        """
        timer = self._watched[member].timer
        return timer.getTime() if timer is not None and timer.active() else None

    def requestFailed(self, member: MemberState) -> None:
        """
        A request to C{member} failed and put it in error: from now on it is
        checked at the fast interval (the next check at once, or one fast
        interval after the start of the last), and only C{passes} checks in
        a row that start after this failure bring it back. Members not
        watched (their balancer has no health checks) are left to C{retry}.
        """
        watch = self._watched.get(member)
        if watch is None:
            return
        watch.tracker.requestFailed()
        if not watch.tracker.suspect:
            return
        if watch.inFlight is not None:
            # The check under way was sent before the failure: it may pass
            # without saying anything about the member now.
            watch.stale = True
            return
        if not self.running or watch.timer is None:
            return
        now = self._reactor.seconds()
        due = now
        if watch.startedAt is not None:
            due = max(now, watch.startedAt + fastInterval(watch.target.check))
        if due < watch.timer.getTime():
            self._schedule(watch, due)

    def startService(self) -> None:
        """Check every member at once; each then follows its own timer."""
        super().startService()
        for watch in list(self._watched.values()):
            self._startCheck(watch)

    def stopService(self) -> Deferred[None]:
        """Cancel the timers and checks; fire once every connection is closed."""
        super().stopService()
        for watch in self._watched.values():
            watch.cancelTimer()
        for watch in list(self._watched.values()):
            if watch.inFlight is not None:
                watch.inFlight.cancel()
        self._connections.abortAll()
        closing = gatherResults(
            [self._pool.closeCachedConnections(), self._connections.whenClosed()]
        )
        return closing.addCallback(lambda _: None)

    def _current(self, watch: _Watch) -> bool:
        """Whether C{watch} still counts: running, and its member still watched."""
        return bool(self.running) and self._watched.get(watch.member) is watch

    def _schedule(self, watch: _Watch, due: float) -> None:
        """Have the next check of C{watch}'s member start at C{due}."""
        watch.cancelTimer()
        delay = max(0.0, due - self._reactor.seconds())
        watch.timer = self._reactor.callLater(delay, self._due, watch)

    def _due(self, watch: _Watch) -> None:
        """The timer of C{watch} fired: check its member now."""
        watch.timer = None
        if self._current(watch) and watch.inFlight is None:
            self._startCheck(watch)

    def _scheduleNext(self, watch: _Watch) -> None:
        """A check is over: the next one after the interval its state calls for."""
        if not self._current(watch) or watch.startedAt is None:
            return
        delay = nextCheckDelay(watch.tracker, watch.target.check)
        self._schedule(watch, watch.startedAt + delay)

    def _startCheck(self, watch: _Watch) -> None:
        """Check a member once, cut off at the timeout; the result is recorded."""
        member = watch.member
        watch.startedAt = self._reactor.seconds()
        watch.stale = False
        d: Deferred[Any] = maybeDeferred(self._check, member)
        d.addTimeout(
            watch.target.check.timeout, self._reactor, onTimeoutCancel=_timedOut
        )
        watch.inFlight = d
        d.addBoth(self._done, watch)
        d.addCallbacks(
            self._record, self._failed, callbackArgs=(watch,), errbackArgs=(watch,)
        )
        d.addErrback(
            lambda f: self._log.failure("health check of {m}", f, m=member.name)
        )
        d.addCallback(lambda _: self._scheduleNext(watch))
        d.addErrback(
            lambda f: self._log.failure("health check timer of {m}", f, m=member.name)
        )

    def _done(self, result: object, watch: _Watch) -> object:
        """The check of C{watch}'s member is over, whatever its result."""
        watch.inFlight = None
        return result

    def _failed(self, failure: Failure, watch: _Watch) -> None:
        """A check got no answer: a failure, unless we cancelled it ourselves."""
        if failure.check(CancelledError) and not self._current(watch):
            return
        member = watch.member
        self._record((False, describeFailure(failure, member.member.host)), watch)

    def _record(self, result: tuple[bool, str], watch: _Watch) -> None:
        """Count one check's result, and act on a transition."""
        if not self._current(watch):
            return
        member, target, tracker = watch.member, watch.target, watch.tracker
        ok, reason = result
        member.lastCheck = self._reactor.seconds()
        member.lastCheckResult = reason
        if ok and watch.stale:
            return
        before = tracker.state
        newState = tracker.observe(ok)
        if newState is None:
            return
        member.health = newState
        # The balancer acts first, so the log line tells what is already so.
        if self._onTransition is not None:
            try:
                self._onTransition(target.name, member, newState, reason)
            except Exception:
                self._log.failure("health transition of {member}", member=member.name)
        if newState == UP and before == UP:
            self._log.info(
                "member {member} of balancer://{balancer} back from error: "
                "{reason} ({count} of {count} passed)",
                member=member.name,
                reason=reason,
                count=tracker.passes,
                balancer=target.name,
            )
        elif newState == UP:
            self._log.info(
                "member {member} up: {reason} ({count} of {count} passed)",
                member=member.name,
                reason=reason,
                count=tracker.passes,
                balancer=target.name,
            )
        else:
            self._log.warn(
                "member {member} down: {reason} ({count} of {count} failed)",
                member=member.name,
                reason=reason,
                count=tracker.fails,
                balancer=target.name,
            )

    # The checks themselves.

    def _defaultEndpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        """A TCP endpoint for an address, a L{HostnameEndpoint} for a name."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return HostnameEndpoint(self._reactor, host, port)
        if ip.version == 4:
            return TCP4ClientEndpoint(self._reactor, host, port)
        return TCP6ClientEndpoint(self._reactor, host, port)

    def _defaultCheck(self, member: MemberState) -> Deferred[tuple[bool, str]]:
        """Check C{member} the way its balancer's health table says."""
        target = self._watched[member].target
        if target.check.method == "TCP":
            return Deferred.fromCoroutine(self._checkTCP(member))
        return Deferred.fromCoroutine(self._checkHTTP(target.expectation, member))

    async def _checkTCP(self, member: MemberState) -> tuple[bool, str]:
        """Connect, then close at once: the member accepts connections."""
        endpoint = _TrackingEndpoint(
            self._endpointFor(member.member.host, member.member.port),
            self._connections,
        )
        probe = await connectProtocol(endpoint, _Probe())
        probe.transport.loseConnection()  # type: ignore[union-attr]
        await probe.lost
        return True, "connected"

    def _client(self) -> HTTPClient:
        """The treq client of the HTTP checks: own pool, no cookies kept."""
        if self._http is None:
            agent = Agent.usingEndpointFactory(
                self._reactor,
                _AgentEndpoints(self._endpointFor, self._connections, self._tlsFor),
                pool=self._pool,
            )
            jar = IndexableCookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
            self._http = HTTPClient(agent, cookiejar=jar)
        return self._http

    def _tlsFor(self, host: str, port: int) -> Any:
        """
        How an https or wss member's certificate is checked: as the proxy checks it
        (its C{tls_ca}, or C{tls_verify = false}), so a check agrees with
        what requests meet.
        """
        policy = TLSPolicy()
        for member in self._watched:
            m = member.member
            if isTLS(m.scheme) and m.host == host and m.port == port:
                policy = TLSPolicy(m.tls_ca, m.tls_verify)
                break
        return self._tls.creatorFor(host, policy)

    async def _checkHTTP(
        self, expectation: Expectation, member: MemberState
    ) -> tuple[bool, str]:
        """
        Ask for the check's URI with the member's Host; judge the answer. A
        ws:// or wss:// member is asked over plain HTTP or TLS, as its
        requests and upgrades are.
        """
        m = member.member
        hostPort = formatHostPort(m.host, m.port, m.scheme)
        wire = wireScheme(m.scheme)
        url = f"{wire}://{formatHostPort(m.host, m.port, wire).decode('ascii')}"
        url += expectation.uri
        response: IResponse = await self._client().request(
            expectation.method,
            url,
            headers=Headers({b"Host": [hostPort], b"User-Agent": [USER_AGENT]}),
            allow_redirects=False,
            unbuffered=True,
        )
        reader = _BoundedBody(MAX_BODY if expectation.readsBody else 0)
        response.deliverBody(reader)
        body = await reader.done
        return expectation.judge(response.code, body)
