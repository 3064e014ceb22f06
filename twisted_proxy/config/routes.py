"""
The C{[[route]]} array: which requests go where.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .checker import Checker
from .convert import (
    InvalidValueError,
    ajpSecret,
    array,
    boolean,
    fail,
    handler,
    routeHost,
    routePath,
    seconds,
    target,
    url,
)
from .model import HeaderDirectives, Route
from .schemes import BACKEND_SCHEMES
from .vocabulary import TABLES

__all__ = ["routes"]


def routes(
    check: Checker, path: str, value: Any, balancerNames: frozenset[str]
) -> tuple[Route, ...]:
    """
    The C{[[route]]} array; a C{balancer://NAME/} target must name one of
    C{balancerNames}.
    """
    result = []
    seen: dict[tuple[str | None, str], str] = {}
    for index, itemPath, table in check.tables(path, value, "route"):
        route = _route(check, itemPath, table, index, balancerNames)
        if route is None:
            continue
        key = (route.host, route.path)
        if key in seen:
            check.error(itemPath, f"same host and path as {seen[key]}")
            continue
        seen[key] = itemPath
        result.append(route)
    return tuple(result)


LOCAL = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
"""A handler route's C{allow} unless it says otherwise: this machine only, as
Apache's C{Require local}."""


def _route(
    check: Checker,
    path: str,
    table: dict[str, Any],
    index: int,
    balancerNames: frozenset[str],
) -> Route | None:
    """One C{[[route]]}; C{None} when it has no usable path."""
    get = check.table(path, table, TABLES["route"]).get
    prefix = get("path", routePath, None, required='a path like "/app/"')
    host = get("host", routeHost, None)
    if ("to" in table) == ("handler" in table):
        check.error(path, 'expected exactly one of "to" or "handler"')
    to = get("to", lambda _, value: target(value, balancerNames), None)
    handlerName = get("handler", handler, None)
    websocket = get("websocket", boolean, True)
    scheme = BACKEND_SCHEMES.get(to.scheme) if to is not None else None
    if scheme is not None and scheme.websocket and not websocket:
        check.error(
            f"{path}.websocket",
            f"a {scheme.name}:// route always carries WebSockets, got false",
        )
    route = Route(
        path=prefix or "/",
        host=host,
        to=to,
        handler=handlerName,
        reverse=get("reverse", lambda p, v: _reverseURLs(check, p, v), ()),
        cookie_domain=get("cookie_domain", check.stringPairs, ()),
        cookie_path=get("cookie_path", check.stringPairs, ()),
        preserve_host=get("preserve_host", boolean, None),
        timeout=get("timeout", seconds, None),
        allow=get("allow", check.networks, LOCAL if handlerName else ()),
        deny=get("deny", check.networks, ()),
        request_headers=get(
            "request_headers", check.headerDirectives, HeaderDirectives()
        ),
        index=index,
        websocket=websocket,
        tls_ca=get("tls_ca", check.file, None),
        tls_verify=get("tls_verify", boolean, True),
        trace=get("trace", boolean, False),
        token_file=get("token_file", check.tokenFile, None),
        secret=get("secret", ajpSecret, None),
    )
    if route.secret is not None and (to is None or to.scheme != "ajp"):
        toBalancer = to is not None and to.scheme == "balancer"
        hint = " (a balancer's ajp:// members take one each)" if toBalancer else ""
        check.error(f"{path}.secret", f"only for an ajp:// target{hint}")

    if handlerName is None and "token_file" in table:
        check.error(f"{path}.token_file", "only a handler route takes a token")
    check.backendTLS(path, table, to.scheme if to is not None else None)
    return None if prefix is None else route


def _reverseURLs(check: Checker, path: str, value: Any) -> tuple[str, ...]:
    """C{ProxyPassReverse} URLs: http(s) URLs."""
    result = []
    for index, item in enumerate(array(path, value, "URLs")):
        itemPath = f"{path}[{index}]"
        try:
            parts = url(item, "an http:// or https:// URL")
            if parts.scheme.lower() not in ("http", "https"):
                fail("an http:// or https:// URL", item)
        except InvalidValueError as e:
            check.error(itemPath, str(e))
        else:
            result.append(item)
    return tuple(result)
