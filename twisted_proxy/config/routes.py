"""
The C{[[route]]} array: which requests go where.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from .checker import Checker
from .convert import (
    InvalidValueError,
    ajpSecret,
    array,
    boolean,
    describe,
    fail,
    handler,
    routeHost,
    routePath,
    seconds,
    target,
    url,
)
from .model import HeaderDirectives, Route, Target
from .schemes import BACKEND_SCHEMES
from .vocabulary import TABLES

__all__ = ["BACKREFERENCE", "routePattern", "routes"]

BACKREFERENCE = re.compile(r"\$([0-9])")
"""A C{$N} in a match route's C{to}: the text group N captured."""

_EXCLUDE_KEYS = frozenset(
    {"path", "match", "host", "aliases", "exclude", "to", "handler"}
)
"""The keys an C{exclude = true} route takes: what it matches, nothing else
(C{to} and C{handler} are reported as one too many)."""


def routes(
    check: Checker, path: str, value: Any, balancerNames: frozenset[str]
) -> tuple[Route, ...]:
    """
    The C{[[route]]} array; a C{balancer://NAME/} target must name one of
    C{balancerNames}.
    """
    result = []
    seen: dict[tuple[str | None, str, str], tuple[str, bool]] = {}
    for index, itemPath, table in check.tables(path, value, "route"):
        route = _route(check, itemPath, table, index, balancerNames)
        if route is not None and _unique(check, itemPath, route, seen):
            result.append(route)
    return tuple(result)


def _unique(
    check: Checker,
    path: str,
    route: Route,
    seen: dict[tuple[str | None, str, str], tuple[str, bool]],
) -> bool:
    """
    Whether no earlier route answers the same host (or alias) and the same
    path (or match pattern): one of the two would never be reached.
    """
    kind, where = (
        ("path", route.path) if route.match is None else ("match", route.match)
    )
    names: tuple[str | None, ...] = route.hosts or (None,)
    for name in names:
        earlier = seen.get((name, kind, where))
        if earlier is not None:
            other, otherAlias = earlier
            both = ""
            if otherAlias or name != route.host:
                both = f" (both answer {json.dumps(name)})"
            check.error(path, f"same host and {kind} as {other}{both}")
            return False
    for name in names:
        seen[(name, kind, where)] = (path, name != route.host)
    return True


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
    """One C{[[route]]}; C{None} when it has no usable path or match."""
    get = check.table(path, table, TABLES["route"]).get
    if "path" in table and "match" in table:
        check.error(path, 'expected exactly one of "path" or "match"')
    prefix = pattern = None
    if "match" in table:
        pattern = get("match", routePattern, None)
    if "path" in table or "match" not in table:
        prefix = get(
            "path", routePath, None, required='a path like "/app/" (or a match)'
        )
    host = get("host", routeHost, None)
    noAliases: tuple[str, ...] = ()
    aliases = get("aliases", lambda p, v: _aliases(check, p, v, host), noAliases)
    if aliases and "host" not in table:
        check.error(f"{path}.aliases", "only with host (the route's main name)")
    exclude = get("exclude", boolean, False)
    answers = [key for key in ("to", "handler") if key in table]
    if len(answers) + exclude != 1:
        check.error(path, 'expected exactly one of "to", "handler" or "exclude = true"')
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
        path="" if pattern is not None else prefix or "/",
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
        aliases=aliases,
        match=pattern,
        exclude=exclude,
        connect_timeout=get("connect_timeout", seconds, None),
    )
    if exclude:
        accepted = TABLES["route"].keys - _EXCLUDE_KEYS
        for key in (key for key in table if key in accepted):
            check.error(f"{path}.{key}", "not on an exclude route (it proxies nothing)")
    else:
        _answerChecks(check, path, table, route)
    check.backendTLS(path, table, to.scheme if to is not None else None)
    usable = (prefix is None) != (pattern is None)
    return route if usable else None


def _answerChecks(
    check: Checker, path: str, table: dict[str, Any], route: Route
) -> None:
    """
    The keys that need a proxied route, or a handler route; what a C{match}
    route refuses, and the C{$N} of its C{to}.
    """
    to = route.to
    if route.secret is not None and (to is None or to.scheme != "ajp"):
        toBalancer = to is not None and to.scheme == "balancer"
        hint = " (a balancer's ajp:// members take one each)" if toBalancer else ""
        check.error(f"{path}.secret", f"only for an ajp:// target{hint}")
    if route.handler is None and "token_file" in table:
        check.error(f"{path}.token_file", "only a handler route takes a token")
    if "handler" in table and "connect_timeout" in table:
        check.error(f"{path}.connect_timeout", 'only for a route with "to"')
    if route.match is None:
        return
    if "handler" in table:
        check.error(f"{path}.match", 'a handler is served at a path prefix: use "path"')
    if "reverse" in table:
        check.error(
            f"{path}.reverse",
            "not on a match route (it has no path prefix to map backend URLs"
            " back to): list them on a route with a path",
        )
    if route.to is not None:
        _checkBackreferences(check, f"{path}.to", route.to, route.match)


def _checkBackreferences(check: Checker, path: str, to: Target, pattern: str) -> None:
    """Each C{$N} of C{to} is in its path, and names a group C{pattern} has."""
    authority = to.url.partition("://")[2].partition("/")[0]
    if BACKREFERENCE.search(authority):
        check.error(path, "a backreference ($N) may only be in the URL's path")
    groups = re.compile(pattern.encode("ascii")).groups
    wanted = max((int(n) for n in BACKREFERENCE.findall(to.path)), default=0)
    if wanted > groups:
        check.error(
            path,
            f"${wanted}, but the match pattern has only {groups} group(s)"
            if groups
            else f"${wanted}, but the match pattern has no group",
        )


def routePattern(path: str, value: Any) -> str:
    """
    A match route's regular expression: ASCII (the normalised path it is
    searched for in is), compiled for bytes.
    """
    if not isinstance(value, str) or not value:
        fail('a regular expression like "^/(.*\\\\.gif)$"', value)
    if not value.isascii():
        raise InvalidValueError(
            "expected ASCII (the normalised path has other characters"
            f" percent-encoded: %C3%A9 for \u00e9), got {describe(value)}"
        )
    try:
        re.compile(value.encode("ascii"))
    except (re.error, RecursionError, OverflowError) as e:
        raise InvalidValueError(
            f"expected a regular expression, got {describe(value)}: {e}"
        ) from None
    return value


def _aliases(
    check: Checker, path: str, value: Any, host: str | None
) -> tuple[str, ...]:
    """Other names of the route's host, each a C{host} value, none repeated."""
    result: list[str] = []
    for index, item in enumerate(array(path, value, "host names")):
        itemPath = f"{path}[{index}]"
        try:
            name = routeHost(itemPath, item)
        except InvalidValueError as e:
            check.error(itemPath, str(e))
            continue
        if name == host:
            check.error(itemPath, f"{json.dumps(name)} is the route's host already")
        elif name in result:
            check.error(itemPath, f"{json.dumps(name)} is listed twice")
        else:
            result.append(name)
    return tuple(result)


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
