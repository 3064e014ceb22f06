"""
ProxyService: the whole proxy as one Twisted service, built from a Config.

Add it under your own C{Application} (``ProxyService(config).setServiceParent
(application)``) or let ``twistd -n proxy`` do it. It owns the balancer, the
listeners, the upstream pool and the access log; stopping it stops accepting,
lets requests in flight finish within C{shutdown_grace}, then closes the rest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_proxy.accesslog.logger import AccessLogger
from twisted_proxy.accesslog.target import LogTarget
from twisted_proxy.admin.guard import readToken
from twisted_proxy.admin.info import ServerInfo
from twisted_proxy.admin.manager import BalancerManager
from twisted_proxy.admin.metrics import Metrics
from twisted_proxy.admin.statefile import StateFile, StateFileError
from twisted_proxy.admin.status import ServerStatus
from twisted_proxy.admin.view import PROTOCOLS, AdminContext, ReloadResult
from twisted_proxy.apache.importer import configFromText
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.config.loader import ConfigError, readConfig
from twisted_proxy.config.model import Config
from twisted_proxy.core.traffic import Traffic, TrafficSnapshot
from twisted_proxy.frontends.context import ProxyContext, UpgradeHandler
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.listener import ListenerSite
from twisted_proxy.frontends.local import Handler, LocalResource
from twisted_proxy.frontends.router import RouterResource
from twisted_proxy.listening import Listeners
from twisted_proxy.preflight import StartupError, accessLogProblem, startupProblems
from twisted_proxy.tls.profile import weakTLSWarnings
from twisted_proxy.tls.server import ServerTLS, inspectFiles
from twisted_proxy.workers.role import WorkerRole
from twisted_proxy.workers.sync import WorkerCounts

# The access log reaches its file at least this often.
_LOG_FLUSH_INTERVAL = 1.0


class _WebSocketFrontEnd:
    """
    The context's upgrade handler: the WebSocket front end, loaded (and
    Autobahn with it) by the first WebSocket handshake, so a proxy that
    bridges none does not carry it.
    """

    def __init__(self) -> None:
        self._upgrades: UpgradeHandler | None = None

    def __call__(self, *handshake: Any) -> None:
        """Bridge a handshake (the arguments of an L{UpgradeHandler})."""
        if self._upgrades is None:
            from twisted_proxy.frontends.websocket import WebSocketUpgrades

            self._upgrades = WebSocketUpgrades()
        self._upgrades(*handshake)


class ProxyService(MultiService):
    """
    Every listener, the balancer and the upstream pool of one configuration.

    Ports are bound in C{privilegedStartService} (before twistd gives up
    root, as Apache and nginx bind :443 then drop privileges), or in
    C{startService} when nothing called that first.

    C{daemon}: standard output leads nowhere (twistd without C{-n}), so
    C{access_log = "-"} goes to the Twisted log instead.

    :raise StartupError: for an endpoint string that cannot be parsed, or a
        C{state_file} that cannot be read back.
    :raise twisted_proxy.tls.server.TLSFilesError: for certificate files that
        cannot be used.
    """

    _log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any = None,
        daemon: bool = False,
        role: WorkerRole | None = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: TID251

            reactor = globalReactor
        self.config = config
        self._reactor = reactor
        self._daemon = daemon
        self.role = role
        self.balancer = BalancerService([b for _, b in config.balancers], reactor)
        self.balancer.setServiceParent(self)
        if role is not None and role.follower:
            # The owner process checks the members and says what it found.
            self.balancer.health.disownServiceParent()
        self.stateFile: StateFile | None = None
        if config.proxy.state_file is not None and not (role and role.follower):
            self.stateFile = StateFile(config.proxy.state_file, self.balancer)
            try:
                self.stateFile.restore()
            except StateFileError as e:
                raise StartupError(
                    f"proxy.state_file: {e} (delete it to start from the"
                    " configuration file alone)"
                ) from None
        self.context = ProxyContext.create(
            config.proxy,
            reactor,
            self.balancer,
            dict(config.balancers),
            upgrade=_WebSocketFrontEnd(),
        )
        self.accessLog: AccessLogger | None = None
        self.admin = AdminContext(self.balancer, _ServiceView(self))
        self.generation = 1
        self.reloads = {"taken": 0, "refused": 0}
        router = RouterResource(config, self.context, self._handlers(config, reactor))
        # What every listener served, for the status page.
        self.traffic = Traffic(reactor.seconds)
        self.context.traffic = self.traffic
        # One front end per listener (TLS, HSTS and redirects differ).
        # TLSFilesError here names the file that is wrong.
        self.listeners = Listeners(
            config.listen,
            config.proxy,
            reactor,
            router,
            [name for r in config.routes for name in r.hosts],
            self.traffic,
            role.endpoint if role is not None else None,
            balancer=self.balancer,
        )
        self._listening = False
        self._accessTarget: LogTarget | None = None
        self._flusher: LoopingCall | None = None

    @property
    def sites(self) -> list[ListenerSite]:
        """The front end of each listener, in the file's order."""
        return self.listeners.sites

    @property
    def site(self) -> HTTPProxyFactory:
        """
        The first HTTP listener's front end (an embedder's, with no
        listeners); L{LookupError} when every listener is a tcp one.
        """
        for site in self.listeners.sites:
            if isinstance(site, HTTPProxyFactory):
                return site
        raise LookupError("no HTTP listener: every listener is protocol = tcp")

    @property
    def ports(self) -> list[IListeningPort]:
        """The ports open now, in the file's order."""
        return self.listeners.ports

    @property
    def tls(self) -> list[ServerTLS]:
        """The TLS contexts of the listeners."""
        return self.listeners.tls

    def _handlers(self, config: Config, reactor: Any) -> dict[int, LocalResource]:
        """The resources of the routes the proxy answers itself (the admin pages)."""
        handlers = {}
        for route in config.routes:
            handler: Handler
            if route.handler == "balancer-manager":
                handler = BalancerManager(
                    self.balancer,
                    route.path,
                    reactor.seconds,
                    token=readToken(route.token_file) if route.token_file else None,
                    reload=self.reload,
                )
            elif route.handler == "status":
                handler = ServerStatus(self.admin.view)
            elif route.handler == "info":
                handler = ServerInfo(self.admin.view)
            elif route.handler == "metrics":
                handler = Metrics(self.admin.view, self.balancer)
            else:
                continue
            if self.role is not None:
                handler = self.role.page(route, handler)
            handlers[route.index] = LocalResource(
                route, handler, config.proxy.merge_slashes
            )
        return handlers

    def privilegedStartService(self) -> None:
        """Open the access log and bind every C{[[listen]]} endpoint."""
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        """Bind (if not yet done), then start the balancer and the log flusher."""
        self._listen()
        super().startService()
        self._startAccessLog()
        self._warnAboutFiles()
        if self.config.proxy.workers > 1 and self.role is None:
            self._log.warn(
                "[proxy] workers = {n} is for twistd proxy and twisted-proxy run:"
                " this ProxyService, embedded in a program, is one process",
                n=self.config.proxy.workers,
            )
        for port in self.ports:
            self._log.info("listening on {address}", address=port.getHost())

    def _listen(self) -> None:
        """
        Open the access log and listen on every endpoint, or on none: on the
        first failure whatever was bound is let go and L{StartupError} says
        which endpoint and why.
        """
        if self._listening:
            return
        self._openAccessTarget()
        try:
            self.listeners.listen()
        except StartupError:
            self._closeAccessLog()
            raise
        self._listening = True

    def _warnAboutFiles(self) -> None:
        for listener in self.config.listen:
            if listener.tls is None:
                continue
            for problem in inspectFiles(listener.tls):
                if problem.severity == "warning":
                    self._log.warn("{problem}", problem=str(problem))
        if self.role is None or not self.role.follower:
            # Said once: worker processes serve what the owner already said.
            for warning in weakTLSWarnings(self.config):
                self._log.warn("{warning}", warning=warning)

    def reload(self, text: str | None = None) -> ReloadResult:
        """
        Re-read the configuration file (SIGHUP, or the manager's API) and
        apply it (C{text}: the file's text, already read: a worker process
        takes what the owner read). It is checked in full first: a file
        with any error is refused, every error logged, and the running
        configuration kept.
        Otherwise routes are swapped for new requests at once, balancers and
        members follow the file (the members that stay keep their counters
        and run-time changes the file did not override), handler pages are
        rebuilt and certificates read again; listeners are added, changed
        in place or closed (L{Listeners.update}: a new port that cannot be
        bound refuses the reload); requests, WebSockets and uploads under
        way finish where they started. C{[proxy]} changes are logged as
        needing a restart.
        """
        running = self.config
        source = running.source
        errors: list[str] = []
        if source is None:
            errors.append("the configuration was not read from a file")
        else:
            try:
                if text is None:
                    text = readConfig(source)
                # An Apache file's notices were said when it was first read.
                fresh, _ = configFromText(text, source)
            except ConfigError as e:
                errors.extend(e.errors)
            else:
                errors.extend(startupProblems(fresh, requireListeners=False).errors)
        changes: list[str] = []
        if not errors:
            taken = replace(fresh, proxy=running.proxy)
            router = RouterResource(
                taken, self.context, self._handlers(taken, self._reactor)
            )
            # New ports are bound first: one that cannot be refuses it all.
            errors, changes = self.listeners.update(
                taken.listen,
                router,
                [name for r in taken.routes for name in r.hosts],
                self._listening,
            )
        if errors:
            self.reloads["refused"] += 1
            for error in errors:
                self._log.error("reload refused: {error}", error=error)
            self._log.error(
                "reload refused: the running configuration (generation "
                "{generation}) is kept",
                generation=self.generation,
            )
            return ReloadResult(False, self.generation, tuple(errors))
        self.balancer.reconfigure([b for _, b in taken.balancers])
        self.context.balancers = dict(taken.balancers)
        self.context.checkBackendTLS(taken.routes, self.context.balancers.values())
        self.config = taken
        self.reloadCertificates()
        if self.stateFile is not None:
            # What the file now changed is no longer a run-time change.
            self.stateFile.save()
        self.generation += 1
        self.reloads["taken"] += 1
        notes = []
        if fresh.proxy != running.proxy:
            notes.append("[proxy] changes take effect after a restart")
            self._log.warn("reload: {notes}", notes="; ".join(notes))
        for change in changes:
            self._log.info("reload: {change}", change=change)
        if self.role is not None and text is not None:
            self.role.reloaded(text)
        self._log.info(
            "reload: {source} taken (generation {generation}): {routes} route(s),"
            " {balancers} balancer(s), {listeners} listener(s)",
            source=source,
            generation=self.generation,
            routes=len(taken.routes),
            balancers=len(taken.balancers),
            listeners=len(taken.listen),
        )
        return ReloadResult(True, self.generation, (), tuple(notes))

    def reloadCertificates(self) -> bool:
        """
        Read every listener's certificate files again (SIGHUP does this):
        new handshakes get the new certificates, open connections keep
        theirs, a broken file keeps the old one. True if all were taken.
        """
        results = [tls.reload() for tls in self.tls]
        return all(results)

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting; let requests in flight finish (up to C{shutdown_grace}
        seconds), then cut what is left and close backend connections.
        """
        super().stopService()
        self._listening = False
        stopped = self.listeners.stopListening()
        grace = self.config.proxy.shutdown_grace

        def drain(_: object) -> Deferred[None]:
            drained = self.listeners.drain()
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

    def _openAccessTarget(self) -> None:
        proxy = self.config.proxy
        if proxy.access_log is None or self._accessTarget is not None:
            return
        problem = accessLogProblem(proxy.access_log)
        if problem is not None:
            raise StartupError(f"proxy.access_log: {problem}")
        try:
            target = LogTarget(proxy.access_log, self._daemon, proxy.workers > 1)
        except OSError as e:
            why = f"cannot open {proxy.access_log}: {e.strerror or e}"
            raise StartupError(f"proxy.access_log: {why}") from None
        self._accessTarget = target
        self.accessLog = AccessLogger(
            proxy.access_log_format,
            target.write,
            target.flush,
            self._reactor,
            proxy.server_name,
        )
        self.listeners.setAccessLog(self.accessLog)

    def reopenLogs(self) -> bool:
        """
        Write out the access log's buffer, then open its file again by name
        (after logrotate moved it; SIGUSR1 and SIGHUP do this). False if the
        file could not be opened (the old one is kept).
        """
        if self.accessLog is None or self._accessTarget is None:
            return True
        self.accessLog.flush()
        return self._accessTarget.reopen()

    def _startAccessLog(self) -> None:
        if self.accessLog is None or self._flusher is not None:
            return
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
        self._accessTarget = None
        self.listeners.setAccessLog(None)

    def _graceOver(self, drained: Deferred[None]) -> None:
        left = self.listeners.connectionCount()
        self._log.warn("shutdown grace period over: cutting {n} connection(s)", n=left)
        self.listeners.abortAll()

    @property
    def port(self) -> int:
        """The TCP port of the first listener (handy with ``tcp:0``)."""
        return int(self.ports[0].getHost().port)  # type: ignore[attr-defined]


class _ServiceView:
    """The L{ProxyView} of a L{ProxyService}: what the admin pages may see."""

    def __init__(self, service: ProxyService) -> None:
        self._service = service

    def effectiveConfig(self) -> Config:
        return self._service.config

    def _elsewhere(self) -> WorkerCounts | None:
        role = self._service.role
        return role.counts if role is not None else None

    def openConnections(self) -> dict[str, int]:
        counts = dict.fromkeys(PROTOCOLS, 0)
        for site in self._service.listeners.everySite():
            for channel in site.channels:
                name = channel.protocolName
                counts[name] = counts.get(name, 0) + 1
        elsewhere = self._elsewhere()
        return counts if elsewhere is None else elsewhere.connections(counts)

    def busyConnections(self) -> int:
        busy = sum(
            1
            for site in self._service.listeners.everySite()
            for channel in site.channels
            if channel.busy
        )
        elsewhere = self._elsewhere()
        return busy if elsewhere is None else elsewhere.busy(busy)

    def traffic(self) -> TrafficSnapshot:
        return self.trafficCounts().snapshot()

    def trafficCounts(self) -> Traffic:
        elsewhere = self._elsewhere()
        own = self._service.traffic
        return own if elsewhere is None else elsewhere.traffic(own)

    def reload(self) -> ReloadResult:
        return self._service.reload()

    def configGeneration(self) -> int:
        return self._service.generation

    def reloads(self) -> dict[str, int]:
        return dict(self._service.reloads)

    def workerProcesses(self) -> dict[str, int]:
        role = self._service.role
        if role is None:
            return {"configured": 1, "running": 1, "restarts": 0}
        return dict(role.processes())


__all__ = ["ProxyService"]
