"""
The C{[balancer.NAME]} tables: members, stickiness and health checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from .checker import Checker
from .convert import (
    InvalidValueError,
    ajpSecret,
    array,
    boolean,
    cookieName,
    describe,
    expectBody,
    hashKey,
    healthMethod,
    healthURI,
    intAtLeast,
    isInt,
    keyPath,
    memberURL,
    method,
    positiveInt,
    routeId,
    seconds,
    secondsOrOff,
    table,
)
from .model import Balancer, HealthCheck, HealthMethod, Member, Route, Sticky
from .vocabulary import TABLES

__all__ = ["ajpChecks", "balancers"]

_BALANCER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_STATUS_CLASS = re.compile(r"[1-5]xx")
_STATUS_CODE = re.compile(r"[1-5][0-9][0-9]")


def balancers(
    check: Checker, path: str, value: Any
) -> tuple[tuple[str, Balancer], ...]:
    """The C{[balancer.NAME]} tables."""
    result = []
    for name, item in table(path, value).items():
        itemPath = keyPath(path, name)
        if not _BALANCER_NAME.fullmatch(name):
            check.error(
                itemPath,
                'expected a balancer name of letters, digits, "-", "_" and "."',
            )
            continue
        try:
            balancer = _balancer(check, itemPath, name, item)
        except InvalidValueError as e:
            check.error(itemPath, str(e))
            continue
        result.append((name, balancer))
    return tuple(result)


def _balancer(check: Checker, path: str, name: str, value: Any) -> Balancer:
    """One C{[balancer.NAME]}."""
    settings = check.table(path, value, TABLES["balancer.NAME"])
    get = settings.get
    d = Balancer(name=name)

    balancer = Balancer(
        name=name,
        method=get("method", method, d.method),
        hash_key=get("hash_key", hashKey, d.hash_key),
        max_attempts=get("max_attempts", intAtLeast(0), d.max_attempts),
        fail_on_status=get(
            "fail_on_status", lambda p, v: _statuses(check, p, v), d.fail_on_status
        ),
        retry=get("retry", seconds, d.retry),
        wait=get("wait", secondsOrOff, d.wait),
        sticky=get("sticky", lambda p, v: _sticky(check, p, v), d.sticky),
        health=get("health", lambda p, v: _health(check, p, v), d.health),
        members=get(
            "member",
            lambda p, v: _members(check, p, v, f"{path}.member"),
            d.members,
        ),
    )
    if settings.values.get("member", []) == []:
        check.error(path, f"expected at least one [[{path}.member]]")
    if balancer.sticky is not None and balancer.sticky.insert:
        _stickyRoutes(check, path, settings.values.get("member"))
    return balancer


def _statuses(check: Checker, path: str, value: Any) -> tuple[int, ...]:
    """An array of HTTP status codes (100-599), each once."""
    result: list[int] = []
    for index, item in enumerate(array(path, value, "status codes")):
        itemPath = f"{path}[{index}]"
        if not isInt(item) or not 100 <= item <= 599:
            check.error(
                itemPath,
                f"expected a status code from 100 to 599, got {describe(item)}",
            )
        elif item in result:
            check.error(itemPath, f"duplicate status {item}")
        else:
            result.append(item)
    return tuple(result)


def _stickyRoutes(check: Checker, path: str, members: Any) -> None:
    """Report every member without a route, which an inserted cookie needs."""
    if not isinstance(members, list):
        return
    for index, item in enumerate(members):
        if isinstance(item, dict) and "route" not in item:
            check.error(
                f"{path}.member[{index}].route",
                "missing, expected a route id for the sticky cookie "
                f"([{path}.sticky] has insert = true)",
            )


def _sticky(check: Checker, path: str, value: Any) -> Sticky:
    """C{[balancer.NAME.sticky]}: Apache's stickysession."""
    converters = {"name": cookieName, "insert": boolean, "failover": boolean}
    return Sticky(
        **check.values(path, value, TABLES["balancer.NAME.sticky"], converters)
    )


