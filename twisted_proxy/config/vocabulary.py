"""
Which keys each TOML table accepts, derived from the model.

A table's keys are its model class's fields; the only exceptions are declared
here, once: fields the loader fills in itself (where in the file an entry was,
values parsed out of a URL), fields whose TOML name differs, and keys refused
as "not supported yet". A new model field is a new key with nothing else to
declare.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .model import (
    Balancer,
    Config,
    HeaderDirectives,
    HealthCheck,
    Listener,
    ListenerConnect,
    ListenerTLS,
    Member,
    ProxySettings,
    Route,
    SNICertificate,
    Sticky,
    WebSocketSettings,
)

__all__ = ["HEADER_DIRECTIVES", "TABLES", "TableKeys", "acceptedKeys"]


@dataclass(frozen=True)
class TableKeys:
    """The keys of one TOML table, read off its model class."""

    model: type[Any]
    filled: frozenset[str] = frozenset()
    """Fields the loader fills in itself: not keys."""
    renamed: tuple[tuple[str, str], ...] = ()
    """(field, key) where the TOML key is not the field's name."""
    reserved: frozenset[str] = frozenset()
    """Keys refused as "not supported yet" rather than unknown."""

    @property
    def keys(self) -> frozenset[str]:
        """Every key the table accepts."""
        names = dict(self.renamed)
        return frozenset(
            names.get(f.name, f.name)
            for f in fields(self.model)
            if f.name not in self.filled
        )


HEADER_DIRECTIVES = TableKeys(HeaderDirectives)

TABLES: dict[str, TableKeys] = {
    "": TableKeys(
        Config,
        filled=frozenset({"source"}),
        renamed=(("routes", "route"), ("balancers", "balancer")),
    ),
    "proxy": TableKeys(ProxySettings),
    "proxy.websocket": TableKeys(WebSocketSettings),
    "proxy.response_headers": HEADER_DIRECTIVES,
    "listen": TableKeys(
        Listener,
        filled=frozenset({"index"}),
    ),
    "listen.connect": TableKeys(ListenerConnect, filled=frozenset({"where"})),
    "listen.tls": TableKeys(ListenerTLS, filled=frozenset({"where"})),
    "listen.tls.sni": TableKeys(SNICertificate),
    "route": TableKeys(Route, filled=frozenset({"index"})),
    "route.request_headers": HEADER_DIRECTIVES,
    "balancer.NAME": TableKeys(
        Balancer, filled=frozenset({"name"}), renamed=(("members", "member"),)
    ),
    "balancer.NAME.member": TableKeys(
        Member, filled=frozenset({"scheme", "host", "port"})
    ),
    "balancer.NAME.sticky": TableKeys(Sticky),
    "balancer.NAME.health": TableKeys(HealthCheck),
}
"""Each table by its TOML path (C{""} is the document itself)."""


def acceptedKeys() -> dict[str, frozenset[str]]:
    """
    The keys each table accepts, by its TOML path (C{balancer.NAME} stands
    for every balancer), as docs/configuration.rst documents them; keys
    refused as "not supported yet" are not among them.
    """
    return {path: table.keys for path, table in TABLES.items() if path}
