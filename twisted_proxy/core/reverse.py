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

from collections.abc import Collection, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from twisted_proxy.config.model import Balancer, Route
from twisted_proxy.core.routing import normalizeHost
from twisted_proxy.core.schemes import BACKEND_SCHEMES

__all__ = ["ReverseRewriter", "ReverseTable", "routePrefixes"]

Headers = list[tuple[bytes, bytes]]


def _scheme(name: bytes) -> tuple[bytes, int] | None:
    """
    What a backend URL of scheme C{name} speaks and its default port: ws/wss
    backends are also reached over http/https for the same resources.
    """
    known = BACKEND_SCHEMES.get(name.lower().decode("latin-1"))
    return None if known is None else (known.wireBytes, known.port)


_LOCATION_HEADERS: frozenset[bytes] = frozenset(
    {b"location", b"content-location", b"uri"}
)

# (internal path, internal path without trailing "/", public path, public
# path without trailing "/")
_PathMap = tuple[bytes, bytes, bytes, bytes]

# (scheme, lowercase host, port) of a backend URL.
_Origin = tuple[bytes, bytes, int]

# Internal path without its trailing "/" (its "base") -> the mapping for it.
_Bases = dict[bytes, _PathMap]


def _hostBytes(host: str) -> bytes:
    """Encode a host name or address literal for comparison with header bytes."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


def _pathMap(internal: bytes, public: bytes) -> _PathMap:
    """Precompute one internal-to-public path mapping."""
    return (internal, internal.rstrip(b"/"), public, public.rstrip(b"/"))


def _mapPath(path: bytes, mapping: _PathMap) -> bytes | None:
    """
    Map C{path} through C{mapping}, or return L{None} when it does not apply.

    The exact internal path gives the exact public path; below it, the
    internal prefix is swapped for the public one at a C{/} boundary.
    """
    internal, internalBase, public, publicBase = mapping
    if path == internal:
        return public
    size = len(internalBase)
    if path.startswith(internalBase) and (
        len(path) == size or path[size : size + 1] == b"/"
    ):
        return publicBase + path[size:] or b"/"
    return None


def _splitSuffix(value: bytes) -> tuple[bytes, bytes]:
    """Split C{value} into its path and its C{?query}/C{#fragment} suffix."""
    end = len(value)
    for mark in (b"?", b"#"):
        at = value.find(mark, 0, end)
        if at != -1:
            end = at
    return value[:end], value[end:]


def _depth(path: bytes, keys: Collection[bytes], whole: bool = True) -> int:
    """
    The length of the longest prefix of C{path} in C{keys} that ends at a
    segment boundary (just before a C{/}, or with C{whole}, at the end of the
    path), or -1. The work is one lookup per C{/} of C{path}.
    """
    if whole and path in keys:
        return len(path)
    at = len(path)
    while True:
        at = path.rfind(b"/", 0, at)
        if at == -1:
            return -1
        if path[:at] in keys:
            return at


def _addMapping(bases: _Bases, internal: bytes, public: bytes) -> None:
    """
    Record C{internal} -> C{public} unless an earlier mapping already claims
    its base: the first one stays, except that C{/app/} takes over C{/app}
    (it answers everything C{/app} answers, and C{/app/} exactly).
    """
    base = internal.rstrip(b"/")
    current = bases.get(base)
    if current is None or len(internal) > len(current[0]):
        bases[base] = _pathMap(internal, public)


def _parsePrefix(prefix: str) -> tuple[_Origin, bytes] | None:
    """A backend URL prefix as its origin and path, or None if not http(s)/ws(s)."""
    parts = urlsplit(prefix)
    scheme = _scheme(parts.scheme.encode("ascii"))
    if scheme is None or not parts.hostname:
        return None
    port = parts.port if parts.port is not None else scheme[1]
    origin = (scheme[0], _hostBytes(parts.hostname.lower()), port)
    return origin, (parts.path or "/").encode("utf-8")


def _absoluteTable(
    mounts: Iterable[tuple[Sequence[str], bytes]],
) -> dict[_Origin, _Bases]:
    """Index (backend prefixes, public path) pairs, first one first, by origin."""
    table: dict[_Origin, _Bases] = {}
    for prefixes, public in mounts:
        for prefix in prefixes:
            parsed = _parsePrefix(prefix)
            if parsed is not None:
                origin, internal = parsed
                _addMapping(table.setdefault(origin, {}), internal, public)
    return table


class _PublicPaths:
    """
    Where routes are mounted on the front side, for absolute-path Locations.

    A mount point covers its path with or without the trailing slash, as a
    backend path does: a backend that says C{/api/users} for the root it
    knows as C{/api/users/} has written a public path too.
    """

    __slots__ = ("_bases",)

    def __init__(self, paths: Iterable[bytes]) -> None:
        self._bases = frozenset(path.rstrip(b"/") for path in paths)

    def depth(self, path: bytes) -> int:
        """How much of C{path} a mount point covers (see L{_depth}), or -1."""
        return _depth(path, self._bases)


def routePrefixes(route: Route, balancer: Balancer | None = None) -> tuple[str, ...]:
    """
    Return the backend URL prefixes ProxyPassReverse applies for C{route}.

    Those are the route's C{to} URL (for a C{balancer://} target, each
    member's URL joined with the target's path, since a balancer's name never
    appears in a backend's headers) and each C{reverse} URL.
    """
    prefixes: list[str] = []
    target = route.to
    if target is not None:
        if target.scheme == "balancer":
            if balancer is not None:
                prefixes.extend(
                    member.url.rstrip("/") + target.path for member in balancer.members
                )
        else:
            prefixes.append(target.url)
    prefixes.extend(route.reverse)
    return tuple(prefixes)


class _HostMap:
    """The Location mapping of the routes one C{Host} can reach."""

    __slots__ = ("absolute", "public")

    def __init__(self, absolute: dict[_Origin, _Bases], public: _PublicPaths) -> None:
        self.absolute = absolute
        self.public = public


class _Mount:
    """One route, parsed once for L{ReverseTable}."""

    __slots__ = ("exact", "prefixes", "public", "under")

    def __init__(self, route: Route, balancers: Mapping[str, Balancer]) -> None:
        balancer = None
        if route.to is not None and route.to.scheme == "balancer":
            balancer = balancers.get(route.to.host)
        self.prefixes = routePrefixes(route, balancer)
        public = route.path.encode("utf-8") or b"/"
        self.public = public
        if public.endswith(b"/"):
            self.exact: bytes | None = None
            self.under = public
        else:
            self.exact = public
            self.under = public + b"/"

    def coveredBy(self, other: _Mount) -> bool:
        """Whether C{other} answers every path this route answers."""
        if self.exact is None:
            return self.under.startswith(other.under)
        return self.exact == other.exact or self.exact.startswith(other.under)


def _hostMap(tiers: Iterable[Sequence[_Mount]]) -> _HostMap:
    """
    Combine the routes one C{Host} reaches, most specific host first.

    A route whose every path a route of a more specific host answers is never
    reached for this host (routing tries the more specific host first), so it
    adds nothing.
    """
    reachable: list[_Mount] = []
    before: list[_Mount] = []
    for tier in tiers:
        reachable.extend(
            mount
            for mount in tier
            if not any(mount.coveredBy(other) for other in before)
        )
        before.extend(tier)
    return _HostMap(
        _absoluteTable((mount.prefixes, mount.public) for mount in reachable),
        _PublicPaths(mount.public for mount in reachable),
    )


def _routeHost(host: str) -> bytes | None:
    """A route's C{host} as routing compares it: lowercase ASCII, no port."""
    return normalizeHost(
        b".".join(
            label.encode("ascii") if label.isascii() else label.encode("idna")
            for label in host.split(".")
        )
    )


class ReverseTable:
    """
    The ProxyPassReverse mappings of every route of a configuration, by the
    C{Host} names that reach them, as in an Apache virtual host.

    A response's absolute URLs are checked against the routes its request's
    C{Host} could be routed to: the routes of that exact host, those of each
    C{*.domain} matching it, and the routes without C{host}, leaving out a
    route that a more specific host's route shadows entirely. The combined
    mapping of each configured host is built here, once; a response costs one
    dictionary lookup of its C{Host}.

    :param routes: the routes, in the order of the file (earlier wins ties).
    :param balancers: the balancers by name, for their members' URLs.
    """

    def __init__(
        self, routes: Sequence[Route], balancers: Mapping[str, Balancer] | None = None
    ) -> None:
        anyHost: list[_Mount] = []
        exact: dict[bytes, list[_Mount]] = {}
        wildcard: dict[bytes, list[_Mount]] = {}
        for route in routes:
            mount = _Mount(route, balancers or {})
            name = _routeHost(route.host) if route.host else None
            if name is None:
                anyHost.append(mount)
            elif name.startswith(b"*."):
                wildcard.setdefault(name[1:], []).append(mount)
            else:
                exact.setdefault(name, []).append(mount)
        # Most specific first, as routing tries them.
        suffixes = sorted(wildcard, key=len, reverse=True)

        def tiers(name: bytes) -> list[list[_Mount]]:
            return [wildcard[s] for s in suffixes if name.endswith(s)] + [anyHost]

        self._default = _hostMap([anyHost])
        self._exact = {
            name: _hostMap([mounts, *tiers(name)]) for name, mounts in exact.items()
        }
        self._wildcard = {suffix: _hostMap(tiers(suffix)) for suffix in suffixes}
        self._named = bool(self._exact or self._wildcard)
        self.active = any(
            hostMap.absolute
            for hostMap in (
                self._default,
                *self._exact.values(),
                *self._wildcard.values(),
            )
        )
        """Whether any absolute URL can be rewritten for any host."""

    def hostMap(self, host: bytes | None) -> _HostMap:
        """The combined mapping for a request whose C{Host} header is C{host}."""
        if not self._named:
            return self._default
        name = normalizeHost(host)
        if name is None:
            return self._default
        found = self._exact.get(name)
        if found is not None:
            return found
        if self._wildcard:
            at = name.find(b".")
            while at != -1:
                found = self._wildcard.get(name[at:])
                if found is not None:
                    return found
                at = name.find(b".", at + 1)
        return self._default


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
        self._absolute = _absoluteTable([(prefixes, front)])
        relative: _Bases = {}
        for bases in self._absolute.values():
            for internal, *_ in bases.values():
                _addMapping(relative, internal, front)
        self._relative = relative
        self._public = _PublicPaths([front or b"/"])
        self._table = table if table is not None and table.active else None

        self._cookieDomains = {
            _hostBytes(internal.lower().lstrip(".")): _hostBytes(public)
            for internal, public in cookieDomain
        }
        self._cookiePaths = tuple(
            _pathMap(internal.encode("utf-8"), public.encode("utf-8"))
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
        hostMap: _HostMap | None,
    ) -> bytes:
        if value[:1] == b"/":
            if value[:2] == b"//" or not self._relative:
                return value
            return self._rewritePath(value, hostMap)

        sep = value.find(b"://")
        if sep <= 0:
            return value
        scheme = _scheme(value[:sep])
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
        path, suffix = _splitSuffix(value[end:])
        if not path:
            path = b"/"
        # The longest backend path wins; this route's own mapping wins a tie,
        # as two routes may front one backend.
        depth = -1
        mapping: _PathMap | None = None
        if own is not None:
            depth = _depth(path, own)
            if depth != -1:
                mapping = own[path[:depth]]
        if shared is not None:
            sharedDepth = _depth(path, shared)
            if sharedDepth > depth:
                mapping = shared[path[:sharedDepth]]
        if mapping is None:
            return value
        mapped = _mapPath(path, mapping)
        if mapped is None:
            return value
        return frontScheme.encode("ascii") + b"://" + frontHost + mapped + suffix

    def _rewritePath(self, value: bytes, hostMap: _HostMap | None) -> bytes:
        """Rewrite an absolute-path reference (C{/login?next=/}) from this backend."""
        path, suffix = _splitSuffix(value)
        depth = _depth(path, self._relative)
        if depth == -1:
            return value
        # A public mount point covering more of the path than the backend
        # path does says the backend already wrote the public path.
        if self._public.depth(path) > depth or (
            hostMap is not None and hostMap.public.depth(path) > depth
        ):
            return value
        mapped = _mapPath(path, self._relative[path[:depth]])
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
                        new = _mapPath(current, mapping)
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
        hostMap: _HostMap | None = None
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
