"""
The configuration page (C{handler = "info"}), Apache's server-info for a
proxy: the listeners, the route table (as C{twisted-proxy routes} prints it)
and the balancers the proxy runs on now. Secrets are never shown: no key,
certificate or token file path, no header value a route sets.
"""

from __future__ import annotations

from html import escape

from twisted_proxy.admin.page import ReadOnlyPage
from twisted_proxy.core.describe import describeConfig
from twisted_proxy.core.localpage import (
    LocalRequest,
    LocalResponse,
    htmlPage,
)
from twisted_proxy.core.version import VERSION

__all__ = ["ServerInfo"]


class ServerInfo(ReadOnlyPage):
    """The handler of an C{info} route."""

    def render(self, request: LocalRequest) -> LocalResponse:
        text = describeConfig(self.view.effectiveConfig())
        return htmlPage(
            "Configuration",
            f"<h1>twisted-proxy/{VERSION}: the configuration it runs on</h1>"
            f"<pre>{escape(text)}</pre>",
        )
