"""
The read-only view of a running proxy that the admin surface is handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.config.model import Config

__all__ = ["AdminContext", "ProxyView"]


class ProxyView(Protocol):
    """What a running proxy shows its admin pages, and the reload they may ask for."""

    def effectiveConfig(self) -> Config:
        """The configuration the proxy runs on."""

    def openConnections(self) -> Mapping[str, int]:
        """Client connections open now, by protocol (``http/1.1``, ``h2``)."""

    def reload(self) -> bool:
        """Reload what can be reloaded (the certificates); True if all was taken."""


@dataclass(frozen=True)
class AdminContext:
    """Everything the admin pages may use: the balancer and the view."""

    balancer: BalancerService
    view: ProxyView
