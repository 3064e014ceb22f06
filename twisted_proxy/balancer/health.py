"""
Active health checks: mod_proxy_hcheck's job, with HAProxy's rise and fall.

The deciding part is pure, in L{twisted_proxy.balancer.healthstate}:
L{HealthTracker} turns a run of passed and failed checks (and failed
requests) into state transitions and says whether a member is settled,
L{nextCheckDelay} turns that into the time to its next check,
L{statusMatches} and L{Expectation} judge an answer. L{HealthMonitor} is the
thin I/O around them: one timer per member, a TCP connect or an HTTP request
per check (their pieces in L{twisted_proxy.balancer.healthprobe}), each with
its own timeout.

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
from collections.abc import Callable, Sequence
from http.cookiejar import DefaultCookiePolicy
from typing import Any

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from twisted_proxy.balancer.healthprobe import (
    AgentEndpoints,
    BoundedBody,
    CheckConnections,
    CPingProbe,
    Probe,
    TrackingEndpoint,
    describeFailure,
)
from twisted_proxy.balancer.healthstate import (
    MAX_BODY,
    Expectation,
    HealthTracker,
    fastInterval,
    nextCheckDelay,
)
from twisted_proxy.balancer.state import UP, MemberState
from twisted_proxy.config.model import HealthCheck
from twisted_proxy.config.schemes import isTLS, wireScheme
from twisted_proxy.core.headers import formatHostPort
from twisted_proxy.tls.backend import BackendTLS, TLSPolicy

__all__ = [
    "HealthMonitor",
]

USER_AGENT = b"twisted-proxy health check"
"""What the HTTP checks send as C{User-Agent}, so backends can tell them apart."""


def _timedOut(result: object, timeout: float) -> tuple[bool, str]:
    """The result of a check cut off by its timeout."""
    return False, f"timed out after {timeout:g}s"


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
        self._connections = CheckConnections()
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

    def setTarget(
        self,
        balancerName: str,
        check: HealthCheck | None,
        members: Sequence[MemberState],
    ) -> None:
        """
        Watch C{balancerName}'s C{members} with C{check} from now on, or stop
        watching it (C{None}): what a reload does. A balancer whose check is
        unchanged keeps its members' counts and timers; a new or changed
        check starts afresh (each member is checked at once).
        """
        target = self._targets.get(balancerName)
        if target is not None and check != target.check:
            self.setMembers(balancerName, ())
            del self._targets[balancerName]
            target = None
        if check is None:
            return
        if target is None:
            self._targets[balancerName] = target = _Target(balancerName, check, members)
            self._watch(target)
        else:
            self.setMembers(balancerName, members)

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
        if newState == UP:
            emit = self._log.info
            count = tracker.passes
            if before == UP:
                words = "member {member} of balancer://{balancer} back from error: "
            else:
                words = "member {member} up: "
            words += "{reason} ({count} of {count} passed)"
        else:
            emit, count = self._log.warn, tracker.fails
            words = "member {member} down: {reason} ({count} of {count} failed)"
        emit(
            words, member=member.name, reason=reason, count=count, balancer=target.name
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
        if target.check.method == "CPING":
            return Deferred.fromCoroutine(self._checkCPING(member))
        return Deferred.fromCoroutine(self._checkHTTP(target.expectation, member))

    async def _checkTCP(self, member: MemberState) -> tuple[bool, str]:
        """Connect, then close at once: the member accepts connections."""
        endpoint = TrackingEndpoint(
            self._endpointFor(member.member.host, member.member.port),
            self._connections,
        )
        probe = await connectProtocol(endpoint, Probe())
        probe.transport.loseConnection()  # type: ignore[union-attr]
        await probe.lost
        return True, "connected"

    async def _checkCPING(self, member: MemberState) -> tuple[bool, str]:
        """An AJP member: connect, send CPING, and it passes on CPONG."""
        endpoint = TrackingEndpoint(
            self._endpointFor(member.member.host, member.member.port),
            self._connections,
        )
        probe = await connectProtocol(endpoint, CPingProbe())
        answer: tuple[bool, str] = await probe.answered
        return answer

    def _client(self) -> HTTPClient:
        """The treq client of the HTTP checks: own pool, no cookies kept."""
        if self._http is None:
            agent = Agent.usingEndpointFactory(
                self._reactor,
                AgentEndpoints(self._endpointFor, self._connections, self._tlsFor),
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
        reader = BoundedBody(MAX_BODY if expectation.readsBody else 0)
        response.deliverBody(reader)
        body = await reader.done
        return expectation.judge(response.code, body)
