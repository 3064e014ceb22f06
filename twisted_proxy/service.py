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
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from twisted_proxy.accesslog import openLogTarget
from twisted_proxy.balancer import BalancerService
from twisted_proxy.config.model import Config, Listener
from twisted_proxy.h2_server import NegotiatingFactory
from twisted_proxy.http_proxy import ProxyContext
from twisted_proxy.http_server import HTTPProxyFactory
from twisted_proxy.redirect import RedirectResource
from twisted_proxy.requestlog import AccessLogger
from twisted_proxy.router import RouterResource
from twisted_proxy.tls import ServerTLS, inspectFiles
from twisted_proxy.tls_sniff import TLSSniffingFactory

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
        router = RouterResource(config, self.context)
        hostNames = [r.host for r in config.routes if r.host]

        def front(listener: Listener | None) -> HTTPProxyFactory:
            resource: Any = router
            if listener is not None and listener.redirect_https is not None:
                resource = RedirectResource(listener.redirect_https)
            return HTTPProxyFactory(
                resource, config.proxy, reactor, hostNames=hostNames, listener=listener
            )

        # One front end per listener (TLS, HSTS and redirects differ); the
        # first is C{site}. TLSFilesError here names the file that is wrong.
        self.sites = [front(listener) for listener in config.listen] or [front(None)]
        self.site = self.sites[0]
        self.tls: list[ServerTLS | None] = [
            ServerTLS(listener.tls) if listener.tls is not None else None
            for listener in config.listen
        ]
        self.ports: list[IListeningPort] = []
        self._flusher: LoopingCall | None = None

    def startService(self) -> None:
        """Start the balancer, then listen on every C{[[listen]]} endpoint."""
        super().startService()
        self._openAccessLog()
        self._warnAboutFiles()
        failures: list[Failure] = []
        for index, listener in enumerate(self.config.listen):
            endpoint = serverFromString(self._reactor, listener.endpoint)
            d = endpoint.listen(self._factoryFor(index))
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

    def _factoryFor(self, index: int) -> IProtocolFactory:
        """What listener C{index} serves: its front end, behind TLS if set."""
        site = self.sites[index]
        factory: IProtocolFactory = site
        tls = self.tls[index]
        if tls is not None:
            if "h2" in tls.tls.alpn:
                # HTTP/2 only where the listener asks for it, as ALPN decides.
                factory = NegotiatingFactory(site)
            # Plain HTTP sent to this port gets a 400 saying so, not silence.
            factory = TLSSniffingFactory(
                TLSMemoryBIOFactory(tls, False, factory, self._reactor), site
            )
        return factory

    def _warnAboutFiles(self) -> None:
        for listener in self.config.listen:
            if listener.tls is None:
                continue
            for problem in inspectFiles(listener.tls):
                if problem.severity == "warning":
                    self._log.warn("{problem}", problem=str(problem))

    def reloadCertificates(self) -> bool:
        """
        Read every listener's certificate files again (SIGHUP does this):
        new handshakes get the new certificates, open connections keep
        theirs, a broken file keeps the old one. True if all were taken.
        """
        results = [tls.reload() for tls in self.tls if tls is not None]
        return all(results)

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
            drained: Deferred[None] = DeferredList(
                [site.drain() for site in self.sites]
            ).addCallback(lambda _: None)
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
        for site in self.sites:
            site.accessLog = self.accessLog
        self._flusher = LoopingCall(self.accessLog.flush)
        self._flusher.clock = self._reactor
        self._flusher.start(_LOG_FLUSH_INTERVAL, now=False)

    def _closeAccessLog(self) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        self._flusher = None
        if self.accessLog is not None:
            self.accessLog.close()
        self.accessLog = None
        for site in self.sites:
            site.accessLog = None

    def _graceOver(self, drained: Deferred[None]) -> None:
        left = sum(len(site.channels) for site in self.sites)
        self._log.warn("shutdown grace period over: cutting {n} connection(s)", n=left)
        for site in self.sites:
            site.abortAll()

    @property
    def port(self) -> int:
        """The TCP port of the first listener (handy with ``tcp:0``)."""
        return int(self.ports[0].getHost().port)  # type: ignore[attr-defined]


__all__ = ["ProxyService"]
