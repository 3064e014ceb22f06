"""
twisted-proxy: a reverse proxy and load balancer on Twisted.

The public surface: the services and resources a Twisted program embeds.
"""

from __future__ import annotations

__version__ = "0.1.0"

from twisted_proxy.http_proxy import ProxyContext, ReverseProxyResource
from twisted_proxy.http_server import HTTPProxyFactory
from twisted_proxy.service import ProxyService
from twisted_proxy.site import StreamingRequest

__all__ = [
    "HTTPProxyFactory",
    "ProxyContext",
    "ProxyService",
    "ReverseProxyResource",
    "StreamingRequest",
    "__version__",
]
