"""
The status page (C{handler = "status"}), Apache's server-status for a
proxy: uptime, requests and bytes since the start, requests per second over
the last minute, client connections by protocol, busy and idle. With
C{?auto}, the same as Apache's machine-readable C{key: value} lines.

Unlike Apache's, it lists no requests: nothing a client sent (a query string
with a token in it) is ever shown to whoever may read the page.
"""

from __future__ import annotations

from html import escape

from twisted_proxy.admin.page import ReadOnlyPage
from twisted_proxy.admin.view import PROTOCOLS
from twisted_proxy.core.localpage import (
    LocalRequest,
    LocalResponse,
    htmlPage,
)
from twisted_proxy.core.version import VERSION

__all__ = ["ServerStatus"]

# The ?auto names of the connection counts, by protocol.
_AUTO_NAMES = {
    "http/1.1": "ConnsHTTP11",
    "h2": "ConnsHTTP2",
    "websocket": "ConnsWebSocket",
    "tunnel": "ConnsTunnel",
    "tcp": "ConnsTCP",
}


class ServerStatus(ReadOnlyPage):
    """The handler of a C{status} route."""

    def render(self, request: LocalRequest) -> LocalResponse:
        facts = self._facts()
        if b"auto" in request.query.split(b"&"):
            lines = "".join(f"{key}: {value}\n" for key, value in facts)
            return LocalResponse(
                200,
                lines.encode(),
                (
                    (b"Content-Type", b"text/plain; charset=utf-8"),
                    (b"Cache-Control", b"no-store"),
                ),
            )
        rows = "".join(
            f"<tr><th>{escape(key)}</th><td>{escape(str(value))}</td></tr>"
            for key, value in facts
        )
        return htmlPage(
            "Server status",
            f"<h1>Server status</h1><table>{rows}</table>"
            '<p><a href="?auto">?auto</a></p>',
        )

    def _facts(self) -> list[tuple[str, object]]:
        traffic = self.view.traffic()
        connections = self.view.openConnections()
        total = sum(connections.values())
        busy = self.view.busyConnections()
        uptime = int(traffic.uptime)
        facts: list[tuple[str, object]] = [
            ("ServerVersion", f"twisted-proxy/{VERSION}"),
            ("ServerUptimeSeconds", uptime),
            ("Uptime", uptime),
            ("Total Accesses", traffic.requests),
            ("Total kBytes", (traffic.bytesIn + traffic.bytesOut) // 1024),
            ("Total kBytes In", traffic.bytesIn // 1024),
            ("Total kBytes Out", traffic.bytesOut // 1024),
            ("ReqPerSec", f"{traffic.requestsPerSecond:.3f}"),
            ("BusyWorkers", busy),
            ("IdleWorkers", total - busy),
            ("ConnsTotal", total),
            ("Processes", self.view.workerProcesses()["running"]),
        ]
        facts += [(_AUTO_NAMES[p], connections.get(p, 0)) for p in PROTOCOLS]
        return facts
