"""
The root resource of a proxy site: picks the route for each request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twisted_proxy.config.model import Config
from twisted_proxy.core.reversemap import ReverseTable
from twisted_proxy.core.routing import RouteTable
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.httprelay import ReverseProxyResource
from twisted_proxy.frontends.request import (
    IBodyConsumer,
    IStreamingResource,
    ProxiedRequest,
    hostHeader,
)


@implementer(IStreamingResource)
class RouterResource(Resource):
    """
    Dispatch by host and longest path prefix to one resource per route.

    The routes share one L{ReverseTable}, built here once, so a response's
    backend URLs are rewritten by whichever route of its host fronts them.
    A request an C{exclude} route matches is answered 404, as one that no
    route matches.
    """

    isLeaf = True
    streaming = True

    def __init__(
        self,
        config: Config,
        context: ProxyContext,
        handlers: Mapping[int, IStreamingResource] | None = None,
    ) -> None:
        """
        :param handlers: the resources of the handler routes (the admin
            pages), by route index; the service makes them.
        """
        super().__init__()
        self._table = RouteTable(config.routes)
        reverse = ReverseTable(config.routes, context.balancers)
        self._resources: dict[int, Any] = {
            route.index: ReverseProxyResource(
                route, context, mountedAtRoute=True, reverseTable=reverse
            )
            for route in config.routes
            if route.to is not None
        }
        self._resources.update(handlers or {})
        notProxied = NotProxiedResource()
        self._resources.update(
            (route.index, notProxied) for route in config.routes if route.exclude
        )
        # By the route, whichever of its names (host or alias) the request used.
        self._labels = {
            route.index: (route.host or "") + route.location for route in config.routes
        }

    def _resourceFor(self, request: Any) -> Any:
        route = self._table.match(hostHeader(request), request.matchPath)
        if route is None:
            return None
        # Which route answered, for the metrics (a label from the config).
        request.routeLabel = self._labels[route.index]
        return self._resources.get(route.index)

    def startStream(self, request: ProxiedRequest) -> IBodyConsumer | None:
        """Route a request whose body is still arriving."""
        resource = self._resourceFor(request)
        if resource is None:
            request.respondError(404, "no route for this request")
            return None
        consumer: IBodyConsumer | None = resource.startStream(request)
        return consumer

    def render(self, request: Any) -> Any:
        """Route a request that has no body (or whose body is already in)."""
        resource = self._resourceFor(request)
        if resource is None:
            request.respondError(404, "no route for this request")
            return NOT_DONE_YET
        return resource.render(request)


@implementer(IStreamingResource)
class NotProxiedResource(Resource):
    """What an C{exclude} route answers (Apache's C{ProxyPass PATH !}): 404."""

    isLeaf = True
    streaming = True

    def startStream(self, request: ProxiedRequest) -> IBodyConsumer | None:
        """A request whose body is still arriving: 404 at once."""
        request.respondError(404, "not proxied")
        return None

    def render(self, request: Any) -> Any:
        """A request without a body, or with one read already: 404."""
        request.respondError(404, "not proxied")
        return NOT_DONE_YET
