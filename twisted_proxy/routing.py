"""
Route matching: which ``[[route]]`` answers a request, and what the upstream sees.

Pure and per request: the table is sorted once, and matching compares raw
(undecoded) path bytes, so ``%2F`` in a path is never mistaken for a ``/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote

from twisted_proxy.config.model import Route

__all__ = ["RouteTable", "normalizeHost", "originForm", "upstreamTarget"]

# Everything printable in ASCII stays as written; only non-ASCII, spaces and
# controls in a configured path are percent-encoded, as a client would send them.
_PATH_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))

_HOST_NONE = 0
_HOST_WILDCARD = 1
_HOST_EXACT = 2


def _encodePath(path: str) -> bytes:
    """Return a configured path as the raw bytes a request line would carry."""
    return quote(path, safe=_PATH_SAFE).encode("ascii")


def normalizeHost(host: bytes | None) -> bytes | None:
    """
    Reduce a ``Host`` header (or a configured host) to the bare lowercase name.

    The port is dropped, IPv6 brackets are removed (``[::1]:8080`` → ``::1``) and
    a trailing dot is ignored. C{None} or an empty value gives C{None}.
    """
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        host = host[1:end] if end > 0 else host[1:]
    elif host.count(b":") == 1:
        host = host.split(b":", 1)[0]
    if host.endswith(b"."):
        host = host[:-1]
    return host or None


def _encodeHost(host: str) -> bytes:
    """Return a configured host name as the lowercase ASCII a client sends."""
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return b".".join(
            label.encode("ascii") if label in ("", "*") else label.encode("idna")
            for label in host.split(".")
        )


class _Entry:
    """One route, precomputed for matching."""

    __slots__ = ("exact", "host", "hostKind", "prefix", "route", "under")

    def __init__(self, route: Route) -> None:
        self.route = route
        prefix = _encodePath(route.path) or b"/"
        self.prefix = prefix
        if prefix.endswith(b"/"):
            # "/api/users/" also answers the bare "/api/users".
            self.exact = prefix[:-1]
            self.under = prefix
        else:
            # Like Apache, "/api" matches "/api" and "/api/..." but not "/apix".
            self.exact = prefix
            self.under = prefix + b"/"
        host = normalizeHost(_encodeHost(route.host)) if route.host else None
        if host is None:
            self.hostKind = _HOST_NONE
            self.host = b""
        elif host.startswith(b"*."):
            self.hostKind = _HOST_WILDCARD
            self.host = host[1:]  # ".example.test": a suffix match
        else:
            self.hostKind = _HOST_EXACT
            self.host = host

    def sortKey(self) -> tuple[int, int, int, int]:
        """Longest prefix first; then exact host, wildcard host, no host."""
        return (-len(self.prefix), -self.hostKind, -len(self.host), self.route.index)


class RouteTable:
    """
    The routes of one configuration, ready for per-request matching.

    The longest matching path prefix wins; among equally long prefixes a route
    for the request's host beats a wildcard host, which beats a route for any
    host. Ties keep the order of the file.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        entries = [_Entry(route) for route in routes]
        entries.sort(key=_Entry.sortKey)
        self._entries = tuple(entries)
        self._anyHost = all(e.hostKind == _HOST_NONE for e in entries)

    def match(self, host: bytes | None, path: bytes) -> Route | None:
        """
        Return the route answering C{path} on C{host}, or C{None}.

        :param host: the raw ``Host`` header value (port and case ignored).
        :param path: the raw request path (or whole request-target: anything
            from ``?`` on is ignored, an absolute-form target is understood).
        """
        if path[:1] != b"/":
            path = originForm(path)
        query = path.find(b"?")
        if query >= 0:
            path = path[:query]
        if not path:
            path = b"/"
        name = None if self._anyHost else normalizeHost(host)
        for entry in self._entries:
            if path != entry.exact and not path.startswith(entry.under):
                continue
            kind = entry.hostKind
            if kind == _HOST_NONE:
                return entry.route
            if name is None:
                continue
            if kind == _HOST_EXACT:
                if name == entry.host:
                    return entry.route
            elif name.endswith(entry.host):
                return entry.route
        return None


def originForm(target: bytes) -> bytes:
    """
    Return the origin form (path and query) of a request-target.

    An absolute-form target (``http://host/path?q``), which HTTP/1.1 servers
    must accept, loses its scheme and authority; anything else is returned as is.
    """
    if target[:1] == b"/":
        return target
    scheme = target.find(b"://")
    if scheme < 0:
        return target
    start = scheme + 3
    end = len(target)
    for separator in (b"/", b"?"):
        index = target.find(separator, start)
        if 0 <= index < end:
            end = index
    rest = target[end:]
    return rest if rest[:1] == b"/" else b"/" + rest


@lru_cache(maxsize=1024)
def _targetParts(routePath: str, targetPath: str) -> tuple[bytes, bytes]:
    """Return the encoded route prefix and target prefix for L{upstreamTarget}."""
    return _encodePath(routePath) or b"/", _encodePath(targetPath) or b"/"


def upstreamTarget(routePath: str, targetPath: str, rawTarget: bytes) -> bytes:
    """
    Rewrite a request-target for the backend: swap the route's prefix for the target's.

    Byte for byte, with no decoding: ``%2F``, ``%20`` and ``+`` reach the backend
    as the client sent them. The join never doubles or drops a slash.

    :param routePath: the matched route's C{path}, e.g. ``"/api/users/"``.
    :param targetPath: the path of the route's C{to} URL, e.g. ``"/"``.
    :param rawTarget: the request-target as received,
        e.g. ``b"/api/users/x%2Fy?q=1+2"`` (an absolute-form target is reduced
        to its path and query first).
    :raise ValueError: if C{rawTarget} is not under C{routePath}.
    """
    prefix, target = _targetParts(routePath, targetPath)
    if rawTarget[:1] != b"/":
        rawTarget = originForm(rawTarget)
    if rawTarget.startswith(prefix):
        rest = rawTarget[len(prefix) :]
    elif (
        prefix.endswith(b"/")
        and rawTarget.startswith(prefix[:-1])
        and rawTarget[len(prefix) - 1 : len(prefix)] in (b"", b"?")
    ):
        rest = rawTarget[len(prefix) - 1 :]
    else:
        raise ValueError(f"{rawTarget!r} is not under the route path {routePath!r}")
    if not rest:
        return target
    first = rest[:1]
    if first == b"?":
        return target + rest
    if target.endswith(b"/"):
        return target + rest[1:] if first == b"/" else target + rest
    return target + rest if first == b"/" else target + b"/" + rest
