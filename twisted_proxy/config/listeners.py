"""
The C{[[listen]]} array: HTTP listeners and stream (C{protocol = "tcp"})
listeners, and what a stream listener needs of the balancers it uses.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, cast

from .checker import Checker
from .connect import listenerConnect
from .convert import choice, endpoint, redirectURL, seconds, streamTarget
from .model import (
    Balancer,
    Listener,
    ListenerProtocol,
    Network,
    ProxyProtocolVersion,
    Route,
)
from .tls import listenerTLS
from .vocabulary import TABLES

__all__ = ["STREAM_IDLE_TIMEOUT", "listeners", "streamChecks"]

STREAM_IDLE_TIMEOUT = 300.0
"""A tcp listener's C{idle_timeout} when it sets none."""

_ENDPOINT = 'a Twisted endpoint string like "tcp:8080"'
"""What a listener's missing C{endpoint} should have been."""

_PROTOCOLS: tuple[ListenerProtocol, ...] = ("http", "tcp")
_VERSIONS: tuple[ProxyProtocolVersion, ...] = ("v1", "v2")
_STREAM_KEYS = ("to", "idle_timeout", "proxy_protocol", "accept_proxy_protocol")


def listeners(
    check: Checker, path: str, value: Any, balancerNames: frozenset[str]
) -> tuple[Listener, ...]:
    """The C{[[listen]]} array."""
    result = []
    seen: dict[str, str] = {}
    for index, itemPath, item in check.tables(path, value, "listen"):
        table = check.table(itemPath, item, TABLES["listen"])
        get = table.get
        address = get("endpoint", endpoint, None, required=_ENDPOINT)
        protocol = cast(ListenerProtocol, get("protocol", choice(_PROTOCOLS), "http"))
        stream = protocol == "tcp"
        tls = get("tls", partial(listenerTLS, check, stream=stream), None)
        connect = get("connect", lambda p, v: listenerConnect(check, p, v), None)
        redirect = get("redirect_https", redirectURL, None)
        to = get("to", lambda p, v: streamTarget(v, balancerNames), None)
        idle = get("idle_timeout", seconds, None)
        sendHeader = cast(
            "ProxyProtocolVersion | None",
            get("proxy_protocol", choice(_VERSIONS), None),
        )
        noNetworks: tuple[Network, ...] = ()
        acceptFrom = get("accept_proxy_protocol", check.networks, noNetworks)
        if stream:
            if to is None and "to" not in table:
                check.error(
                    f"{itemPath}.to",
                    'missing, expected where a tcp listener relays to: "tcp://'
                    'host:port" or "balancer://NAME"',
                )
            for key in ("connect", "redirect_https"):
                if key in table:
                    check.error(f"{itemPath}.{key}", 'not for protocol = "tcp"')
        else:
            for key in (
                "to",
                "idle_timeout",
                "proxy_protocol",
                "accept_proxy_protocol",
            ):
                if key in table:
                    check.error(
                        f"{itemPath}.{key}",
                        'only for protocol = "tcp" (HTTP listeners send by route)',
                    )
        if address is None:
            continue
        if address in seen:
            check.error(f"{itemPath}.endpoint", f"same endpoint as {seen[address]}")
            continue
        seen[address] = itemPath
        result.append(
            Listener(
                endpoint=address,
                protocol=protocol,
                to=to if stream else None,
                idle_timeout=(idle or STREAM_IDLE_TIMEOUT) if stream else None,
                proxy_protocol=sendHeader if stream else None,
                accept_proxy_protocol=acceptFrom if stream else (),
                tls=tls,
                connect=None if stream else connect,
                redirect_https=None if stream else redirect,
                index=index,
            )
        )
    return tuple(result)


def streamChecks(
    check: Checker,
    listen: tuple[Listener, ...],
    routes: tuple[Route, ...],
    balancers: tuple[tuple[str, Balancer], ...],
    document: dict[str, Any],
) -> tuple[tuple[str, Balancer], ...]:
    """
    A balancer's members are all C{tcp://} (a stream balancer, for tcp
    listeners only) or none is (for routes only). A stream balancer checks
    health by TCP connects (an HTTP method is an error) and has nothing of
    HTTP: no sticky sessions, no fail_on_status, no hashing of what HTTP
    carries. Returns the balancers, stream ones with their TCP health check.
    """
    stream: set[str] = set()
    raw = document.get("balancer") if isinstance(document, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    result = []
    for name, balancer in balancers:
        path = f"balancer.{name}"
        kinds = {m.scheme == "tcp" for m in balancer.members}
        if kinds == {True, False}:
            for i, member in enumerate(balancer.members):
                if member.scheme == "tcp":
                    check.error(
                        f"{path}.member[{i}].url",
                        "tcp:// and HTTP members cannot share a balancer",
                    )
            result.append((name, balancer))
            continue
        if kinds != {True}:
            result.append((name, balancer))
            continue
        stream.add(name)
        table = raw.get(name) if isinstance(raw.get(name), dict) else {}
        health = table.get("health") if isinstance(table, dict) else None
        if isinstance(health, dict) and health.get("method", "TCP") != "TCP":
            check.error(
                f"{path}.health.method",
                'tcp:// members are checked by TCP connects: "TCP" or leave it out',
            )
        for key, why in (
            ("sticky", "sticky sessions need HTTP cookies"),
            ("fail_on_status", "tcp:// members answer no HTTP status"),
        ):
            if isinstance(table, dict) and key in table:
                check.error(f"{path}.{key}", f"not for tcp:// members: {why}")
        if balancer.method == "hash" and balancer.hash_key != "ip":
            check.error(f"{path}.hash_key", 'tcp:// members can be hashed by "ip" only')
        if balancer.health is not None:
            balancer = replace(balancer, health=replace(balancer.health, method="TCP"))
        result.append((name, balancer))
    for listener in listen:
        to = listener.to
        if to is not None and to.scheme == "balancer" and to.host not in stream:
            check.error(
                f"listen[{listener.index}].to",
                f"balancer {to.host!r} has no tcp:// members",
            )
    for route in routes:
        to = route.to
        if to is not None and to.scheme == "balancer" and to.host in stream:
            check.error(
                f"route[{route.index}].to",
                f"balancer {to.host!r} has tcp:// members: only a tcp listener"
                " relays to it",
            )
    return tuple(result)
