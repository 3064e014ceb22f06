"""
The owner process of C{[proxy] workers = N}: the one twistd started. It
binds the listeners, serves on them like every worker, and starts N-1
followers (C{python -m twisted_proxy.workers.follower}) that are handed the
same listening sockets over a control channel (L{ControlChannel}), so the
kernel spreads the connections over N processes.

The owner alone runs the health checks and keeps the state file; every
worker follows the owner's view of the balancers (L{balancerView}), sent
at once after a run-time change or a follower's failed request, and
otherwise when a look finds it changed (four times a second, or twice per
health-check interval when that is shorter), so health, error, drain and
run-time changes reach every worker within one health interval. A
follower whose request fails reports it, and the owner puts the member in
error for all. The admin pages are answered by the owner, for any worker:
a follower forwards the request, and the owner first gathers every
follower's counters, so the pages and metrics show the sums. A reload
(SIGHUP or the manager's) is checked and taken by the owner, then sent to
the followers with the listening sockets it now has; logs are reopened in
every worker; a stop drains every worker within C{shutdown_grace}. A
follower that dies is started again (after 1 s, up to 30 s when it keeps
dying at once); one that loses its owner stops.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from twisted_proxy.balancer.healthstate import fastInterval
from twisted_proxy.config.model import Listener, Route
from twisted_proxy.core.localpage import LocalRequest, LocalResponse, textResponse
from twisted_proxy.frontends.local import Handler
from twisted_proxy.workers.channel import ControlChannel
from twisted_proxy.workers.pages import requestFrom, responseDocument
from twisted_proxy.workers.sockets import SharedEndpoint
from twisted_proxy.workers.sync import WorkerCounts, balancerView

if TYPE_CHECKING:
    from twisted_proxy.service import ProxyService

__all__ = ["Owner"]

VIEW_INTERVAL = 0.25
"""
Seconds between the owner's looks for a changed view of the balancers, at
most: half the shortest health-check interval when that is shorter.
"""

COUNTS_TIMEOUT = 2.0
"""Seconds a page waits for a follower's counters before showing without them."""

_RESPAWN_FIRST = 1.0
_RESPAWN_MOST = 30.0
# A follower that ran this long before it died is started again at once.
_RESPAWN_SETTLED = 10.0
# After the grace period, this long for followers to end before SIGKILL.
_STOP_MARGIN = 5.0


@dataclass(eq=False)
class _Follower:
    """One follower process and its channel."""

    number: int
    channel: ControlChannel
    process: Any = None
    started: float = 0.0
    ready: bool = False
    ended: Deferred[None] | None = None


class _FollowerProcess(ProcessProtocol):
    def __init__(self, owner: Owner, follower: _Follower) -> None:
        self._owner = owner
        self._follower = follower

    def processEnded(self, reason: Failure) -> None:
        self._owner._ended(self._follower, reason)


