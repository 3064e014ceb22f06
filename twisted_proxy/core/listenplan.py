"""
What a reload does to the listeners: the running C{[[listen]]} entries
matched with the file's by endpoint string. One with the same endpoint and
the same settings is kept (its port stays open, untouched); the same endpoint
with other settings (TLS, a redirect) is changed in place (the port stays
open, new connections get the new settings); a new endpoint is added (bound
before anything else changes); an endpoint no longer in the file is removed.

Endpoints are compared as written: ``tcp:8080`` and ``tcp:port=8080`` are
two endpoints, so changing one into the other binds the new one while the
old is still open, and the reload is refused if they are the same port.

Pure: listeners in, a plan out. C{None} stands for the front end of a
service with no C{[[listen]]} (an embedder serves it on ports of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from twisted_proxy.config.model import Listener

__all__ = ["ListenerPlan", "planListeners"]


@dataclass(frozen=True)
class ListenerPlan:
    """
    Indexes into the running entries and the file's: C{kept} and C{changed}
    pair them as C{(running, fresh)}; C{added} are the file's, C{removed}
    the running ones.
    """

    kept: tuple[tuple[int, int], ...] = ()
    changed: tuple[tuple[int, int], ...] = ()
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()

    @property
    def untouched(self) -> bool:
        """Nothing but kept listeners (their order aside)."""
        return not (self.changed or self.added or self.removed)


def _endpoint(listener: Listener | None) -> str | None:
    return None if listener is None else listener.endpoint


def _settings(listener: Listener | None) -> Listener | None:
    """What serving depends on: all but where in the file it was written."""
    if listener is None:
        return None
    tls = listener.tls
    if tls is not None:
        tls = replace(tls, where="")
    return replace(listener, index=0, tls=tls)


def planListeners(
    running: Sequence[Listener | None], fresh: Sequence[Listener | None]
) -> ListenerPlan:
    """Match C{fresh} (the file's listeners) against the C{running} ones."""
    unmatched = list(range(len(running)))
    kept: list[tuple[int, int]] = []
    changed: list[tuple[int, int]] = []
    added: list[int] = []
    for index, listener in enumerate(fresh):
        endpoint = _endpoint(listener)
        match = next((r for r in unmatched if _endpoint(running[r]) == endpoint), None)
        if match is None:
            added.append(index)
            continue
        unmatched.remove(match)
        if _settings(running[match]) == _settings(listener):
            kept.append((match, index))
        else:
            changed.append((match, index))
    return ListenerPlan(tuple(kept), tuple(changed), tuple(added), tuple(unmatched))
