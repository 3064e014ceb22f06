"""
What a request names: its target path, normalised once, and its Host.

Pure: bytes in, values out. A request's path is normalised as RFC 3986
section 6.2.2 says before anything looks at it — routing, access lists, the
access log and the backend all see the same path, so ``//admin/``,
``/x/../admin/``, ``/%61dmin/`` and ``/admin;x/`` cannot walk past a rule
written for ``/admin/``:

 - percent-encoded unreserved characters are decoded (``%61`` is ``a``,
   ``%2e`` is ``.``); every other percent-encoding gets uppercase hex and is
   kept, so ``%2F`` never becomes a separator;
 - bytes outside ASCII are percent-encoded (as browsers send them);
 - dot segments are removed, and a path that climbs above the root is refused;
 - repeated slashes are merged (unless the operator turns that off).

Path parameters (``;jsessionid=...`` in a segment) stay in the path that is
forwarded, but play no part in matching: a Tomcat behind the proxy serves
``/admin;x/secret`` as ``/admin/secret``, so routes and access lists see that.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "RequestTarget",
    "TargetError",
    "isValidHost",
    "normalizeTarget",
    "splitAbsoluteForm",
]


class TargetError(ValueError):
    """A request-target that cannot be served; the message says why (400)."""


_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)

# Printable ASCII and bytes outside ASCII are all a target may hold; of the
# printable ones, '#' starts a fragment, which a client never sends.
_TARGET_BYTES = bytes(c for c in range(0x21, 0x100) if c not in b"#\x7f")
# A path that needs no work holds only these (no '%', ';' or '#', nothing outside
# ASCII), and no "/." or "//": checked with one translate() and two finds.
_PLAIN_PATH_BYTES = bytes(c for c in range(0x21, 0x7F) if c not in b"%;#")

_DECODE: dict[bytes, bytes] = {}
for _code in range(256):
    _lower = b"%02x" % _code
    _upper = b"%02X" % _code
    _decoded = bytes([_code]) if _code in _UNRESERVED else b"%" + _upper
    for _form in {_lower, _upper, _lower[:1] + _upper[1:], _upper[:1] + _lower[1:]}:
        _DECODE[_form] = _decoded
del _DECODE[b"00"]  # %00 is refused, never decoded


class RequestTarget(NamedTuple):
    """
    A normalised origin-form request-target.

    :ivar path: the normalised path, path parameters kept: what is logged
        (``%U``) and what the backend receives.
    :ivar query: C{b""}, or the query as received with its C{b"?"}.
    :ivar match: the path routes and access lists are matched against:
        C{path} without its path parameters.
    :ivar segments: C{path}'s segments, and for each segment of C{match}
        the index of the segment of C{path} it comes from (only when they
        differ), so a route's prefix can be taken off the forwarded path.
    """

    path: bytes
    query: bytes
    match: bytes
    segments: tuple[tuple[bytes, ...], tuple[int, ...]] | None = None

    @property
    def uri(self) -> bytes:
        """Path and query, as forwarded."""
        return self.path + self.query

    def after(self, prefix: bytes) -> bytes | None:
        """
        The part of the forwarded path after a route's C{prefix} (which
        C{match} starts with, at a segment boundary): C{b""} or a part
        starting with C{b"/"}. C{None} if C{prefix} is not a prefix of
        C{match}.
        """
        match = self.match
        if prefix.endswith(b"/"):
            if not match.startswith(prefix):
                return None
            consumed = prefix.count(b"/") - 1
            rest = match[len(prefix) - 1 :]
        elif match == prefix:
            return b""
        elif match.startswith(prefix) and match[len(prefix) : len(prefix) + 1] == b"/":
            consumed = prefix.count(b"/")
            rest = match[len(prefix) :]
        else:
            return None
        if self.segments is not None:
            pathSegments, origin = self.segments
            rest = b"/" + b"/".join(pathSegments[origin[consumed] :])
        return b"" if rest == b"/" else rest


def normalizeTarget(target: bytes, mergeSlashes: bool = True) -> RequestTarget:
    """
    Validate and normalise an origin-form request-target (``/path?query``).

    :raise TargetError: for what a server must not guess at: a control byte
        or space, a fragment, invalid percent-encoding, ``%00``, a dot segment
        carrying parameters, or a path that climbs above the root.
    """
    if target[:1] != b"/":
        raise TargetError("the request target is not a path")
    queryAt = target.find(b"?")
    if queryAt < 0:
        path, query = target, b""
    else:
        path, query = target[:queryAt], target[queryAt:]
        _checkBytes(query)
    if (
        not path.translate(None, _PLAIN_PATH_BYTES)
        and b"/." not in path
        and (not mergeSlashes or b"//" not in path)
    ):
        return RequestTarget(path, query, path)
    _checkBytes(path)
    return _normalizePath(path, query, mergeSlashes)


def _checkBytes(part: bytes) -> None:
    odd = part.translate(None, _TARGET_BYTES)
    if odd:
        if b"#" in odd:
            raise TargetError("a fragment in the request target")
        raise TargetError("a control character or space in the request target")


def _normalizePath(path: bytes, query: bytes, mergeSlashes: bool) -> RequestTarget:
    if b"%" in path:
        path = _percentNormalized(path)
    if not path.isascii():
        path = b"".join(b"%%%02X" % c if c > 0x7F else bytes([c]) for c in path)
    segments = path[1:].split(b"/")
    last = len(segments) - 1
    out: list[bytes] = []
    for index, segment in enumerate(segments):
        name = segment.split(b";", 1)[0] if b";" in segment else segment
        if name == b"." or name == b"..":
            if name != segment:
                raise TargetError("a dot segment with parameters in the path")
            if name == b"..":
                if not out:
                    raise TargetError("the path climbs above the root")
                out.pop()
            if index == last:
                out.append(b"")
            continue
        if not segment and mergeSlashes and index != last:
            continue
        out.append(segment)
    normalized = b"/" + b"/".join(out)
    if b";" not in normalized:
        return RequestTarget(normalized, query, normalized)
    names: list[bytes] = []
    origin: list[int] = []
    last = len(out) - 1
    for index, segment in enumerate(out):
        name = segment.split(b";", 1)[0]
        if not name and mergeSlashes and index != last:
            continue
        names.append(name)
        origin.append(index)
    match = b"/" + b"/".join(names)
    return RequestTarget(normalized, query, match, (tuple(out), tuple(origin)))


def _percentNormalized(path: bytes) -> bytes:
    """Decode %-encoded unreserved bytes, uppercase the rest; refuse bad ones."""
    pieces = path.split(b"%")
    out = [pieces[0]]
    decode = _DECODE
    for piece in pieces[1:]:
        decoded = decode.get(piece[:2])
        if decoded is None:
            if piece[:2] == b"00":
                raise TargetError("%00 in the request path")
            raise TargetError("invalid percent-encoding in the request path")
        out.append(decoded)
        out.append(piece[2:])
    return b"".join(out)


def splitAbsoluteForm(target: bytes) -> tuple[bytes, bytes] | None:
    """
    Split an absolute-form request-target (``http://host:port/path?q``, which
    HTTP/1.1 servers must accept) into its authority and its origin form
    (``/path?q``; ``/`` when the path is empty). C{None} when C{target} is not
    an C{http} or C{https} URL.
    """
    scheme = target[:8].lower()
    if scheme.startswith(b"http://"):
        start = 7
    elif scheme.startswith(b"https://"):
        start = 8
    else:
        return None
    end = len(target)
    for separator in (b"/", b"?"):
        index = target.find(separator, start)
        if 0 <= index < end:
            end = index
    rest = target[end:]
    return target[start:end], rest if rest[:1] == b"/" else b"/" + rest


# RFC 3986 host: IP-literal, IPv4address or reg-name (unreserved,
# pct-encoded, sub-delims), then an optional ":" port of digits.
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]"
    rb"|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+)"
    rb"(?::[0-9]{0,5})?"
)


def isValidHost(value: bytes) -> bool:
    """
    Whether a C{Host} header (or C{:authority}) is RFC 3986 C{host[:port]}.

    An empty value is refused too: a proxy routes and rewrites by it.
    """
    return _HOST.fullmatch(value) is not None
