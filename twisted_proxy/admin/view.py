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

__all__ = ["PROTOCOLS", "AdminContext", "ProxyView"]

PROTOCOLS = ("http/1.1", "h2", "websocket", "tunnel")
"""The protocols client connections are counted by, in the order shown."""


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

    def reload(self) -> bool:
        """Reload what can be reloaded (the certificates); True if all was taken."""


@dataclass(frozen=True)
class AdminContext:
    """Everything the admin pages may use: the balancer and the view."""

    balancer: BalancerService
    view: ProxyView
