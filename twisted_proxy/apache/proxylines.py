"""
Apache's proxying lines: C{ProxyPass} and C{ProxyPassMatch} (with C{!}
exclusions and their worker parameters), C{ProxyPassReverse} and its cookie
forms, and C{<Location>} (a handler, access, compression, or a one-argument
C{ProxyPass} and the request headers for what it proxies), into
C{[[route]]} tables.

Apache tries C{ProxyPass} lines in the order written and the first match
wins; here the longest prefix wins. They agree when longer paths come
first, as Apache's manual asks; a line an earlier one shadows, which Apache
never reaches, is an error naming both.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from twisted_proxy.apache.lines import Host, count, mergedHeaders, seconds
from twisted_proxy.apache.parse import Directive, Section
from twisted_proxy.apache.serverlines import ServerLines

__all__ = ["ProxyLines"]

_HANDLERS = {
    "balancer-manager": "balancer-manager",
    "server-status": "status",
    "server-info": "info",
}

# Worker parameters with no meaning for a single backend, said once each.
_SINGLE_WORKER = {
    "keepalive": "keepalive: TCP keep-alive probes are the system's",
    "retry": "retry on a single backend: it is always tried",
    "flushpackets": "flushpackets: every backend read is sent on at once",
    "flushwait": "flushwait: every backend read is sent on at once",
    "loadfactor": "loadfactor on a single backend: no balancer to weigh it in",
    "lbset": "lbset on a single backend: no balancer to put it in a set",
    "route": "route on a single backend: no balancer to stick to it",
    "smax": "smax: the pool keeps what it has until ttl",
    "min": "min: the pool opens connections as requests need them",
    "enablereuse": "enablereuse: connections are reused unless keepalive = false",
}


def _covers(earlier: str, path: str) -> bool:
    """Whether Apache's prefix C{earlier} matches every URL under C{path}."""
    if earlier.endswith("/"):
        return path.startswith(earlier)
    return path == earlier or path.startswith(earlier + "/")


def _literalStart(pattern: str) -> str | None:
    """The path every match of C{pattern} starts with (None: unanchored)."""
    if not pattern.startswith("^"):
        return None
    literal = re.match(r"[^\\.^$*+?{}\[\]|()]*", pattern[1:])
    return literal.group(0) if literal else ""