def _health(check: Checker, path: str, value: Any) -> HealthCheck:
    """C{[balancer.NAME.health]}: active health checks."""
    settings = check.table(path, value, TABLES["balancer.NAME.health"])
    get = settings.get
    d = HealthCheck()

    # None: absent or already reported, so no comparison is made with it.
    interval = get("interval", seconds, None)
    timeout = get("timeout", seconds, None)
    health = HealthCheck(
        method=get("method", healthMethod, d.method),
        uri=get("uri", healthURI, d.uri),
        interval=d.interval if interval is None else interval,
        fast_interval=get("fast_interval", seconds, d.fast_interval),
        timeout=d.timeout if timeout is None else timeout,
        passes=get("passes", positiveInt, d.passes),
        fails=get("fails", positiveInt, d.fails),
        expect_status=get(
            "expect_status", lambda p, v: _expectStatus(check, p, v), d.expect_status
        ),
        expect_body=get("expect_body", expectBody, d.expect_body),
    )
    intervalKnown = interval is not None or "interval" not in settings
    timeoutKnown = timeout is not None or "timeout" not in settings
    fast = health.fast_interval
    written = "" if "timeout" in settings else " (the default)"
    if intervalKnown and timeoutKnown and health.timeout >= health.interval:
        check.error(
            keyPath(path, "timeout"),
            "timeout must be shorter than interval, got timeout "
            f"{health.timeout:g}{written} and interval {health.interval:g}",
        )
    elif timeoutKnown and fast is not None and health.timeout >= fast:
        # A check must be over before the next one is due, fast or not.
        check.error(
            keyPath(path, "timeout"),
            "timeout must be shorter than fast_interval, got timeout "
            f"{health.timeout:g}{written} and fast_interval {fast:g}",
        )
    if intervalKnown and fast is not None and fast > health.interval:
        written = "" if "interval" in settings else " (the default)"
        check.error(
            keyPath(path, "fast_interval"),
            "fast_interval must not exceed interval, got fast_interval "
            f"{fast:g} and interval {health.interval:g}{written}",
        )
    return health


def _expectStatus(check: Checker, path: str, value: Any) -> tuple[str, ...]:
    """Status classes (C{"2xx"}) or codes (C{"204"}) a passing check answers."""
    result: list[str] = []
    expected = 'a status class like "2xx" or a code like "204"'
    for index, item in enumerate(array(path, value, "statuses")):
        itemPath = f"{path}[{index}]"
        if isinstance(item, str) and _STATUS_CLASS.fullmatch(item.lower()):
            result.append(item.lower())
        elif isInt(item) and 100 <= item <= 599:
            result.append(str(item))
        elif isinstance(item, str) and _STATUS_CODE.fullmatch(item):
            result.append(item)
        else:
            check.error(itemPath, f"expected {expected}, got {describe(item)}")
    if not value:
        raise InvalidValueError(
            "expected at least one status class or code, got an empty array"
        )
    return tuple(result)


def _members(check: Checker, path: str, value: Any, header: str) -> tuple[Member, ...]:
    """The C{[[balancer.NAME.member]]} array."""
    result = []
    routes: dict[str, str] = {}
    names: dict[str, str] = {}
    for index, itemPath, item in check.tables(path, value, header):
        member = _member(check, itemPath, item)
        if member is None:
            continue
        short = f"member[{index}]"
        if member.route is not None:
            if member.route in routes:
                check.error(
                    f"{itemPath}.route",
                    f"duplicate route {json.dumps(member.route)} "
                    f"(also {routes[member.route]})",
                )
                continue
            routes[member.route] = short
        if member.name in names:
            check.error(
                f"{itemPath}.url",
                f"duplicate member {json.dumps(member.name)} "
                f"(also {names[member.name]})",
            )
            continue
        names[member.name] = short
        result.append(member)
    return tuple(result)


_MEMBER_URL = 'a URL like "http://127.0.0.1:9001"'
"""What a member's missing C{url} should have been."""


