"""
What the read-only admin pages (status, info, metrics) share: they answer
GET and HEAD at their own path, and nothing else.
"""

from __future__ import annotations

from twisted_proxy.admin.view import ProxyView
from twisted_proxy.core.localpage import LocalRequest, LocalResponse, readOnlyRefusal

__all__ = ["ReadOnlyPage"]


class ReadOnlyPage:
    """A handler that shows what L{ProxyView} says; a subclass renders it."""

    def __init__(self, view: ProxyView) -> None:
        self.view = view

    def __call__(self, request: LocalRequest) -> LocalResponse:
        refused = readOnlyRefusal(request)
        if refused is not None:
            return refused
        return self.render(request)

    def render(self, request: LocalRequest) -> LocalResponse:
        """The page, for a GET or HEAD of its own path."""
        raise NotImplementedError()
