"""
Routes the proxy answers itself (C{handler = ...}): the request's body is
read whole (a small form or JSON document), handed to the route's handler as
a L{LocalRequest}, and its L{LocalResponse} written back with the proxy's
usual response headers. The route's C{allow}/C{deny} come first: a refused
client gets 403 and the handler never sees it. A handler may answer later,
with a Deferred (a worker process asks the owner process for the page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twisted_proxy.config.model import Route
from twisted_proxy.core.acl import AccessList
from twisted_proxy.core.localpage import LocalRequest, LocalResponse
from twisted_proxy.core.requesttarget import TargetError
from twisted_proxy.frontends.clientinfo import (
    clientAddress,
    clientScheme,
    headerPairs,
    respondError,
)
from twisted_proxy.frontends.request import (
    IStreamingResource,
    ProxiedRequest,
    errorHeaders,
    reasonPhrase,
    targetOf,
)

__all__ = ["MAX_BODY", "Handler", "LocalResource"]

MAX_BODY = 65536
"""The largest body a handler route reads (a form, a JSON document): 413 beyond."""

_log = Logger()

Handler = Callable[[LocalRequest], "LocalResponse | Deferred[LocalResponse]"]


class _Body:
    """A local request's body, gathered until it ends (IBodyConsumer)."""

    def __init__(self, resource: LocalResource, request: Any) -> None:
        self._resource = resource
        self._request = request
        self._pieces: list[bytes] | None = []
        self._size = 0

    def bodyData(self, data: bytes) -> None:
        if self._pieces is None:
            return
        self._size += len(data)
        if self._size > MAX_BODY:
            self._pieces = None
            respondError(self._request, 413, f"a body over {MAX_BODY} bytes")
            return
        self._pieces.append(data)

    def bodyEnd(self) -> None:
        if self._pieces is not None:
            self._resource.answer(self._request, b"".join(self._pieces))


@implementer(IStreamingResource)
class LocalResource(Resource):
    """A handler route, served by C{handler}."""

    isLeaf = True
    streaming = True

    def __init__(
        self, route: Route, handler: Handler, mergeSlashes: bool = True
    ) -> None:
        super().__init__()
        self._prefix = route.path.rstrip("/").encode()
        self._acl = AccessList(route.allow, route.deny)
        self._handler = handler
        self._label = f"route {route.path} ({route.handler})"
        self._mergeSlashes = mergeSlashes

    def startStream(self, request: ProxiedRequest) -> _Body | None:
        """A request for the handler: its body is read, then it is answered."""
        if not self._permitted(request):
            return None
        return _Body(self, request)

    def render(self, request: Any) -> Any:
        """A request whose body twisted.web has read already."""
        if self._permitted(request):
            content = getattr(request, "content", None)
            body = b""
            if content is not None:
                content.seek(0)
                body = content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                respondError(request, 413, f"a body over {MAX_BODY} bytes")
            else:
                self.answer(request, body)
        return NOT_DONE_YET

    def _permitted(self, request: Any) -> bool:
        address = clientAddress(request)
        if self._acl.permits(address):
            return True
        _log.info(
            "{label}: {client} refused by allow/deny", label=self._label, client=address
        )
        respondError(request, 403, "forbidden")
        return False

    def answer(self, request: Any, body: bytes) -> None:
        """Hand the request to the handler and write what it answers."""
        if self._gone(request):
            return
        try:
            target = targetOf(request, self._mergeSlashes)
        except (TargetError, ValueError) as e:
            respondError(request, 400, str(e))
            return
        path = target.match
        below = path[len(self._prefix) :] if path.startswith(self._prefix) else path
        hosts = request.requestHeaders.getRawHeaders(b"host")
        host = hosts[0].decode("latin-1") if hosts else ""
        local = LocalRequest(
            method=request.method,
            path=below or b"/",
            query=target.query[1:],
            headers=tuple(headerPairs(request)),
            body=body,
            client=clientAddress(request),
            origin=f"{clientScheme(request)}://{host}".lower(),
        )
        try:
            response = self._handler(local)
        except Exception:
            _log.failure("{label}: the handler failed", label=self._label)
            respondError(request, 500, "the page failed (logged)")
            return
        if isinstance(response, Deferred):
            response.addCallbacks(
                lambda late: self._late(request, late),
                lambda failure: self._lateFailure(request, failure),
            )
            return
        self._write(request, response)

    def _gone(self, request: Any) -> bool:
        return bool(
            getattr(request, "finished", False) or getattr(request, "clientGone", False)
        )

    def _late(self, request: Any, response: LocalResponse) -> None:
        if not self._gone(request):
            self._write(request, response)

    def _lateFailure(self, request: Any, failure: Failure) -> None:
        _log.failure("{label}: the handler failed", failure, label=self._label)
        if not self._gone(request):
            respondError(request, 503, "the page is not available now (logged)")

    def _write(self, request: Any, response: LocalResponse) -> None:
        request.setResponseCode(response.status, reasonPhrase(response.status))
        site = getattr(request.channel, "site", None)
        body = b"" if request.method == b"HEAD" else response.body
        own = {name.lower() for name, _ in response.headers}
        headers = [
            (name, value)
            for name, value in errorHeaders(site, len(response.body))
            if name.lower() not in own
        ]
        for name, value in headers + list(response.headers):
            request.responseHeaders.addRawHeader(name, value)
        if isinstance(request, ProxiedRequest):
            request.finishResponse(body)
        else:
            if body:
                request.write(body)
            request.finish()
