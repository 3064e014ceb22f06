"""
What a L{twisted_proxy.service.ProxyService} asks of the worker process it
runs in, when it is one of several (C{[proxy] workers} above 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from twisted.internet.interfaces import IStreamServerEndpoint

from twisted_proxy.config.model import Listener, Route
from twisted_proxy.frontends.local import Handler
from twisted_proxy.workers.sync import WorkerCounts

__all__ = ["WorkerRole"]


class WorkerRole(Protocol):
    """The owner's part (health checks, pages, reloads) or a follower's."""

    follower: bool
    """True in a follower: no health checks, no state file, pages from the owner."""

    counts: WorkerCounts | None
    """The followers' counters (the owner's), added to what the pages show."""

    def page(self, route: Route, handler: Handler) -> Handler:
        """How C{route}'s page is answered in this process."""

    def endpoint(
        self, listener: Listener, named: IStreamServerEndpoint
    ) -> IStreamServerEndpoint:
        """Where C{listener}'s port comes from (C{named}: its endpoint string's)."""

    def processes(self) -> Mapping[str, int]:
        """The processes serving: configured, running, restarts (the owner's)."""

    def reloaded(self, text: str) -> None:
        """The owner took the configuration C{text} (its followers follow)."""
