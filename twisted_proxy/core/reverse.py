"""
ProxyPassReverse: rewrite a backend's own URLs in response headers.

A backend that redirects to C{http://127.0.0.1:3000/login} must not send the
client there; the client is told C{https://api.example.test/api/users/login}
instead. The same mapping rewrites C{Content-Location} and C{URI}, and the
C{Domain} and C{Path} of C{Set-Cookie} (ProxyPassReverseCookieDomain and
ProxyPassReverseCookiePath).

As every ProxyPassReverse line of an Apache virtual host applies to every
response that host serves, an absolute URL is checked against the backend
URLs of every route the request's C{Host} can reach (L{ReverseTable}), not
only the route that answered: a redirect from the users service to the
payments service's internal URL comes back as the public URL of the payments
route. The longest matching backend path wins; on a tie, the answering
route's own mapping, then the route of the more specific host, then the one
listed first. Cookies stay per route: a backend's C{Set-Cookie} describes
only its own paths and domain.

An absolute path (C{Location: /login}) is relative to the backend that sent
it, so only that route's backend paths move it under the route's path. A
path already under a public route path (this route's or another route of the
same host) more specifically than under a backend path is public already and
is kept: a backend that knows its public prefix (C{X-Forwarded-Prefix}) and
says C{/api/users/x} does not get C{/api/users/api/users/x}.

Pure: byte strings in, byte strings out. The prefixes are parsed once, in the
constructors; the per-response work is a set lookup per header name and
nothing more unless a header needs rewriting, and then a dictionary lookup
per C{/} of the header's path, however many routes there are.

Paths map at segment boundaries: an internal C{/app/} (or C{/app}) matches
C{/app}, C{/app/} and C{/app/x} but not C{/apple}, and a slash never doubles
or goes missing where the two sides disagree on a trailing slash.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted_proxy.config.model import Balancer, Route
from twisted_proxy.core.reversemap import (
    Bases,
    HostMap,
    PathMap,
    PublicPaths,
    ReverseTable,
    absoluteTable,
    addMapping,
    backendScheme,
    hostBytes,
    mapPath,
    pathMap,
    prefixDepth,
    routePrefixes,
    splitSuffix,
)

__all__ = [
    "ReverseRewriter",
]

Headers = list[tuple[bytes, bytes]]

_LOCATION_HEADERS: frozenset[bytes] = frozenset(
    {b"location", b"content-location", b"uri"}
)


class ReverseRewriter:
    """
    Rewrite backend URLs and cookies in a route's response headers.

    :param prefixes: the backend URL prefixes to recognise (see
        L{routePrefixes}); prefixes whose scheme is not http, https, ws or
        wss are ignored.
    :param frontPath: the route's public path, which replaces a prefix's path.
    :param cookieDomain: (internal, public) C{Domain} pairs.
    :param cookiePath: (internal, public) C{Path} prefix pairs.
    :param table: the other routes' mappings (L{ReverseTable}), which absolute
        URLs are checked against too; without it, only C{prefixes} count.
    """

    def __init__(
        self,
        prefixes: Sequence[str],
        frontPath: str,
        cookieDomain: Sequence[tuple[str, str]] = (),
        cookiePath: Sequence[tuple[str, str]] = (),
        table: ReverseTable | None = None,
    ) -> None:
        """Parse every prefix and mapping once."""
        front = frontPath.encode("utf-8")
        self._absolute = absoluteTable([(prefixes, front)])
        relative: Bases = {}
        for bases in self._absolute.values():
            for internal, *_ in bases.values():
                addMapping(relative, internal, front)
        self._relative = relative
        self._public = PublicPaths([front or b"/"])
        self._table = table if table is not None and table.active else None

        self._cookieDomains = {
            hostBytes(internal.lower().lstrip(".")): hostBytes(public)
            for internal, public in cookieDomain
        }
        self._cookiePaths = tuple(
            pathMap(internal.encode("utf-8"), public.encode("utf-8"))
            for internal, public in sorted(cookiePath, key=lambda p: -len(p[0]))
        )

        relevant: set[bytes] = set()
        if self._absolute or self._table is not None:
            relevant |= _LOCATION_HEADERS
        if self._cookieDomains or self._cookiePaths:
            relevant.add(b"set-cookie")
        self._relevant = frozenset(relevant)

    @classmethod
    def fromRoute(
        cls,
        route: Route,
        balancer: Balancer | None = None,
        table: ReverseTable | None = None,
    ) -> ReverseRewriter:
        """Build the rewriter for C{route} (and its balancer, if it has one)."""
        return cls(
            routePrefixes(route, balancer),
            route.path,
            route.cookie_domain,
            route.cookie_path,
            table,
        )

    @property
    def active(self) -> bool:
        """Whether any response header can ever be rewritten."""
        return bool(self._relevant)

    def rewriteLocation(
        self, value: bytes, frontScheme: str, frontHost: bytes
    ) -> bytes:
        """
        Rewrite one C{Location}/C{Content-Location}/C{URI} value.

        An absolute URL under a backend prefix (scheme and host compared
        case-insensitively, default ports filled in) becomes
        C{frontScheme://frontHost} plus the public path of the route that
        prefix belongs to plus the rest, byte for byte; the prefixes are this
        route's and, with a table, those of every route C{frontHost} reaches,
        the longest path winning. An absolute path under one of this route's
        backend paths is moved under the route's path, unless a public route
        path covers more of it. Anything else, including network-path
        references (C{//host/...}), is returned unchanged (the same object).
        """
        hostMap = None if self._table is None else self._table.hostMap(frontHost)
        return self._rewriteLocation(value, frontScheme, frontHost, hostMap)

    def _rewriteLocation(
        self,
        value: bytes,
        frontScheme: str,
        frontHost: bytes,
        hostMap: HostMap | None,
    ) -> bytes:
        if value[:1] == b"/":
            if value[:2] == b"//" or not self._relative:
                return value
            return self._rewritePath(value, hostMap)

        sep = value.find(b"://")
        if sep <= 0:
            return value
        scheme = backendScheme(value[:sep])
        if scheme is None:
            return value
        start = sep + 3
        end = len(value)
        for mark in (b"/", b"?", b"#"):
            at = value.find(mark, start, end)
            if at != -1:
                end = at
        authority = value[start:end]
        if b"@" in authority:
            return value
        if authority[:1] == b"[":
            close = authority.find(b"]")
            if close == -1:
                return value
            host, portPart = authority[1:close], authority[close + 1 :]
            if portPart and portPart[:1] != b":":
                return value
            portPart = portPart[1:]
        else:
            host, _, portPart = authority.partition(b":")
        if portPart:
            if not portPart.isdigit():
                return value
            port = int(portPart)
        else:
            port = scheme[1]

        origin = (scheme[0], host.lower(), port)
        own = self._absolute.get(origin)
        shared = None if hostMap is None else hostMap.absolute.get(origin)
        if own is None and shared is None:
            return value
        path, suffix = splitSuffix(value[end:])
        if not path:
            path = b"/"
        # The longest backend path wins; this route's own mapping wins a tie,
        # as two routes may front one backend.
        depth = -1
        mapping: PathMap | None = None
        if own is not None:
            depth = prefixDepth(path, own)
            if depth != -1:
                mapping = own[path[:depth]]
        if shared is not None:
            sharedDepth = prefixDepth(path, shared)
            if sharedDepth > depth:
                mapping = shared[path[:sharedDepth]]
        if mapping is None:
            return value
        mapped = mapPath(path, mapping)
        if mapped is None:
            return value
        return frontScheme.encode("ascii") + b"://" + frontHost + mapped + suffix

    def _rewritePath(self, value: bytes, hostMap: HostMap | None) -> bytes:
        """Rewrite an absolute-path reference (C{/login?next=/}) from this backend."""
        path, suffix = splitSuffix(value)
        depth = prefixDepth(path, self._relative)
        if depth == -1:
            return value
        # A public mount point covering more of the path than the backend
        # path does says the backend already wrote the public path.
        if self._public.depth(path) > depth or (
            hostMap is not None and hostMap.public.depth(path) > depth
        ):
            return value
        mapped = mapPath(path, self._relative[path[:depth]])
        if mapped is None or mapped == path:
            return value
        return mapped + suffix

    def rewriteSetCookie(self, value: bytes) -> bytes:
        """
        Rewrite the C{Domain} and C{Path} attributes of one C{Set-Cookie} value.

        C{Domain} is swapped when it equals a mapped internal domain
        (case-insensitively, a leading dot tolerated); C{Path} goes through the
        longest matching internal path prefix. Everything else is kept byte for
        byte; an unchanged value is returned as the same object.
        """
        if not self._cookieDomains and not self._cookiePaths:
            return value
        parts = value.split(b";")
        changed = False
        for index in range(1, len(parts)):
            part = parts[index]
            eq = part.find(b"=")
            if eq == -1:
                continue
            attribute = part[:eq].strip().lower()
            if attribute == b"domain":
                raw = part[eq + 1 :]
                current = raw.strip()
                new = self._cookieDomains.get(current.lower().lstrip(b"."))
            elif attribute == b"path":
                raw = part[eq + 1 :]
                current = raw.strip()
                new = None
                if current:
                    for mapping in self._cookiePaths:
                        new = mapPath(current, mapping)
                        if new is not None:
                            break
            else:
                continue
            if new is not None and new != current:
                lead = raw[: len(raw) - len(raw.lstrip())]
                trail = raw[len(raw.rstrip()) :]
                parts[index] = part[: eq + 1] + lead + new + trail
                changed = True
        return b";".join(parts) if changed else value

    def rewriteResponseHeaders(
        self, headers: Headers, frontScheme: str, frontHost: bytes
    ) -> Headers:
        """
        Apply L{rewriteLocation} and L{rewriteSetCookie} to a response's headers.

        Order and repeated headers are kept. When nothing changes the input
        list itself is returned, so the common case allocates nothing.
        """
        relevant = self._relevant
        if not relevant:
            return headers
        out: Headers | None = None
        table = self._table
        hostMap: HostMap | None = None
        for index, (name, value) in enumerate(headers):
            lower = name.lower()
            if lower not in relevant:
                continue
            if lower == b"set-cookie":
                new = self.rewriteSetCookie(value)
            else:
                if hostMap is None and table is not None:
                    hostMap = table.hostMap(frontHost)
                new = self._rewriteLocation(value, frontScheme, frontHost, hostMap)
            if new is not value:
                if out is None:
                    out = list(headers)
                out[index] = (name, new)
        return out if out is not None else headers
