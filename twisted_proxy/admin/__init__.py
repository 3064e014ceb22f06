"""
The admin surface (balancer-manager, status, metrics): what it may see of a
running proxy and the one thing it may ask of it.

The admin pages depend on the balancer, the config model and L{ProxyView}
only, never on a front end: the service hands them an L{AdminContext}.
"""

from twisted_proxy.admin.view import AdminContext, ProxyView

__all__ = ["AdminContext", "ProxyView"]
