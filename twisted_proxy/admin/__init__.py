"""
The admin surface: the balancer-manager (C{manager}, C{api}, C{changes},
C{guard}), the status, info and metrics pages (C{status}, C{info},
C{metrics}, over C{page}); what it may see of a running proxy (C{view}) and
the one thing it may ask of it, a reload.

The admin pages depend on the balancer, the config model and L{ProxyView}
only, never on a front end: the service hands them an L{AdminContext}.
"""

from twisted_proxy.admin.view import AdminContext, ProxyView

__all__ = ["AdminContext", "ProxyView"]
