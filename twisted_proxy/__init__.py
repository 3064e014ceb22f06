"""
twisted-proxy: a reverse proxy and load balancer on Twisted.

The public surface: the services and resources a Twisted program embeds.
"""

from __future__ import annotations

from twisted_proxy.core.version import VERSION
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.httprelay import ReverseProxyResource
from twisted_proxy.frontends.request import StreamingRequest
from twisted_proxy.service import ProxyService

__version__ = VERSION

__all__ = [
    "HTTPProxyFactory",
    "ProxyContext",
    "ProxyService",
    "ReverseProxyResource",
    "StreamingRequest",
    "__version__",
]