class Owner(Service):
    """
    The owner's part in a set of worker processes (a L{WorkerRole}), and
    the service that starts and stops the followers.

    C{text}: the configuration file's text, as the proxy was started on it.
    C{command}: how a follower is started (the test suite's own Python).
    """

    follower = False
    _log = Logger()

    def __init__(
        self,
        workers: int,
        text: str,
        reactor: Any,
        logLevel: str | None = None,
        daemon: bool = False,
        command: tuple[str, ...] | None = None,
    ) -> None:
        self.workers = workers
        self.startText = text
        self.text = text
        self._reactor = reactor
        self._logLevel = logLevel
        self._daemon = daemon
        self._command = command or (
            sys.executable,
            "-m",
            "twisted_proxy.workers.follower",
        )
        self.proxy: ProxyService | None = None
        self.counts: WorkerCounts | None = WorkerCounts()
        self.followers: dict[int, _Follower] = {}
        self._pages: dict[int, Handler] = {}
        self._building: dict[int, Handler] = {}
        self._backoff: dict[int, float] = {}
        self._lastView: dict[str, Any] | None = None
        self._timers: dict[int, IDelayedCall] = {}
        self.restarts = 0
        """Followers that ended unasked (and were started again)."""
        self._watch = LoopingCall(self.pushView)
        self._watch.clock = reactor

    def attach(self, proxy: ProxyService) -> None:
        """Serve as C{proxy}'s role (it was built with this one)."""
        self.proxy = proxy
        self._pages, self._building = self._building, {}
        proxy.balancer.countedElsewhere = self._memberCounts
        proxy.balancer.observeChanges(self.pushView)

    # -- the WorkerRole --

    def page(self, route: Route, handler: Handler) -> Handler:
        self._building[route.index] = handler

        def gathered(request: LocalRequest) -> Deferred[LocalResponse]:
            return self.gather().addCallback(lambda _: handler(request))

        return gathered  # type: ignore[return-value]

    def endpoint(
        self, listener: Listener, named: IStreamServerEndpoint
    ) -> IStreamServerEndpoint:
        return SharedEndpoint(named)

    def processes(self) -> Mapping[str, int]:
        return {
            "configured": self.workers,
            "running": 1 + len(self._ready()),
            "restarts": self.restarts,
        }

    def reloaded(self, text: str) -> None:
        self.text = text
        self._pages, self._building = self._building, {}
        for follower in self._ready():
            self._sendSockets(follower)
            follower.channel.call("reload", text=text).addErrback(
                self._complain, follower, "reload"
            )
        self.pushView()
        interval = self._viewInterval()
        if self._watch.running and interval != self._watch.interval:
            self._watch.stop()
            self._watch.start(interval, now=False)

    def _viewInterval(self) -> float:
        intervals = [VIEW_INTERVAL]
        for _, balancer in self._proxy().config.balancers:
            if balancer.health is not None:
                intervals.append(fastInterval(balancer.health) / 2)
        return min(intervals)

    def reopenLogs(self) -> None:
        """Every follower opens its access log again (after logrotate)."""
        for follower in self._ready():
            follower.channel.tell("reopen")

    # -- the service --

    def startService(self) -> None:
        super().startService()
        for number in range(1, self.workers):
            self._spawn(number)
        self._watch.start(self._viewInterval(), now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._watch.running:
            self._watch.stop()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        ended = []
        for follower in self.followers.values():
            if follower.ended is not None:
                follower.channel.tell("stop")
                ended.append(follower.ended)
        if not ended:
            return succeed(None)
        grace = self.proxy.config.proxy.shutdown_grace if self.proxy else 30.0
        killer = self._reactor.callLater(grace + _STOP_MARGIN, self._kill)

        def done(_: object) -> None:
            if killer.active():
                killer.cancel()

        return DeferredList(ended).addCallback(done)

    def _kill(self) -> None:
        for follower in self.followers.values():
            if follower.process is not None and follower.ended is not None:
                self._log.warn(
                    "worker {n} did not end in time: killed", n=follower.number
                )
                with contextlib.suppress(error.ProcessExitedAlready):
                    follower.process.signalProcess("KILL")

    def _spawn(self, number: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = ControlChannel(self._handlers(number), f"worker {number}")
        follower = _Follower(number, channel, ended=Deferred())
        self.followers[number] = follower
        ours.setblocking(False)
        self._reactor.adoptStreamConnection(
            ours.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: channel)
        )
        ours.close()
        try:
            follower.process = self._reactor.spawnProcess(
                _FollowerProcess(self, follower),
                self._command[0],
                [*self._command, str(number)],
                env=os.environ.copy(),
                childFDs={1: 1, 2: 2, 3: theirs.fileno()},
            )
        finally:
            theirs.close()
        follower.started = self._reactor.seconds()

    def _ended(self, follower: _Follower, reason: Failure) -> None:
        if follower.channel.transport is not None:
            follower.channel.transport.loseConnection()
        if self.counts is not None:
            self.counts.forget([follower.number])
        if self.followers.get(follower.number) is follower:
            del self.followers[follower.number]
        ended, follower.ended = follower.ended, None
        status = reason.value
        if not self.running:
            if isinstance(status, error.ProcessTerminated):
                self._log.warn(
                    "worker {n} ended: {status}", n=follower.number, status=status
                )
        else:
            self.restarts += 1
            lived = self._reactor.seconds() - follower.started
            wait = self._backoff.get(follower.number, _RESPAWN_FIRST)
            if lived >= _RESPAWN_SETTLED:
                wait = _RESPAWN_FIRST
            self._backoff[follower.number] = min(_RESPAWN_MOST, wait * 2)
            self._log.error(
                "worker {n} ended unexpectedly ({status}): starting it again"
                " in {wait:g} s",
                n=follower.number,
                status=status.__class__.__name__ + ": " + str(status),
                wait=wait,
            )
            self._timers[follower.number] = self._reactor.callLater(
                wait, self._respawn, follower.number
            )
        if ended is not None:
            ended.callback(None)

    def _respawn(self, number: int) -> None:
        if self.running and number not in self.followers:
            self._spawn(number)

    # -- what followers ask --

    def _handlers(self, number: int) -> Mapping[str, Callable[..., Any]]:
        def hello(pid: int) -> dict[str, Any]:
            follower = self.followers[number]
            endpoints = self._sendSockets(follower)
            return {
                "startText": self.startText,
                "text": self.text,
                "source": self._proxy().config.source,
                "logLevel": self._logLevel,
                "daemon": self._daemon,
                "listeners": endpoints,
                "view": balancerView(self._proxy().balancer),
            }

        def ready(pid: int) -> None:
            follower = self.followers.get(number)
            if follower is None:
                return
            follower.ready = True
            self._log.info("worker {n} (pid {pid}) serving", n=number, pid=pid)
            follower.channel.tell("follow", view=self._view())

        def failed(balancer: str, member: str, why: str) -> None:
            try:
                self._proxy().balancer.memberFailed(balancer, member, why)
            except KeyError:
                return  # a reload took it away meanwhile
            self.pushView()

        def page(route: int, request: Mapping[str, Any]) -> Deferred[Any] | Any:
            handler = self._pages.get(route)
            if handler is None:
                response = textResponse(
                    503, "the page changed with a reload; ask again"
                )
                return responseDocument(response)
            d = self.gather().addCallback(lambda _: handler(requestFrom(request)))
            return d.addCallback(responseDocument)

        def log(level: str, text: str) -> None:
            self._log.emit(
                LogLevel.levelWithName(level), "worker {n}: {text}", n=number, text=text
            )

        return {
            "hello": hello,
            "ready": ready,
            "failed": failed,
            "page": page,
            "log": log,
        }

    def _proxy(self) -> ProxyService:
        if self.proxy is None:
            raise RuntimeError("the owner serves no proxy yet")
        return self.proxy

    def _sendSockets(self, follower: _Follower) -> list[str]:
        """Hand C{follower} every listening socket; their endpoints, in order."""
        endpoints = []
        for entry in self._proxy().listeners.entries:
            if entry.port is None or entry.listener is None:
                continue
            follower.channel.sendDescriptor(entry.port.fileno())  # type: ignore[attr-defined]
            endpoints.append(entry.listener.endpoint)
        follower.channel.tell("sockets", endpoints=endpoints)
        return endpoints

    def _ready(self) -> list[_Follower]:
        return [f for f in self.followers.values() if f.ready and f.channel.open]

    def _complain(self, failure: Failure, follower: _Follower, what: str) -> None:
        self._log.error(
            "worker {n}: {what} failed: {why}",
            n=follower.number,
            what=what,
            why=failure.getErrorMessage(),
        )

    # -- one view, summed counters --

    def _view(self) -> dict[str, Any]:
        return balancerView(self._proxy().balancer)

    def pushView(self) -> None:
        """Send the balancers' view to every follower, if it changed."""
        if self.proxy is None:
            return
        view = self._view()
        if view == self._lastView:
            return
        self._lastView = view
        for follower in self._ready():
            follower.channel.tell("follow", view=view)

    def gather(self) -> Deferred[None]:
        """Fresh counters from every follower (those that answer in time)."""
        asked = []
        for follower in self._ready():
            d = follower.channel.call("counts")
            d.addTimeout(COUNTS_TIMEOUT, self._reactor)
            d.addCallbacks(
                self._counted,
                self._complain,
                callbackArgs=(follower.number,),
                errbackArgs=(follower, "counting"),
            )
            asked.append(d)
        return DeferredList(asked).addCallback(lambda _: None)

    def _counted(self, report: Mapping[str, Any], number: int) -> None:
        if self.counts is not None and number in self.followers:
            self.counts.reports[number] = report

    def _memberCounts(self) -> Any:
        return self.counts.members() if self.counts is not None else {}
