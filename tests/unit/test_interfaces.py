"""The zope interfaces the front ends rely on are really provided."""

from __future__ import annotations

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_proxy.config import loadString
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.httprelay import ReverseProxyResource
from twisted_proxy.frontends.request import IStreamingResource
from twisted_proxy.frontends.router import RouterResource


def test_resourcesStream() -> None:
    """The reverse-proxy resource and the router take requests before their body."""
    config = loadString('[[route]]\npath = "/"\nto = "http://127.0.0.1:9/"\n')
    context = ProxyContext.create(config.proxy, Clock())
    assert verifyObject(IStreamingResource, RouterResource(config, context))
    assert verifyObject(
        IStreamingResource, ReverseProxyResource("http://127.0.0.1:9/", context)
    )
