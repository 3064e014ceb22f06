"""
A C{redirect_https} listener: every request is answered with a 301 to the
same path and query on the HTTPS address it names (Apache's
C{Redirect permanent / https://...}, nginx's C{return 301 https://...}).
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twisted_proxy.frontends.request import (
    IBodyConsumer,
    IStreamingResource,
    errorHeaders,
)


def redirectLocation(base: str, target: bytes) -> bytes:
    """
    Where a request for C{target} (origin or absolute form) is sent:
    C{base} (C{https://host[:port]}) plus its path and query.
    """
    if not target.startswith(b"/"):
        # Absolute form (http://host/path?q): keep only the path and query.
        _, _, rest = target.partition(b"://")
        slash = rest.find(b"/")
        target = rest[slash:] if slash >= 0 else b"/"
    return base.encode("ascii") + target


@implementer(IStreamingResource)
class RedirectResource(Resource):
    """Answer everything with 301 to C{base} + path and query."""

    isLeaf = True
    streaming = True

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def startStream(self, request: Any) -> IBodyConsumer | None:
        """Answer at once; a body still arriving is dropped."""
        location = redirectLocation(self.base, request.uri)
        body = b"Moved to " + location + b"\n"
        request.setResponseCode(301)
        headers = request.responseHeaders
        for name, value in errorHeaders(
            request.channel.site, len(body), [(b"Location", location)]
        ):
            headers.addRawHeader(name, value)
        request.finishResponse(body)
        return None

    def render(self, request: Any) -> Any:
        """The same, for a request whose body is already in."""
        self.startStream(request)
        return NOT_DONE_YET


__all__ = ["RedirectResource", "redirectLocation"]
