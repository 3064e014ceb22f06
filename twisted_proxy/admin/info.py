"""
The configuration page (C{handler = "info"}), Apache's server-info for a
proxy: the listeners, the route table (as C{twisted-proxy routes} prints it)
and the balancers the proxy runs on now. Secrets are never shown: no key,
certificate or token file path, no header value a route sets.
"""

from __future__ import annotations

from html import escape

from twisted_proxy.admin.view import ProxyView
from twisted_proxy.core.describe import describeConfig
from twisted_proxy.core.localpage import LocalRequest, LocalResponse, textResponse
from twisted_proxy.core.version import VERSION

__all__ = ["ServerInfo"]


class ServerInfo:
    """The handler of an C{info} route."""

    def __init__(self, view: ProxyView) -> None:
        self._view = view

    def __call__(self, request: LocalRequest) -> LocalResponse:
        if request.path.strip(b"/"):
            return textResponse(404, "no such page")
        if request.method not in (b"GET", b"HEAD"):
            return LocalResponse(
                405,
                b"method not allowed here\n",
                ((b"Allow", b"GET, HEAD"), (b"Content-Type", b"text/plain")),
            )
        text = describeConfig(self._view.effectiveConfig())
        page = (
            '<!DOCTYPE html><html><head><meta charset="utf-8">'
            "<title>Configuration - twisted-proxy</title></head><body>"
            f"<h1>twisted-proxy/{VERSION}: the configuration it runs on</h1>"
            f"<pre>{escape(text)}</pre></body></html>\n"
        )
        return LocalResponse(
            200,
            page.encode(),
            (
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"Cache-Control", b"no-store"),
                (b"Content-Security-Policy", b"default-src 'none'"),
            ),
        )