class ProxyLines(ServerLines):
    """C{ProxyPass} and friends, and C{<Location>}."""

    def shadowedBy(self, host: Host, key: str) -> Directive | None:
        """The earlier line Apache would match first for C{key}'s URLs."""
        for earlier, d in host.seen.items():
            if earlier.startswith("~"):
                continue
            if key.startswith("~"):
                start = _literalStart(key[1:])
                if start is None or _covers(earlier, start or "/"):
                    return d
            elif _covers(earlier, key):
                return d
        return None

    def claim(self, d: Directive, host: Host, key: str, what: str) -> bool:
        """Whether C{d} may take C{key} (a path, or "~" and a regex)."""
        earlier = host.seen.get(key)
        if earlier is not None:
            self.error(
                d,
                f"a second {what} for {key.lstrip('~')} ({earlier.where} has it;"
                " Apache ignores this one silently)",
            )
            return False
        shadow = self.shadowedBy(host, key)
        if shadow is not None:
            self.error(
                d,
                f"never reached in Apache: {shadow.name} {shadow.args[0]} at "
                f"{shadow.where} matches these URLs first (put the longer path"
                " first, as Apache's manual says)",
            )
            return False
        host.seen[key] = d
        return True

    def d_proxypass(self, d: Directive, host: Host) -> None:
        if len(d.args) < 2:
            self.error(d, "ProxyPass takes a path and a URL (or !)")
            return
        path, url, *params = d.args
        if not self.claim(d, host, path, "ProxyPass"):
            return
        if url == "!":
            host.excluded[path] = d
            return
        self.proxied(d, host, {"path": path, "to": url}, params)

    def d_proxypassmatch(self, d: Directive, host: Host) -> None:
        if len(d.args) < 2:
            self.error(d, "ProxyPassMatch takes a regex and a URL (or !)")
            return
        pattern, url, *params = d.args
        try:
            re.compile(pattern)
        except re.error as e:
            self.error(d, f"the regex {pattern!r} cannot be read here: {e}")
            return
        if not self.claim(d, host, "~" + pattern, "ProxyPassMatch"):
            return
        if url == "!":
            host.routes.append(self.mark({"match": pattern, "exclude": True}, d))
            return
        self.proxied(d, host, {"match": pattern, "to": url}, params)

    def proxied(
        self, d: Directive, host: Host, route: dict[str, Any], params: list[str]
    ) -> None:
        """A route to C{route["to"]}, with the line's worker parameters."""
        url = route["to"]
        for param in params:
            key, eq, value = param.partition("=")
            key = key.lower()
            if not eq:
                self.error(d, f"expected key=value, got {param!r}")
            elif key == "timeout":
                route["timeout"] = seconds(value)
            elif key == "connectiontimeout":
                route["connect_timeout"] = seconds(value)
            elif key == "ttl":
                self.out.proxy["pool_ttl"] = seconds(value)
                self.notice(d, "ttl: the pools of every backend keep it here")
            elif key == "max":
                self.out.proxy["pool_size"] = count(value)
                self.notice(d, "max: the pools of every backend keep it here")
            elif key == "status":
                self.workerStatus(d, value)
            elif key in _SINGLE_WORKER:
                self.notice(d, _SINGLE_WORKER[key])
            elif key == "secret" and url.lower().startswith("ajp://"):
                route["secret"] = value
            else:
                self.error(d, f"{key}= cannot be expressed on a route here")
        if "timeout" in route and "connect_timeout" not in route:
            # Apache's connectiontimeout is the worker's timeout unless set.
            route["connect_timeout"] = route["timeout"]
        host.routes.append(self.mark(route, d))

    def workerStatus(self, d: Directive, value: str) -> None:
        sign, disabled = "+", False
        for char in value:
            if char in "+-":
                sign = char
            elif char in "Dd":
                disabled = sign == "+"
        if disabled:
            self.error(d, "status=+D on a single backend: leave the ProxyPass out")
        else:
            self.notice(d, f"status={value} on a single backend: it is always tried")

    def d_proxypassreverse(self, d: Directive, host: Host) -> None:
        if len(d.args) != 2:
            self.error(d, "ProxyPassReverse takes a path and a URL")
            return
        path, url = d.args
        for route in host.routes:
            if route.get("path") == path and "to" in route:
                if route["to"].rstrip("/") == url.rstrip("/"):
                    self.notice(d, "the route's own target: rewritten unasked here")
                    return
                if url.lower().startswith(("http://", "https://")):
                    route.setdefault("reverse", []).append(url)
                    return
        self.notice(d, "no ProxyPass for this path: nothing to rewrite")

    def d_proxypassreversecookiedomain(self, d: Directive, host: Host) -> None:
        self.cookieRewrite(d, host, "cookie_domain")

    def d_proxypassreversecookiepath(self, d: Directive, host: Host) -> None:
        self.cookieRewrite(d, host, "cookie_path")

    def cookieRewrite(self, d: Directive, host: Host, key: str) -> None:
        if len(d.args) != 2:
            self.error(d, "takes the backend's value and the public one")
            return
        proxied = [route for route in host.routes if "to" in route]
        if not proxied:
            self.error(d, "no ProxyPass before it in this host to rewrite for")
            return
        for route in proxied:
            route.setdefault(key, {})[d.args[0]] = d.args[1]

    def d_proxyerroroverride(self, d: Directive, host: Host) -> None:
        if (d.args or ("",))[0].lower() == "off":
            self.notice(d, "Off: the backends' error pages are passed on, as here")
        else:
            self.error(
                d, "the proxy's own error pages for a backend's errors: not supported"
            )

    # -- <Location> --

    def s_location(self, d: Section, host: Host) -> None:
        if len(d.args) != 1:
            self.error(d, "<Location> takes one path")
            return
        path = d.args[0]
        handler: str | None = None
        allow: list[str] | None = None
        headers: dict[str, Any] = {}
        for child in d.children:
            key = child.key
            if key == "sethandler" and len(child.args) == 1:
                handler = _HANDLERS.get(child.args[0].lower())
                if handler is None:
                    self.error(child, f"no handler {child.args[0]!r} here")
            elif key == "require":
                allow = self.require(child)
            elif key == "setoutputfilter" and [a.upper() for a in child.args] == [
                "DEFLATE"
            ]:
                if path != "/":
                    self.error(child, "compression is for the whole server here")
                else:
                    self.compress(child)
            elif key in ("proxypass", "proxypassreverse") and len(child.args) >= 1:
                # The one-argument form: the path is the <Location>'s.
                moved = Directive(
                    child.name, (path, *child.args), child.file, child.line
                )
                self.reading(moved, partial(getattr(self, "d_" + key), moved, host))
            elif key == "requestheader":
                self.headers(child, headers)
            else:
                self.error(child, "not expressible inside <Location>")
        if headers:
            host.locationHeaders.append((path, headers, d))
        if handler is not None:
            route: dict[str, Any] = {"path": path, "handler": handler}
            if allow is not None:
                route["allow"] = allow
            host.routes.append(self.mark(route, d))
        elif allow is not None:
            self.locationAccess(d, host, path, allow)

    def locationAccess(
        self, d: Section, host: Host, path: str, allow: list[str]
    ) -> None:
        """C{Require} in a C{<Location>} of a proxied path: that route's allow."""
        routes = [r for r in host.routes if r.get("path") == path and "to" in r]
        if not routes:
            self.error(d, "Require here guards a path with no ProxyPass of its own")
        for route in routes:
            route["allow"] = allow

    def locationRequestHeaders(self, host: Host) -> None:
        """Each <Location>'s RequestHeader lines, onto the routes under it."""
        for path, headers, d in host.locationHeaders:
            proxied = [r for r in host.routes if "to" in r and "path" in r]
            # The route that serves the <Location>'s own URL, and those under it.
            covering = [r for r in proxied if _covers(r["path"], path)]
            serving = max(covering, key=lambda r: len(r["path"]), default=None)
            under = [r for r in proxied if _covers(path, r["path"])]
            if serving is not None and serving["path"].rstrip("/") != path.rstrip("/"):
                under = []
            elif serving is not None and serving not in under:
                under.append(serving)
            if not under:
                self.error(
                    d,
                    "RequestHeader here applies to a path that is not a whole"
                    " ProxyPass route: give the path a ProxyPass of its own",
                )
                continue
            for route in under:
                route["request_headers"] = mergedHeaders(
                    route.get("request_headers", {}), headers
                )