def _member(check: Checker, path: str, item: dict[str, Any]) -> Member | None:
    """One member; C{None} when its URL is missing or wrong."""
    get = check.table(path, item, TABLES["balancer.NAME.member"]).get
    url = get("url", memberURL, None, required=_MEMBER_URL)
    d = Member(url="", scheme="http", host="", port=0)
    route = get("route", routeId, d.route)
    weight = get("weight", positiveInt, d.weight)
    standby = get("standby", boolean, d.standby)
    disabled = get("disabled", boolean, d.disabled)
    maxConnections = get("max_connections", intAtLeast(0), d.max_connections)
    drain = get("drain", boolean, d.drain)
    tier = get("tier", intAtLeast(0), d.tier)
    ignoreErrors = get("ignore_errors", boolean, d.ignore_errors)
    tlsCA = get("tls_ca", check.file, d.tls_ca)
    tlsVerify = get("tls_verify", boolean, d.tls_verify)
    tls = get("tls", boolean, d.tls)
    secret = get("secret", ajpSecret, d.secret)
    if url is None:
        return None
    raw, scheme, host, port = url
    if secret is not None and scheme != "ajp":
        check.error(f"{path}.secret", f"only for ajp:// members, not {scheme}://")
    if tls and scheme != "tcp":
        check.error(
            f"{path}.tls",
            f"only for tcp:// members ({scheme}:// says by its scheme)",
        )
    check.backendTLS(path, item, "tcps" if scheme == "tcp" and tls else scheme)
    return Member(
        url=raw,
        scheme=scheme,
        host=host,
        port=port,
        route=route,
        weight=weight,
        standby=standby,
        disabled=disabled,
        max_connections=maxConnections,
        drain=drain,
        tier=tier,
        ignore_errors=ignoreErrors,
        tls_ca=tlsCA,
        tls_verify=tlsVerify,
        tls=tls and scheme == "tcp",
        secret=secret if scheme == "ajp" else None,
    )


_AJP_HEALTH = ("CPING", "TCP")


def ajpChecks(
    check: Checker,
    routes: tuple[Route, ...],
    balancers: tuple[tuple[str, Balancer], ...],
    document: dict[str, Any],
) -> tuple[tuple[Route, ...], tuple[tuple[str, Balancer], ...]]:
    """
    A balancer's members are all C{ajp://} or none is (one route speaks one
    protocol). An AJP balancer checks health by C{CPING} (or by TCP
    connects), never by HTTP requests, and carries no WebSockets. A route
    to AJP passes the client's Host unless it says otherwise. Returns the
    routes, AJP ones with preserve_host set, and the balancers, AJP ones
    with their CPING health check.
    """
    raw = document.get("balancer") if isinstance(document, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    result = []
    ajp: set[str] = set()
    for name, balancer in balancers:
        path = f"balancer.{name}"
        kinds = {m.scheme == "ajp" for m in balancer.members}
        if kinds == {True, False}:
            for i, member in enumerate(balancer.members):
                if member.scheme == "ajp":
                    check.error(
                        f"{path}.member[{i}].url",
                        "ajp:// and other members cannot share a balancer",
                    )
        if kinds != {True}:
            result.append((name, balancer))
            continue
        ajp.add(name)
        table = raw.get(name)
        health = table.get("health") if isinstance(table, dict) else None
        method = health.get("method", "CPING") if isinstance(health, dict) else None
        if isinstance(method, str) and method.upper() not in _AJP_HEALTH:
            check.error(
                f"{path}.health.method",
                'ajp:// members are checked by "CPING" (the default) or "TCP"',
            )
        elif balancer.health is not None:
            checked: HealthMethod = (
                "TCP" if method and method.upper() == "TCP" else "CPING"
            )
            balancer = replace(
                balancer, health=replace(balancer.health, method=checked)
            )
        result.append((name, balancer))
    resolved = []
    for route in routes:
        to = route.to
        if to is None or (
            to.scheme != "ajp" and not (to.scheme == "balancer" and to.host in ajp)
        ):
            resolved.append(route)
            continue
        item = _routeTable(document, route.index)
        if item.get("websocket") is True:
            check.error(f"route[{route.index}].websocket", "AJP carries no WebSockets")
        if route.preserve_host is None:
            route = replace(route, preserve_host=True)
        resolved.append(route)
    for name, balancer in result:
        if name in ajp or balancer.health is None:
            continue
        if balancer.health.method == "CPING":
            check.error(
                f"balancer.{name}.health.method",
                "CPING checks ajp:// members only",
            )
    return tuple(resolved), tuple(result)


def _routeTable(document: dict[str, Any], index: int) -> dict[str, Any]:
    """The C{[[route]]} table at C{index}, as written."""
    items = document.get("route") if isinstance(document, dict) else None
    if isinstance(items, list) and 0 <= index < len(items):
        item = items[index]
        if isinstance(item, dict):
            return item
    return {}
