"""
The proxy's listeners as one set that a reload can change while it runs.

Each C{[[listen]]} entry is a L{Listening}: its endpoint, its front end (an
L{HTTPProxyFactory}: the router or the HTTPS redirect, the listener's TLS
header settings), its TLS context and its port. The port serves through a
L{FrontSwitch}, so a reload can give an open port a new front end without
closing it.

L{Listeners.update} applies a reload's listeners (as L{planListeners}
matches them): new endpoints are bound first, and if one cannot be bound
nothing changes and the reload is refused; a listener whose settings changed
keeps its port and gets a new front end; a removed one stops listening. A
front end that no longer serves a port is retired: its HTTP connections
finish what they are doing and close, its WebSockets and tunnels go on until
they end (or the proxy stops, when they are drained like all the others).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from twisted_proxy._twisted_internals import DirectTLSFactory
from twisted_proxy.accesslog.logger import AccessLogger
from twisted_proxy.config.model import Listener, ProxySettings
from twisted_proxy.core.listenplan import planListeners
from twisted_proxy.core.traffic import Traffic
from twisted_proxy.frontends.connect import ConnectGate
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.http2 import NegotiatingFactory
from twisted_proxy.frontends.listener import ListenerSite
from twisted_proxy.frontends.redirect import RedirectResource
from twisted_proxy.frontends.stream import StreamListener
from twisted_proxy.frontends.tlssniff import TLSSniffingFactory
from twisted_proxy.preflight import StartupError, parseEndpoint
from twisted_proxy.tls.server import ServerTLS

__all__ = ["FrontSwitch", "Listeners", "Listening"]


class FrontSwitch(Factory):
    """
    What a port serves: the listener's current front end, which a reload
    may replace while the port stays open. Connections are built by the
    front end current when they arrive and stay with it.
    """

    noisy = False

    def __init__(self, current: IProtocolFactory) -> None:
        self.current = current

    def logPrefix(self) -> str:
        """The front end's name, for the port's log lines."""
        prefix = getattr(self.current, "logPrefix", None)
        return prefix() if prefix is not None else type(self.current).__name__

    def startFactory(self) -> None:
        self.current.doStart()

    def stopFactory(self) -> None:
        self.current.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        return self.current.buildProtocol(addr)  # type: ignore[arg-type]

    def switch(self, new: IProtocolFactory) -> None:
        """Serve new connections with C{new} from now on."""
        old, self.current = self.current, new
        if self.numPorts:
            new.doStart()
            old.doStop()


@dataclass(eq=False)
class Listening:
    """
    One C{[[listen]]} entry at work (C{listener} is None for the front end of
    a service with no listeners, which an embedder serves on its own ports).
    """

    listener: Listener | None
    site: ListenerSite
    tls: ServerTLS | None
    switch: FrontSwitch
    endpoint: IStreamServerEndpoint | None
    port: IListeningPort | None = None


class Listeners:
    """
    Every listener of a L{twisted_proxy.service.ProxyService}, and the front
    ends a reload retired that still have connections.

    :raise StartupError: for an endpoint string that cannot be parsed.
    :raise twisted_proxy.tls.server.TLSFilesError: for certificate files that
        cannot be used.
    """

    _log = Logger()

    def __init__(
        self,
        listen: Sequence[Listener],
        settings: ProxySettings,
        reactor: Any,
        router: IResource,
        hostNames: Sequence[str],
        traffic: Traffic,
        endpoints: (
            Callable[[Listener, IStreamServerEndpoint], IStreamServerEndpoint] | None
        ) = None,
        balancer: Any = None,
    ) -> None:
        """
        C{endpoints}: where a listener's port comes from, given the endpoint
        its string names (a worker process serves the owner's sockets).
        C{balancer}: the balancer service tcp listeners pick members of.
        """
        self._settings = settings
        self._balancer = balancer
        self._endpoints = endpoints
        self._reactor = reactor
        self._traffic = traffic
        self.accessLog: AccessLogger | None = None
        self.entries = [
            self._build(listener, router, hostNames) for listener in listen
        ] or [self._build(None, router, hostNames)]
        self.retiring: list[ListenerSite] = []
        """Front ends no longer serving a port, until their last connection ends."""

    def _build(
        self,
        listener: Listener | None,
        router: IResource,
        hostNames: Sequence[str],
    ) -> Listening:
        endpoint = None
        if listener is not None:
            try:
                endpoint = parseEndpoint(listener.endpoint, self._reactor)
            except ValueError as e:
                raise StartupError(f"listen[{listener.index}].endpoint: {e}") from None
            if self._endpoints is not None:
                endpoint = self._endpoints(listener, endpoint)
        if listener is not None and listener.protocol == "tcp":
            return self._buildStream(listener, endpoint)
        resource: IResource = router
        if listener is not None and listener.redirect_https is not None:
            resource = RedirectResource(listener.redirect_https)
        site = HTTPProxyFactory(
            resource,
            self._settings,
            self._reactor,
            accessLog=self.accessLog,
            hostNames=hostNames,
            listener=listener,
        )
        site.traffic = self._traffic
        if listener is not None and listener.connect is not None:
            site.connectGate = ConnectGate(
                listener.connect, self._settings, self._reactor
            )
        tls = None
        if listener is not None and listener.tls is not None:
            tls = ServerTLS(listener.tls)
        return Listening(
            listener, site, tls, FrontSwitch(self._front(site, tls)), endpoint
        )

    def _buildStream(
        self, listener: Listener, endpoint: IStreamServerEndpoint | None
    ) -> Listening:
        """A tcp listener: its connections relayed, behind TLS if set."""
        site = StreamListener(
            listener, self._settings, self._reactor, self._balancer, self.accessLog
        )
        site.traffic = self._traffic
        tls = ServerTLS(listener.tls) if listener.tls is not None else None
        front: IProtocolFactory = site
        if tls is not None:
            front = DirectTLSFactory(tls, False, site, self._reactor)
        return Listening(listener, site, tls, FrontSwitch(front), endpoint)

    def _front(self, site: HTTPProxyFactory, tls: ServerTLS | None) -> IProtocolFactory:
        """What a listener's port serves: its site, behind TLS if set."""
        factory: IProtocolFactory = site
        if tls is not None:
            if "h2" in tls.tls.alpn:
                # HTTP/2 only where the listener asks for it, as ALPN decides.
                factory = NegotiatingFactory(site)
            # Plain HTTP sent to this port gets a 400 saying so, not silence.
            factory = TLSSniffingFactory(
                DirectTLSFactory(tls, False, factory, self._reactor), site
            )
        return factory

    @property
    def sites(self) -> list[ListenerSite]:
        """The front ends serving the listeners now, in the file's order."""
        return [entry.site for entry in self.entries]

    @property
    def ports(self) -> list[IListeningPort]:
        """The ports open now, in the file's order."""
        return [entry.port for entry in self.entries if entry.port is not None]

    @property
    def tls(self) -> list[ServerTLS]:
        """The TLS contexts of the listeners now."""
        return [entry.tls for entry in self.entries if entry.tls is not None]

    def everySite(self) -> Iterator[ListenerSite]:
        """The current front ends, then the retired ones still draining."""
        yield from self.sites
        yield from self.retiring

    def setAccessLog(self, accessLog: AccessLogger | None) -> None:
        """Every front end, retired ones included, logs to C{accessLog}."""
        self.accessLog = accessLog
        for site in self.everySite():
            site.accessLog = accessLog

    def listen(self) -> None:
        """
        Listen on every endpoint, or on none: on the first failure whatever
        was bound is let go and L{StartupError} says which endpoint and why.
        """
        errors = self._bind(self.entries)
        if errors:
            raise StartupError(errors[0])

    def _bind(self, entries: Sequence[Listening]) -> list[str]:
        """
        Bind C{entries}' ports, all or none: what was bound is let go at the
        first failure, which is returned as one message.
        """
        bound: list[Listening] = []
        for entry in entries:
            if entry.endpoint is None or entry.listener is None:
                continue
            results: list[IListeningPort | Failure] = []
            entry.endpoint.listen(entry.switch).addBoth(results.append)
            result = results[0] if results else None
            if isinstance(result, Failure):
                why = _why(result)
            elif result is None:
                why = "the endpoint did not start listening at once"
            else:
                entry.port = result
                bound.append(entry)
                continue
            for done in bound:
                if done.port is not None:
                    done.port.stopListening()
                done.port = None
            listener = entry.listener
            return [
                f"listen[{listener.index}].endpoint: cannot listen on"
                f" {listener.endpoint}: {why}"
            ]
        return []

    def update(
        self,
        listen: Sequence[Listener],
        router: IResource,
        hostNames: Sequence[str],
        listening: bool,
    ) -> tuple[list[str], list[str]]:
        """
        Put a reload's listeners to work (C{listening}: the ports are open,
        so new ones are bound too). Returns the errors that refused it
        (nothing changed then) and, otherwise, what changed in words.
        """
        running = [entry.listener for entry in self.entries]
        fresh: list[Listener | None] = list(listen) or [None]
        plan = planListeners(running, fresh)
        built: dict[int, Listening] = {}
        try:
            for index in (*plan.added, *(f for _, f in plan.changed)):
                built[index] = self._build(fresh[index], router, hostNames)
        except Exception as e:
            # StartupError or TLSFilesError: one line naming the key.
            return [str(e)], []
        if listening:
            errors = self._bind([built[index] for index in plan.added])
            if errors:
                return errors, []
        changes: list[str] = []
        entries: list[Listening | None] = [None] * len(fresh)
        for old, new in plan.kept:
            entry = self.entries[old]
            entry.listener = fresh[new]
            entries[new] = entry
        for old, new in plan.changed:
            entry, replacement = self.entries[old], built[new]
            # The open port keeps its switch, which now serves the new front.
            entry.switch.switch(replacement.switch.current)
            replacement.port = entry.port
            replacement.switch = entry.switch
            self._retire(entry.site)
            entries[new] = replacement
            changes.append(f"{_name(fresh[new])} changed")
        for index in plan.added:
            entries[index] = built[index]
            changes.append(f"{_name(fresh[index])} added")
        for index in plan.removed:
            entry = self.entries[index]
            if entry.port is not None:
                entry.port.stopListening()
            self._retire(entry.site)
            changes.append(f"{_name(entry.listener)} closed")
        self.entries = [entry for entry in entries if entry is not None]
        for entry in self.entries:
            if isinstance(entry.site, StreamListener):
                continue
            if not isinstance(entry.site.resource, RedirectResource):
                entry.site.resource = router
            entry.site.serveNames(hostNames)
        return [], changes

    def _retire(self, site: ListenerSite) -> None:
        """C{site} serves no port now: let its connections end, then forget it."""
        self.retiring.append(site)

        def gone(_: object) -> None:
            if site in self.retiring:
                self.retiring.remove(site)

        site.retire().addCallback(gone)

    def stopListening(self) -> Deferred[Any]:
        """Close every port (for a stop)."""
        ports = [entry.port for entry in self.entries if entry.port is not None]
        for entry in self.entries:
            entry.port = None
        return DeferredList(
            [d for d in (port.stopListening() for port in ports) if d is not None]
        )

    def drain(self) -> Deferred[None]:
        """Drain every front end, retired ones too (for a stop); fire when done."""
        return DeferredList([site.drain() for site in self.everySite()]).addCallback(
            lambda _: None
        )

    def abortAll(self) -> None:
        """Cut every connection still open (the grace period is over)."""
        for site in list(self.everySite()):
            site.abortAll()

    def connectionCount(self) -> int:
        """The connections open now, on every front end."""
        return sum(len(site.channels) for site in self.everySite())


def _name(listener: Listener | None) -> str:
    if listener is None:
        return "the front end without [[listen]]"
    return f"listen[{listener.index}] ({listener.endpoint})"


def _why(failure: Failure) -> str:
    """Why listening failed, in words (the socket error's, when there is one)."""
    error = failure.value
    if isinstance(error, CannotListenError) and isinstance(error.socketError, OSError):
        reason = error.socketError.strerror or str(error.socketError)
        if error.socketError.errno == errno.EADDRINUSE:
            reason += " (is another server running on it?)"
        return reason
    return failure.getErrorMessage()
