"""
The read-only view of a running proxy that the admin surface is handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.config.model import Config
from twisted_proxy.core.traffic import Traffic, TrafficSnapshot

__all__ = ["PROTOCOLS", "AdminContext", "ProxyView", "ReloadResult"]

PROTOCOLS = ("http/1.1", "h2", "websocket", "tunnel", "tcp")
"""The protocols client connections are counted by, in the order shown."""


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: taken or not, why not, what needs a restart."""

    ok: bool
    generation: int
    """The configuration's generation now (1 at start, +1 per reload taken)."""
    errors: tuple[str, ...] = ()
    """Why the file was refused (the running configuration is kept)."""
    notes: tuple[str, ...] = ()
    """What the file changes that only a restart applies."""


class ProxyView(Protocol):
    """What a running proxy shows its admin pages, and the reload they may ask for."""

    def effectiveConfig(self) -> Config:
        """The configuration the proxy runs on."""

    def openConnections(self) -> Mapping[str, int]:
        """Client connections open now, by protocol (each of L{PROTOCOLS})."""

    def busyConnections(self) -> int:
        """Of those, the ones with a request (or a bridged WebSocket) under way."""

    def traffic(self) -> TrafficSnapshot:
        """Requests and bytes since the start, and the last minute's rate."""

    def trafficCounts(self) -> Traffic:
        """The live counters themselves (for the metrics): read, never written."""

    def reload(self) -> ReloadResult:
        """Re-read the configuration file and apply it (as SIGHUP does)."""

    def configGeneration(self) -> int:
        """1 at start, +1 per reload taken."""

    def reloads(self) -> Mapping[str, int]:
        """Reloads so far, by result (C{"taken"}, C{"refused"})."""

    def workerProcesses(self) -> Mapping[str, int]:
        """
        The processes serving (C{[proxy] workers}): C{"configured"},
        C{"running"} now, and C{"restarts"} of followers that ended unasked.
        """


@dataclass(frozen=True)
class AdminContext:
    """Everything the admin pages may use: the balancer and the view."""

    balancer: BalancerService
    view: ProxyView
