"""
The maps ProxyPassReverse rewrites by (L{twisted_proxy.core.reverse}): backend
URL prefixes parsed into origins and paths, path-to-path mappings at segment
boundaries, and L{ReverseTable}, every route's mappings by the C{Host} names
that reach them.

Pure: parsed once, in the constructors; a lookup is a dictionary lookup per
C{/} of a path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from twisted_proxy.config.model import Balancer, Route
from twisted_proxy.config.schemes import BACKEND_SCHEMES
from twisted_proxy.core.routing import normalizeHost

__all__ = [
    "Bases",
    "HostMap",
    "Origin",
    "PathMap",
    "PublicPaths",
    "ReverseTable",
    "absoluteTable",
    "addMapping",
    "backendScheme",
    "hostBytes",
    "mapPath",
    "pathMap",
    "prefixDepth",
    "routePrefixes",
    "splitSuffix",
]


def backendScheme(name: bytes) -> tuple[bytes, int] | None:
    """
    What a backend URL of scheme C{name} speaks and its default port: ws/wss
    backends are also reached over http/https for the same resources.
    """
    known = BACKEND_SCHEMES.get(name.lower().decode("latin-1"))
    return None if known is None else (known.wireBytes, known.port)


# (internal path, internal path without trailing "/", public path, public
# path without trailing "/")
PathMap = tuple[bytes, bytes, bytes, bytes]

# (scheme, lowercase host, port) of a backend URL.
Origin = tuple[bytes, bytes, int]

# Internal path without its trailing "/" (its "base") -> the mapping for it.
Bases = dict[bytes, PathMap]


def hostBytes(host: str) -> bytes:
    """Encode a host name or address literal for comparison with header bytes."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


def pathMap(internal: bytes, public: bytes) -> PathMap:
    """Precompute one internal-to-public path mapping."""
    return (internal, internal.rstrip(b"/"), public, public.rstrip(b"/"))


def mapPath(path: bytes, mapping: PathMap) -> bytes | None:
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


def splitSuffix(value: bytes) -> tuple[bytes, bytes]:
    """Split C{value} into its path and its C{?query}/C{#fragment} suffix."""
    end = len(value)
    for mark in (b"?", b"#"):
        at = value.find(mark, 0, end)
        if at != -1:
            end = at
    return value[:end], value[end:]


def prefixDepth(path: bytes, keys: Collection[bytes], whole: bool = True) -> int:
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


def addMapping(bases: Bases, internal: bytes, public: bytes) -> None:
    """
    Record C{internal} -> C{public} unless an earlier mapping already claims
    its base: the first one stays, except that C{/app/} takes over C{/app}
    (it answers everything C{/app} answers, and C{/app/} exactly).
    """
    base = internal.rstrip(b"/")
    current = bases.get(base)
    if current is None or len(internal) > len(current[0]):
        bases[base] = pathMap(internal, public)


def _parsePrefix(prefix: str) -> tuple[Origin, bytes] | None:
    """A backend URL prefix as its origin and path, or None if not http(s)/ws(s)."""
    parts = urlsplit(prefix)
    scheme = backendScheme(parts.scheme.encode("ascii"))
    if scheme is None or not parts.hostname:
        return None
    port = parts.port if parts.port is not None else scheme[1]
    origin = (scheme[0], hostBytes(parts.hostname.lower()), port)
    return origin, (parts.path or "/").encode("utf-8")


def absoluteTable(
    mounts: Iterable[tuple[Sequence[str], bytes]],
) -> dict[Origin, Bases]:
    """Index (backend prefixes, public path) pairs, first one first, by origin."""
    table: dict[Origin, Bases] = {}
    for prefixes, public in mounts:
        for prefix in prefixes:
            parsed = _parsePrefix(prefix)
            if parsed is not None:
                origin, internal = parsed
                addMapping(table.setdefault(origin, {}), internal, public)
    return table


class PublicPaths:
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
        """How much of C{path} a mount point covers (see L{prefixDepth}), or -1."""
        return prefixDepth(path, self._bases)


def routePrefixes(route: Route, balancer: Balancer | None = None) -> tuple[str, ...]:
    """
    Return the backend URL prefixes ProxyPassReverse applies for C{route}.

    Those are the route's C{to} URL (for a C{balancer://} target, each
    member's URL joined with the target's path, since a balancer's name never
    appears in a backend's headers) and each C{reverse} URL; none for a
    C{match} route, which has no path prefix to map them back to.
    """
    if route.match is not None:
        return ()
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


class HostMap:
    """The Location mapping of the routes one C{Host} can reach."""

    __slots__ = ("absolute", "public")

    def __init__(self, absolute: dict[Origin, Bases], public: PublicPaths) -> None:
        self.absolute = absolute
        self.public = public


class _Mount:
    """One route, parsed once for L{ReverseTable}."""

    __slots__ = ("exact", "excluded", "prefixes", "public", "under")

    def __init__(self, route: Route, balancers: Mapping[str, Balancer]) -> None:
        # An exclude route answers its paths (with a 404) but maps nothing.
        self.excluded = route.exclude
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


def _hostMap(tiers: Iterable[Sequence[_Mount]]) -> HostMap:
    """
    Combine the routes one C{Host} reaches, most specific host first.

    A route whose every path a route of a more specific host answers is never
    reached for this host (routing tries the more specific host first), so it
    adds nothing; nor does an exclude route, which only shadows others.
    """
    reachable: list[_Mount] = []
    before: list[_Mount] = []
    for tier in tiers:
        reachable.extend(
            mount
            for mount in tier
            if not mount.excluded
            and not any(mount.coveredBy(other) for other in before)
        )
        before.extend(tier)
    return HostMap(
        absoluteTable((mount.prefixes, mount.public) for mount in reachable),
        PublicPaths(mount.public for mount in reachable),
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
    route that a more specific host's route shadows entirely; a route's
    C{aliases} reach it as its C{host} does. A C{match} route has no place
    here: it has no path prefix to map back to, nor one to shadow by. The
    combined mapping of each configured host is built here, once; a response
    costs one dictionary lookup of its C{Host}.

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
            if route.match is not None:
                continue
            mount = _Mount(route, balancers or {})
            for host in route.hosts or (None,):
                name = _routeHost(host) if host else None
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

    def hostMap(self, host: bytes | None) -> HostMap:
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
