"""
ProxyPassReverse: rewrite a backend's own URLs in response headers.

A backend that redirects to C{http://127.0.0.1:3000/login} must not send the
client there; the client is told C{https://api.example.test/api/users/login}
instead. The same mapping rewrites C{Content-Location} and C{URI}, and the
C{Domain} and C{Path} of C{Set-Cookie} (ProxyPassReverseCookieDomain and
ProxyPassReverseCookiePath).

Pure: byte strings in, byte strings out. The prefixes are parsed once, in the
constructor; the per-response work is a set lookup per header name and nothing
more unless a header needs rewriting.

Paths map at segment boundaries: an internal C{/app/} (or C{/app}) matches
C{/app}, C{/app/} and C{/app/x} but not C{/apple}, and a slash never doubles
or goes missing where the two sides disagree on a trailing slash.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from twisted_proxy.config.model import Balancer, Route

__all__ = ["ReverseRewriter", "routePrefixes"]

Headers = list[tuple[bytes, bytes]]

# ws/wss backends are also reached over http/https for the same resources.
_SCHEMES: dict[bytes, tuple[bytes, int]] = {
    b"http": (b"http", 80),
    b"https": (b"https", 443),
    b"ws": (b"http", 80),
    b"wss": (b"https", 443),
}

_LOCATION_HEADERS: frozenset[bytes] = frozenset(
    {b"location", b"content-location", b"uri"}
)

# (internal path, internal path without trailing "/", public path, public
# path without trailing "/")
_PathMap = tuple[bytes, bytes, bytes, bytes]


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


class ReverseRewriter:
    """
    Rewrite backend URLs and cookies in a route's response headers.

    :param prefixes: the backend URL prefixes to recognise (see
        L{routePrefixes}); prefixes whose scheme is not http, https, ws or
        wss are ignored.
    :param frontPath: the route's public path, which replaces a prefix's path.
    :param cookieDomain: (internal, public) C{Domain} pairs.
    :param cookiePath: (internal, public) C{Path} prefix pairs.
    """

    def __init__(
        self,
        prefixes: Sequence[str],
        frontPath: str,
        cookieDomain: Sequence[tuple[str, str]] = (),
        cookiePath: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Parse every prefix and mapping once."""
        front = frontPath.encode("utf-8")
        absolute: dict[tuple[bytes, bytes, int], set[bytes]] = {}
        for prefix in prefixes:
            parts = urlsplit(prefix)
            scheme = _SCHEMES.get(parts.scheme.lower().encode("ascii"))
            if scheme is None or not parts.hostname:
                continue
            port = parts.port if parts.port is not None else scheme[1]
            key = (scheme[0], _hostBytes(parts.hostname.lower()), port)
            absolute.setdefault(key, set()).add((parts.path or "/").encode("utf-8"))

        def longestFirst(paths: set[bytes]) -> tuple[_PathMap, ...]:
            return tuple(
                _pathMap(path, front)
                for path in sorted(paths, key=lambda p: (-len(p), p))
            )

        self._absolute = {key: longestFirst(paths) for key, paths in absolute.items()}
        # An absolute-path Location is rewritten only where the paths differ:
        # when they are equal the mapping is the identity.
        self._relative = longestFirst(
            {path for paths in absolute.values() for path in paths} - {front}
        )

        self._cookieDomains = {
            _hostBytes(internal.lower().lstrip(".")): _hostBytes(public)
            for internal, public in cookieDomain
        }
        self._cookiePaths = tuple(
            _pathMap(internal.encode("utf-8"), public.encode("utf-8"))
            for internal, public in sorted(cookiePath, key=lambda p: -len(p[0]))
        )

        relevant: set[bytes] = set()
        if self._absolute:
            relevant |= _LOCATION_HEADERS
        if self._cookieDomains or self._cookiePaths:
            relevant.add(b"set-cookie")
        self._relevant = frozenset(relevant)

    @classmethod
    def fromRoute(
        cls, route: Route, balancer: Balancer | None = None
    ) -> ReverseRewriter:
        """Build the rewriter for C{route} (and its balancer, if it has one)."""
        return cls(
            routePrefixes(route, balancer),
            route.path,
            route.cookie_domain,
            route.cookie_path,
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
        C{frontScheme://frontHost} plus the route's path plus the rest, byte
        for byte. An absolute path under a backend path is moved under the
        route's path. Anything else, including network-path references
        (C{//host/...}), is returned unchanged (the same object).
        """
        if value[:1] == b"/":
            if value[:2] == b"//" or not self._relative:
                return value
            path, suffix = _splitSuffix(value)
            for mapping in self._relative:
                mapped = _mapPath(path, mapping)
                if mapped is not None:
                    return mapped + suffix
            return value

        sep = value.find(b"://")
        if sep <= 0:
            return value
        scheme = _SCHEMES.get(value[:sep].lower())
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

        mappings = self._absolute.get((scheme[0], host.lower(), port))
        if mappings is None:
            return value
        path, suffix = _splitSuffix(value[end:])
        if not path:
            path = b"/"
        for mapping in mappings:
            mapped = _mapPath(path, mapping)
            if mapped is not None:
                return (
                    frontScheme.encode("ascii") + b"://" + frontHost + mapped + suffix
                )
        return value

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
        for index, (name, value) in enumerate(headers):
            lower = name.lower()
            if lower not in relevant:
                continue
            if lower == b"set-cookie":
                new = self.rewriteSetCookie(value)
            else:
                new = self.rewriteLocation(value, frontScheme, frontHost)
            if new is not value:
                if out is None:
                    out = list(headers)
                out[index] = (name, new)
        return out if out is not None else headers
