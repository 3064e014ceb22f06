"""
ProxyService: the whole proxy as one Twisted service, built from a Config.

Add it under your own C{Application} (``ProxyService(config).setServiceParent
(application)``) or let ``twistd -n proxy`` do it. It owns the balancer, the
listeners, the upstream pool and the access log; stopping it stops accepting,
lets requests in flight finish within C{shutdown_grace}, then closes the rest.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_proxy.accesslog import openLogTarget
from twisted_proxy.balancer import BalancerService
from twisted_proxy.config.model import Config
from twisted_proxy.http_proxy import ProxyContext
from twisted_proxy.http_server import HTTPProxyFactory
from twisted_proxy.requestlog import AccessLogger
from twisted_proxy.router import RouterResource

# The access log reaches its file at least this often.
_LOG_FLUSH_INTERVAL = 1.0


class ProxyService(MultiService):
    """Every listener, the balancer and the upstream pool of one configuration."""

    _log = Logger()

    def __init__(self, config: Config, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: TID251

            reactor = globalReactor
        self.config = config
        self._reactor = reactor
        self.balancer = BalancerService([b for _, b in config.balancers], reactor)
        self.balancer.setServiceParent(self)
        self.context = ProxyContext.create(
            config.proxy, reactor, self.balancer, dict(config.balancers)
        )
        self.accessLog: AccessLogger | None = None
        self.site = HTTPProxyFactory(
            RouterResource(config, self.context),
            config.proxy,
            reactor,
            hostNames=[r.host for r in config.routes if r.host],
        )
        self.ports: list[IListeningPort] = []
        self._flusher: LoopingCall | None = None

    def startService(self) -> None:
        """Start the balancer, then listen on every C{[[listen]]} endpoint."""
        super().startService()
        self._openAccessLog()
        failures: list[Failure] = []
        for listener in self.config.listen:
            endpoint = serverFromString(self._reactor, listener.endpoint)
            d = endpoint.listen(self.site)
            d.addCallbacks(self.ports.append, failures.append)
            if failures:
                self._log.error(
                    "cannot listen on {endpoint}: {why}",
                    endpoint=listener.endpoint,
                    why=failures[0].getErrorMessage(),
                )
                for port in self.ports:
                    port.stopListening()
                self.ports = []
                self._closeAccessLog()
                super().stopService()
                failures[0].raiseException()
        for port in self.ports:
            self._log.info("listening on {address}", address=port.getHost())

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting; let requests in flight finish (up to C{shutdown_grace}
        seconds), then cut what is left and close backend connections.
        """
        super().stopService()
        ports, self.ports = self.ports, []
        stopped = DeferredList(
            [d for d in (port.stopListening() for port in ports) if d is not None]
        )
        grace = self.config.proxy.shutdown_grace

        def drain(_: object) -> Deferred[None]:
            drained = self.site.drain()
            if drained.called:
                return drained
            timer = self._reactor.callLater(grace, self._graceOver, drained)

            def done(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            drained.addBoth(done)
            return drained

        def closeUpstream(_: object) -> Deferred[object]:
            return self.context.pool.closeAll()

        def closeLog(result: object) -> object:
            self._closeAccessLog()
            return result

        d: Deferred[Any] = stopped.addCallback(drain)
        d.addCallback(closeUpstream)
        d.addBoth(closeLog)
        return d

    def _openAccessLog(self) -> None:
        proxy = self.config.proxy
        target = openLogTarget(proxy.access_log)
        if target is None:
            return
        write, flush = target
        self.accessLog = AccessLogger(
            proxy.access_log_format, write, flush, self._reactor, proxy.server_name
        )
        self.site.accessLog = self.accessLog
        self._flusher = LoopingCall(self.accessLog.flush)
        self._flusher.clock = self._reactor
        self._flusher.start(_LOG_FLUSH_INTERVAL, now=False)

    def _closeAccessLog(self) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        self._flusher = None
        if self.accessLog is not None:
            self.accessLog.close()
        self.site.accessLog = self.accessLog = None

    def _graceOver(self, drained: Deferred[None]) -> None:
        left = len(self.site.channels)
        self._log.warn("shutdown grace period over: cutting {n} connection(s)", n=left)
        self.site.abortAll()

    @property
    def port(self) -> int:
        """The TCP port of the first listener (handy with ``tcp:0``)."""
        return int(self.ports[0].getHost().port)  # type: ignore[attr-defined]


__all__ = ["ProxyService"]
