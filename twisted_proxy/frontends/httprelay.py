"""
The HTTP reverse proxy: a twisted.web resource that relays each request to a
backend (ProxyPass) and rewrites what comes back (ProxyPassReverse).

The decisions (headers, redirects, routes, ACLs, compression) are made by the
pure modules; each request is relayed by a L{ProxyExchange}, and a WebSocket
upgrade handed to the context's L{UpgradeHandler} (the WebSocket front end).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twisted_proxy.config.loader import parseTarget
from twisted_proxy.config.model import ProxySettings, Route
from twisted_proxy.core.refusal import refuseTrace
from twisted_proxy.core.requesttarget import TargetError
from twisted_proxy.core.reversemap import ReverseTable
from twisted_proxy.core.routing import upstreamTarget
from twisted_proxy.core.wsrules import isUpgrade
from twisted_proxy.frontends.clientinfo import clientAddress, headerPairs, respondError
from twisted_proxy.frontends.context import ProxyContext, RoutePlan
from twisted_proxy.frontends.exchange import ProxyExchange
from twisted_proxy.frontends.request import IStreamingResource, ProxiedRequest, targetOf

__all__ = ["ReverseProxyResource"]

_log = Logger()


@implementer(IStreamingResource)
class ReverseProxyResource(Resource):
    """
    Relay requests under this resource to a backend or a balancer.

    Mount it anywhere in a twisted.web tree (``root.putChild(b"app", ...)``):
    what follows the mount point is appended to the target's path, byte for
    byte. With L{StreamingRequest} as the Site's request factory, bodies stream
    both ways; with twisted.web's own request the upload is buffered first.

    :param target: a backend URL (``"http://127.0.0.1:3000/"``) or a L{Route}.
    :param context: shared pool/balancer/settings; one of its own if omitted.
    :param reactor: used to build the context when C{context} is omitted.
    :param reverseTable: every route's ProxyPassReverse (for a resource mounted
        at its route), which backend URLs in responses are checked against too.
    """

    isLeaf = True
    streaming = True

    def __init__(
        self,
        target: str | Route,
        context: ProxyContext | None = None,
        *,
        reactor: Any = None,
        settings: ProxySettings | None = None,
        mountedAtRoute: bool = False,
        reverseTable: ReverseTable | None = None,
    ) -> None:
        super().__init__()
        if isinstance(target, str):
            route = Route(path="/", to=parseTarget(target))
        else:
            route = target
        if context is None:
            if reactor is None:
                from twisted.internet import reactor as globalReactor  # noqa: TID251

                reactor = globalReactor
            context = ProxyContext.create(settings or ProxySettings(), reactor)
        self.route = route
        self.context = context
        context.checkBackendTLS(routes=[route])
        self._mountedAtRoute = mountedAtRoute
        self._reverseTable = reverseTable
        self._plans: dict[str, RoutePlan] = {}
        if mountedAtRoute:
            self._plans[route.path] = self._newPlan(route.path)

    def _newPlan(self, frontPath: str) -> RoutePlan:
        route = self.route
        balancer = None
        if route.to is not None and route.to.scheme == "balancer":
            balancer = self.context.balancers.get(route.to.host)
        return RoutePlan(
            route, self.context.settings, frontPath, balancer, self._reverseTable
        )

    # -- IResource / IStreamingResource --

    def render(self, request: Any) -> Any:
        """Relay a request whose body twisted.web has already read."""
        body = b""
        content = getattr(request, "content", None)
        if content is not None:
            content.seek(0)
            body = content.read()
        exchange = self._begin(request, buffered=body)
        if exchange is not None:
            exchange.bodyEnd()
        return NOT_DONE_YET

    def startStream(self, request: ProxiedRequest) -> ProxyExchange | None:
        """Relay a request whose body is still arriving."""
        return self._begin(request, buffered=None)

    # -- the relay --

    def _plan(self, request: Any) -> RoutePlan:
        if self._mountedAtRoute:
            return self._plans[self.route.path]
        depth = len(request.prepath)
        segments = request.path.split(b"/")[1 : 1 + depth]
        front = ("/" + "/".join(s.decode("latin-1") for s in segments)).rstrip("/")
        front += "/"
        plan = self._plans.get(front)
        if plan is None:
            plan = self._plans[front] = self._newPlan(front)
        return plan

    def _begin(self, request: Any, buffered: bytes | None) -> ProxyExchange | None:
        plan = self._plan(request)
        address = clientAddress(request)
        if not plan.acl.permits(address):
            _log.info(
                "{label}: {client} refused by allow/deny",
                label=plan.label,
                client=address,
            )
            respondError(request, 403, "forbidden")
            return None
        try:
            target = targetOf(request, self.context.settings.merge_slashes)
            # Inline rather than plan.upstreamPath: one call less per request.
            pattern = plan.pattern
            if pattern is None:
                upstreamPath = upstreamTarget(plan.frontPath, plan.targetPath, target)
            else:
                upstreamPath = pattern.upstreamTarget(target)
        except (TargetError, ValueError) as e:
            # Under an ordinary twisted.web Site (the proxy's own front ends
            # normalise and refuse targets before routing), or a match
            # route's backreference that made a dot segment.
            respondError(request, 400, str(e))
            return None
        refused = refuseTrace(request.method, plan.route.trace)
        if refused is not None:
            respondError(request, refused.status, refused.message, [*refused.headers])
            return None
        upgrade = self.context.upgrade
        if (
            plan.websocket
            and upgrade is not None
            and buffered is None
            and hasattr(request.channel, "detach")
        ):
            pairs = headerPairs(request)
            if isUpgrade(request.method, pairs):
                upgrade(request, plan, self.context, pairs)
                return None
        exchange = ProxyExchange(request, plan, self.context, buffered, upstreamPath)
        exchange.start()
        return exchange
