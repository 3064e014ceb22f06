"""
The C{[listen.connect]} table: which CONNECT tunnels a listener opens.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .checker import Checker
from .convert import HOST_NAME, describe, seconds
from .model import ListenerConnect, Network
from .vocabulary import TABLES

__all__ = ["listenerConnect"]


def listenerConnect(check: Checker, path: str, value: Any) -> ListenerConnect:
    """C{[listen.connect]}: ports, clients and destinations allowed."""
    get = check.table(path, value, TABLES["listen.connect"]).get
    d = ListenerConnect()
    return ListenerConnect(
        allow_ports=get("allow_ports", lambda p, v: _ports(check, p, v), d.allow_ports),
        allow_clients=get("allow_clients", check.networks, d.allow_clients),
        allow_destinations=get(
            "allow_destinations",
            lambda p, v: _destinations(check, p, v),
            d.allow_destinations,
        ),
        users=get("users", check.file, None),
        connect_timeout=get("connect_timeout", seconds, None),
        idle_timeout=get("idle_timeout", seconds, d.idle_timeout),
        where=path,
    )


def _ports(check: Checker, path: str, value: Any) -> tuple[int, ...]:
    """Port numbers, 1-65535."""
    if not isinstance(value, list):
        check.error(path, f"expected an array of port numbers, got {describe(value)}")
        return ()
    result: list[int] = []
    for index, item in enumerate(value):
        if isinstance(item, int) and not isinstance(item, bool) and 0 < item < 65536:
            result.append(item)
        else:
            check.error(
                f"{path}[{index}]",
                f"expected a port number 1-65535, got {describe(item)}",
            )
    return tuple(result)


def _destinations(check: Checker, path: str, value: Any) -> tuple[str | Network, ...]:
    """CIDR networks, addresses and host names (no wildcards)."""
    if not isinstance(value, list):
        check.error(
            path,
            f"expected an array of CIDR networks and host names, got {describe(value)}",
        )
        return ()
    result: list[str | Network] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            try:
                result.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if (
                HOST_NAME.fullmatch(name)
                and not name.startswith("*")
                and not name.replace(".", "").isdigit()
            ):
                result.append(name)
                continue
        check.error(
            f"{path}[{index}]",
            f"expected a CIDR network, an address or a host name, got {describe(item)}",
        )
    return tuple(result)
