"""
A follower process of C{[proxy] workers = N}, started by the owner as
C{python -m twisted_proxy.workers.follower NUMBER} with its end of the
control channel as file descriptor 3.

It asks the owner for the configuration text and the listening sockets,
serves on them with a L{ProxyService} of its own (no health checks, no
state file: it follows the owner's view of the balancers), reports members
that fail, counts what it serves for the owner's pages, forwards requests
for those pages to the owner, and sends its log lines to the owner's log.
It takes a reload, a log reopening and a stop from the owner, and stops on
its own when the owner is gone. SIGHUP, SIGUSR1 and SIGINT (Ctrl-C reaches
the whole process group) are the owner's to act on; a follower ignores
them. SIGTERM stops it as it stops the owner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import (
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    formatEvent,
    globalLogBeginner,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.config.loader import ConfigError, loadString
from twisted_proxy.config.model import Config, Listener, Route
from twisted_proxy.core.localpage import LocalRequest, LocalResponse
from twisted_proxy.frontends.local import Handler
from twisted_proxy.workers.channel import ControlChannel
from twisted_proxy.workers.pages import requestDocument, responseFrom
from twisted_proxy.workers.sockets import AdoptedEndpoint
from twisted_proxy.workers.sync import WorkerCounts, follow, workerCounts

__all__ = ["Follower", "main"]

CHANNEL_FD = 3
"""The follower's end of the control channel."""


class Follower:
    """A follower's L{WorkerRole}, and what it does for the owner."""

    follower = True
    counts: WorkerCounts | None = None
    _log = Logger()

    def __init__(self, reactor: Any, number: int) -> None:
        self.number = number
        self._reactor = reactor
        self.channel = ControlChannel(
            {
                "sockets": self._takeSockets,
                "follow": self._follow,
                "reload": self._reload,
                "counts": self._counts,
                "reopen": self._reopen,
                "stop": self._stop,
            },
            "owner",
        )
        self._sockets: dict[str, int] = {}
        self.service: Any = None
        self.exitCode = 0

    # -- the WorkerRole --

    def page(self, route: Route, handler: Handler) -> Handler:
        def forwarded(request: LocalRequest) -> Deferred[LocalResponse]:
            d = self.channel.call(
                "page", route=route.index, request=requestDocument(request)
            )
            return d.addCallback(responseFrom)

        return forwarded  # type: ignore[return-value]

    def endpoint(
        self, listener: Listener, named: IStreamServerEndpoint
    ) -> IStreamServerEndpoint:
        return AdoptedEndpoint(self._reactor, self._sockets, listener.endpoint)

    def processes(self) -> Mapping[str, int]:
        """A follower's pages are the owner's: this is never shown."""
        return {"configured": 1, "running": 1, "restarts": 0}

    def reloaded(self, text: str) -> None:
        """The follower's reloads come from the owner: nothing to pass on."""

    # -- starting --

    def start(self, answer: Mapping[str, Any]) -> None:
        """Serve the configuration the owner's C{hello} answered with."""
        from twisted_proxy.preflight import StartupError
        from twisted_proxy.service import ProxyService
        from twisted_proxy.tls.server import TLSFilesError

        try:
            config = self._config(answer)
            self.service = ProxyService(
                config, self._reactor, daemon=answer["daemon"], role=self
            )
            self.service.startService()
        except (ConfigError, StartupError, TLSFilesError) as e:
            self._log.critical("cannot start: {why}", why=str(e))
            self.exitCode = 1
            self._stopReactor()
            return
        follow(self.service.balancer, answer["view"])
        self.service.balancer.failureObservers.append(self._memberFailed)
        self.channel.tell("ready", pid=os.getpid())

    def _config(self, answer: Mapping[str, Any]) -> Config:
        source = answer["source"] or "<owner>"
        # [proxy] is what the owner started with (a reload does not change it).
        proxy = loadString(answer["startText"], source).proxy
        if answer["logLevel"] is not None:
            proxy = dataclasses.replace(proxy, log_level=answer["logLevel"])
        config = loadString(answer["text"], source)
        return dataclasses.replace(config, proxy=proxy)

    def _memberFailed(self, member: Any, why: str) -> None:
        self.channel.tell(
            "failed", balancer=member.balancerName, member=member.name, why=why
        )

    # -- what the owner asks --

    def _takeSockets(self, endpoints: list[str]) -> None:
        for fd in self._sockets.values():
            os.close(fd)
        self._sockets.clear()
        for endpoint in endpoints:
            self._sockets[endpoint] = self.channel.takeDescriptor()

    def _follow(self, view: Mapping[str, Any]) -> None:
        if self.service is not None:
            for change in follow(self.service.balancer, view):
                self._log.debug("following the owner: {change}", change=change)

    def _reload(self, text: str) -> dict[str, Any]:
        result = self.service.reload(text)
        return {"ok": result.ok, "errors": list(result.errors)}

    def _counts(self) -> dict[str, Any]:
        view = self.service.admin.view
        return workerCounts(
            self.service.balancer,
            self.service.traffic,
            view.openConnections(),
            view.busyConnections(),
        )

    def _reopen(self) -> bool:
        return bool(self.service.reopenLogs()) if self.service is not None else True

    def _stop(self) -> None:
        self._stopReactor()

    def stopService(self) -> Deferred[Any]:
        """At reactor shutdown: the proxy drains as a stopping one does."""
        if self.service is not None and self.service.running:
            stopped: Deferred[Any] = self.service.stopService()
            return stopped
        return succeed(None)

    def _stopReactor(self, _: object = None) -> None:
        with contextlib.suppress(ReactorNotRunning):
            self._reactor.stop()


@implementer(ILogObserver)
class _ToOwner:
    """Log events, sent to the owner's log (standard error until connected)."""

    def __init__(self, channel: ControlChannel) -> None:
        self._channel = channel
        self.least = LogLevel.info

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if _rank(level) < _rank(self.least):
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            text = f"{text}\n{failure.getTraceback()}"
        if self._channel.open:
            self._channel.tell("log", level=level.name, text=text)
        else:
            print(f"worker: {text}", file=sys.stderr, flush=True)


def _rank(level: LogLevel) -> int:
    return list(LogLevel.iterconstants()).index(level)


def main(argv: list[str] | None = None) -> int:
    """Run follower C{argv[0]} until the owner stops it (or is gone)."""
    args = sys.argv[1:] if argv is None else argv
    number = int(args[0])
    from twisted.internet import reactor  # noqa: TID251

    for name in ("SIGHUP", "SIGUSR1", "SIGINT"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    follower = Follower(reactor, number)
    observer = _ToOwner(follower.channel)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    os.set_blocking(CHANNEL_FD, False)
    reactor.adoptStreamConnection(  # type: ignore[attr-defined]
        CHANNEL_FD, socket.AF_UNIX, Factory.forProtocol(lambda: follower.channel)
    )
    os.close(CHANNEL_FD)
    follower.channel.closed.addCallback(follower._stopReactor)

    def started(answer: Mapping[str, Any]) -> None:
        if answer["logLevel"] == "debug":
            observer.least = LogLevel.debug
        follower.start(answer)

    def failed(failure: Failure) -> None:
        print(
            f"worker {number}: no answer from the owner process:"
            f" {failure.getErrorMessage()}",
            file=sys.stderr,
        )
        follower.exitCode = 1
        follower._stopReactor()

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: follower.channel.call("hello", pid=os.getpid()).addCallbacks(
            started, failed
        )
    )
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", follower.stopService
    )
    reactor.run()  # type: ignore[attr-defined]
    return follower.exitCode


if __name__ == "__main__":
    sys.exit(main())
