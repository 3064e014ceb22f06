"""
Route matching: which ``[[route]]`` answers a request, and what the upstream sees.

Pure and per request: the table is sorted once, and matching compares the
request's normalised path (L{twisted_proxy.core.requesttarget}) with the routes'
prefixes, byte for byte: ``%2F`` in a path is never mistaken for a ``/``. A
C{match} route's regular expression is searched for in the same bytes
(L{PathPattern}).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote

from twisted_proxy.config.model import Route
from twisted_proxy.core.requesttarget import RequestTarget

__all__ = ["PathPattern", "RouteTable", "normalizeHost", "upstreamTarget"]

# Everything printable in ASCII stays as written; only non-ASCII, spaces and
# controls in a configured path are percent-encoded, as a client would send them.
_PATH_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))

_HOST_NONE = 0
_HOST_WILDCARD = 1
_HOST_EXACT = 2

# No request path starts with a NUL: a match route's entry is never taken for
# a prefix, only its regular expression decides.
_NO_PREFIX = b"\0"

_BACKREFERENCE = re.compile(rb"\$([0-9])")


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
    """One route under one of its names, precomputed for matching."""

    __slots__ = (
        "exact",
        "host",
        "hostKind",
        "name",
        "prefix",
        "regex",
        "route",
        "under",
    )

    def __init__(self, route: Route, name: str | None) -> None:
        self.route = route
        self.name = name
        self.regex: re.Pattern[bytes] | None = None
        self.exact: bytes | None = None
        if route.match is not None:
            self.regex = re.compile(route.match.encode("ascii"))
            self.prefix = b""
            self.under = _NO_PREFIX
        else:
            prefix = _encodePath(route.path) or b"/"
            self.prefix = prefix
            if prefix.endswith(b"/"):
                # As Apache's ProxyPass: "/api/users/" answers "/api/users/..."
                # only, never the bare "/api/users".
                self.under = prefix
            else:
                # Like Apache, "/api" matches "/api" and "/api/..." but not "/apix".
                self.exact = prefix
                self.under = prefix + b"/"
        host = normalizeHost(_encodeHost(name)) if name else None
        if host is None:
            self.hostKind = _HOST_NONE
            self.host = b""
        elif host.startswith(b"*."):
            self.hostKind = _HOST_WILDCARD
            self.host = host[1:]  # ".example.test": a suffix match
        else:
            self.hostKind = _HOST_EXACT
            self.host = host

    def sortKey(self) -> tuple[int, int, int, int, int]:
        """
        The host first (exact, then the longest wildcard, then none), then
        the match routes, then the longest prefix, then file order.
        """
        return (
            -self.hostKind,
            -len(self.host),
            0 if self.regex is not None else 1,
            -len(self.prefix),
            self.route.index,
        )


class RouteTable:
    """
    The routes of one configuration, ready for per-request matching.

    The host is chosen first: among the routes of the request's host (an
    exact name, else the most specific C{*.domain}; a route's C{aliases}
    count as its C{host}), the C{match} routes are tried in file order, then
    the longest matching path prefix wins; the routes of a less specific
    host, and last the host-less ones, are tried only when none of those
    matches the path. Ties keep the order of the file. An C{exclude} route is
    matched like any other: what to do with it is the caller's.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        entries = [
            _Entry(route, name) for route in routes for name in route.hosts or (None,)
        ]
        entries.sort(key=_Entry.sortKey)
        self._entries = tuple(entries)
        self._anyHost = all(e.hostKind == _HOST_NONE for e in entries)

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes in the order matching first tries them."""
        return tuple(dict.fromkeys(e.route for e in self._entries))

    @property
    def names(self) -> tuple[tuple[str | None, Route], ...]:
        """
        (name, route) in the order matching tries them: a route once per
        name it answers (its C{host}, then each alias; C{None}: any host).
        """
        return tuple((e.name, e.route) for e in self._entries)

    def match(self, host: bytes | None, path: bytes) -> Route | None:
        """
        Return the route answering C{path} on C{host}, or C{None}.

        :param host: the raw ``Host`` header value (port and case ignored).
        :param path: the request's normalised path, without its query and
            its path parameters (L{RequestTarget.match}).
        """
        name = None if self._anyHost else normalizeHost(host)
        for entry in self._entries:
            if path != entry.exact and not path.startswith(entry.under):
                regex = entry.regex
                if regex is None or regex.search(path) is None:
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


class PathPattern:
    """
    A C{match} route's regular expression and its C{to} URL's path: what the
    backend is asked for (Apache's ProxyPassMatch).

    Each C{$0} to C{$9} of the path is the text the pattern's group captured
    in the request's normalised path, as the client sent it (percent-encoded
    bytes stay encoded). A path without any has the request's path appended,
    one slash between. The query follows either way.
    """

    __slots__ = ("_base", "_groups", "_pieces", "regex")

    def __init__(self, pattern: str, targetPath: str) -> None:
        self.regex = re.compile(pattern.encode("ascii"))
        template = _encodePath(targetPath) or b"/"
        parts = _BACKREFERENCE.split(template)
        self._pieces = tuple(parts[0::2])
        self._groups = tuple(int(n) for n in parts[1::2])
        self._base = template[:-1] if template.endswith(b"/") else template

    def upstreamTarget(self, target: RequestTarget) -> bytes:
        """
        The request-target for the backend.

        :raise ValueError: C{target} does not match, or a backreference made
            a C{.} or C{..} segment (a backend would climb out of the path).
        """
        found = self.regex.search(target.match)
        if found is None:
            raise ValueError(
                f"{target.path!r} does not match {self.regex.pattern.decode()!r}"
            )
        if not self._groups:
            return self._base + target.path + target.query
        pieces = self._pieces
        out = [pieces[0]]
        for group, piece in zip(self._groups, pieces[1:], strict=True):
            out.append(found.group(group) or b"")
            out.append(piece)
        path = b"".join(out)
        if b"/." in path and not {b".", b".."}.isdisjoint(path.split(b"/")):
            raise ValueError(f"a backreference made a dot segment in {path!r}")
        return path + target.query


@lru_cache(maxsize=1024)
def _targetParts(routePath: str, targetPath: str) -> tuple[bytes, bytes]:
    """Return the encoded route prefix and target prefix for L{upstreamTarget}."""
    return _encodePath(routePath) or b"/", _encodePath(targetPath) or b"/"


def upstreamTarget(routePath: str, targetPath: str, target: RequestTarget) -> bytes:
    """
    Rewrite a request-target for the backend: swap the route's prefix for the target's.

    Byte for byte on the normalised target: ``%2F``, ``%20`` and ``+`` reach
    the backend as the client sent them. The join never doubles or drops a
    slash.

    :param routePath: the matched route's C{path}, e.g. ``"/api/users/"``.
    :param targetPath: the path of the route's C{to} URL, e.g. ``"/"``.
    :param target: the request's normalised target, e.g. the one of
        ``b"/api/users/x%2Fy?q=1+2"``.
    :raise ValueError: if C{target} is not under C{routePath}.
    """
    prefix, base = _targetParts(routePath, targetPath)
    rest = target.after(prefix)
    if rest is None:
        raise ValueError(f"{target.path!r} is not under the route path {routePath!r}")
    rest += target.query
    if not rest:
        return base
    first = rest[:1]
    if first == b"?":
        return base + rest
    if base.endswith(b"/"):
        return base + rest[1:] if first == b"/" else base + rest
    return base + rest if first == b"/" else base + b"/" + rest
