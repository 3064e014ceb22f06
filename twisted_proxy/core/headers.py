"""
Request and response header transforms: the rules mod_proxy_http applies.

Pure: header lists in, header lists out, no Twisted, no I/O. A header list is
C{list[tuple[bytes, bytes]]} of (name, value) in arrival order, names in
whatever case they came; names compare case-insensitively and repeated headers
(several C{Set-Cookie}) stay separate entries, in order.

The rewriters do their per-route work (name sets, encoded values, the headers
a directive replaces) once in their constructors, so the per-request work is
one pass over the headers with a set lookup per name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

from twisted_proxy.config.model import (
    HeaderDirectives,
    Network,
    ProxySettings,
    Route,
)
from twisted_proxy.config.schemes import BACKEND_SCHEMES
from twisted_proxy.core.headeractions import headerActions
from twisted_proxy.core.version import VERSION
from twisted_proxy.core.via import viaFor, viaValues

__all__ = [
    "HOP_BY_HOP",
    "ClientInfo",
    "RequestHeaderRewriter",
    "ResponseHeaderRewriter",
    "formatHostPort",
    "hasDuplicateHost",
    "removeHopByHop",
    "singleHeader",
]

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# A Connection header may name these, but removing them would change how the
# message is framed (a backend seeing a body with neither Content-Length nor
# Transfer-Encoding reads it as the next request), so they are never removed
# on a Connection token's say-so.
_UNREMOVABLE: frozenset[bytes] = frozenset({b"content-length"})

_FORWARDED_OTHERS: tuple[bytes, ...] = (
    b"x-forwarded-host",
    b"x-forwarded-server",
    b"x-forwarded-proto",
    b"x-forwarded-port",
)
_FORWARDED_ALL: frozenset[bytes] = frozenset({b"x-forwarded-for", *_FORWARDED_OTHERS})
# What else a client could claim about itself: dropped from an untrusted
# client, as its X-Forwarded-* are (RFC 7239's header and nginx's).
_CLIENT_CLAIMS: frozenset[bytes] = frozenset({b"forwarded", b"x-real-ip"})

# Bound on the per-rewriter cache of "is this client address a trusted proxy".
_TRUST_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """
    What the proxy knows about the client's side of one request.

    :ivar address: the peer's IP address, as text (C{"192.0.2.7"}, C{"::1"}).
    :ivar scheme: C{"http"} or C{"https"}, as the client connected.
    :ivar port: the port of the listener the client connected to.
    :ivar host: the client's C{Host} header value, or L{None} when it sent none.
    """

    address: str
    scheme: str
    port: int
    host: bytes | None


def _connectionTokens(value: bytes, into: set[bytes]) -> None:
    """Add the lowercased comma-separated tokens of a Connection value to C{into}."""
    for token in value.split(b","):
        token = token.strip(b" \t").lower()
        if token:
            into.add(token)


def _extraTokens(tokens: set[bytes]) -> set[bytes]:
    """The Connection tokens that name headers not already being removed."""
    return tokens - HOP_BY_HOP - _UNREMOVABLE


def removeHopByHop(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """
    Return C{headers} without the hop-by-hop headers.

    Those are L{HOP_BY_HOP} and every header named by a token of any
    C{Connection} header (except C{Content-Length}, which frames the message).
    """
    return _without(headers, HOP_BY_HOP)


def _without(
    headers: Iterable[tuple[bytes, bytes]],
    drop: Set[bytes],
    underscores: bool = True,
    priorXFF: list[bytes] | None = None,
) -> Headers:
    """
    C{headers} without those named in C{drop} (which has C{connection}) and
    those named by a C{Connection} token; without names that have an
    underscore unless C{underscores}. The dropped C{X-Forwarded-For} values
    go to C{priorXFF} when it is given (none when Connection names it).
    """
    kept: Headers = []
    tokens: set[bytes] | None = None
    for item in headers:
        lower = item[0].lower()
        if not underscores and b"_" in lower:
            # X_Forwarded_For, Content_Length: many backends (CGI, WSGI,
            # PHP) read "_" as "-", so such a name could stand in for a
            # header the proxy controls; dropped, as nginx does.
            continue
        if lower in drop:
            if lower == b"connection":
                if tokens is None:
                    tokens = set()
                _connectionTokens(item[1], tokens)
            elif priorXFF is not None and lower == b"x-forwarded-for":
                priorXFF.append(item[1])
            continue
        kept.append(item)
    if tokens is not None:
        extra = _extraTokens(tokens)
        if extra:
            kept = [item for item in kept if item[0].lower() not in extra]
            if priorXFF is not None and b"x-forwarded-for" in extra:
                priorXFF.clear()
    return kept


def singleHeader(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """Return the value of the first header called C{name}, or L{None}."""
    name = name.lower()
    for headerName, value in headers:
        if headerName.lower() == name:
            return value
    return None


def hasDuplicateHost(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """
    Whether C{headers} holds more than one C{Host} header (names compared
    case-insensitively).

    A request like that is ambiguous (RFC 9112 section 3.2 requires a 400).
    The front ends do not ask here: their head check
    (L{twisted_proxy.core.refusal}) refuses it before anything is rewritten.
    """
    seen = False
    for name, _ in headers:
        if name.lower() == b"host":
            if seen:
                return True
            seen = True
    return False


def formatHostPort(host: str, port: int, scheme: str) -> bytes:
    """
    Return the C{Host} header value for C{host}:C{port} reached over C{scheme}.

    The port is left out when it is the scheme's default; IPv6 literals are
    bracketed.
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    hostBytes = host.encode("ascii") if host.isascii() else host.encode("idna")
    known = BACKEND_SCHEMES.get(scheme)
    if known is not None and known.port == port:
        return hostBytes
    return b"%s:%d" % (hostBytes, port)


def _checkValue(what: str, value: bytes) -> bytes:
    """Refuse a configured header value that would split or end a header."""
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise ValueError(f"{what}: header values may not contain CR, LF or NUL")
    return value


def _directives(
    directives: HeaderDirectives, what: str
) -> tuple[frozenset[bytes], tuple[tuple[bytes, bytes], ...]]:
    """
    Encode header directives once.

    Returns the lowercased names they remove (unset and set alike, since set
    replaces) and the headers set adds, one per name, the last C{set} of a
    name winning.
    """
    setHeaders: dict[bytes, tuple[bytes, bytes]] = {}
    for name, value in directives.set:
        encodedName = name.encode("ascii")
        setHeaders[encodedName.lower()] = (
            encodedName,
            _checkValue(f"{what}.set.{name}", value.encode("utf-8")),
        )
    removed = frozenset(
        {name.encode("ascii").lower() for name in directives.unset} | set(setHeaders)
    )
    return removed, tuple(setHeaders.values())


class RequestHeaderRewriter:
    """
    Turn a client's request headers into the headers sent to one route's backend.

    Built once per route. L{rewrite} removes hop-by-hop headers and header
    names with an underscore, sets C{Host}, replaces C{X-Forwarded-*} (and
    drops an untrusted client's C{Forwarded} and C{X-Real-IP}), adds C{Via},
    then applies the route's C{RequestHeader} directives (which win over
    everything the proxy added) in the order edit, edit_all, unset, set,
    append, add.

    The headers the proxy adds come after the client's C{Connection} tokens
    have been applied, so C{Connection: X-Forwarded-For} cannot strip them.
    Output order: C{Host}, the client's surviving headers in order, the
    C{X-Forwarded-*} headers, C{Via}, the C{set} directives, a new field of
    an C{append}, the C{add} directives.
    """

    def __init__(
        self, settings: ProxySettings, route: Route, upstreamHost: bytes
    ) -> None:
        """
        :param upstreamHost: the C{host[:port]} to send as C{Host} when the
            client's is not preserved (default port omitted; see
            L{formatHostPort}). L{rewrite} may override it per request, for a
            balancer member.
        """
        self._upstreamHost = upstreamHost
        self._preserveHost = (
            settings.preserve_host
            if route.preserve_host is None
            else route.preserve_host
        )
        self._serverName = _checkValue(
            "proxy.server_name", settings.server_name.encode("utf-8")
        )
        self._trustedProxies: tuple[Network, ...] = settings.trusted_proxies
        self._trustCache: dict[str, bool] = {}

        what = f"route[{route.index}].request_headers"
        removed, self._setHeaders = _directives(route.request_headers, what)
        self._actions = headerActions(route.request_headers, self._setHeaders, what)
        self._emitHost = b"host" not in removed
        self._forwarded = settings.forwarded_headers
        self._emitForwarded = {
            name: name not in removed
            for name in (b"x-forwarded-for", *_FORWARDED_OTHERS)
        }
        self._emitXFF = self._forwarded and self._emitForwarded[b"x-forwarded-for"]

        # Always removed from the client's headers: hop-by-hop, Host (the
        # proxy sets it), Expect (this hop says what it expects of the next),
        # everything a directive unsets or replaces.
        base = set(HOP_BY_HOP) | {b"host", b"expect"} | removed
        if settings.via == "block":
            base.add(b"via")
        # From an untrusted client every X-Forwarded-* is the proxy's own; a
        # trusted proxy's are kept, except For, which is collected and extended.
        if self._forwarded:
            self._dropUntrusted = frozenset(base | _FORWARDED_ALL | _CLIENT_CLAIMS)
            self._dropTrusted = frozenset(base | {b"x-forwarded-for"})
        else:
            self._dropUntrusted = self._dropTrusted = frozenset(base)

        self._via = (
            viaValues(settings.via, self._serverName) if b"via" not in removed else None
        )

    def _isTrusted(self, address: str) -> bool:
        """Whether C{address} lies within one of the trusted proxy networks."""
        cached = self._trustCache.get(address)
        if cached is not None:
            return cached
        trusted = False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            pass
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                mapped = ip.ipv4_mapped
                trusted = any(mapped in net for net in self._trustedProxies)
            trusted = trusted or any(ip in net for net in self._trustedProxies)
        if len(self._trustCache) >= _TRUST_CACHE_SIZE:
            self._trustCache.clear()
        self._trustCache[address] = trusted
        return trusted

    def rewrite(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        client: ClientInfo,
        upstreamHost: bytes | None = None,
        clientVersion: bytes = b"HTTP/1.1",
    ) -> Headers:
        """
        Return the headers to send upstream for a request with C{headers}.

        :param client: who asked; C{client.host} is the original C{Host}.
        :param upstreamHost: this request's backend C{host[:port]} when it
            differs from the route's (a balancer member).
        :param clientVersion: the client's protocol, for C{Via}.
        """
        trusted = (
            self._forwarded
            and bool(self._trustedProxies)
            and self._isTrusted(client.address)
        )
        drop = self._dropTrusted if trusted else self._dropUntrusted

        priorXFF: list[bytes] | None = [] if trusted and self._emitXFF else None
        kept = _without(headers, drop, False, priorXFF)

        out: Headers = []
        if self._emitHost:
            if self._preserveHost:
                # An HTTP/1.0 client may send no Host: the public name, then,
                # as Apache does, never the backend's own address.
                host = client.host if client.host is not None else self._serverName
            elif upstreamHost is not None:
                host = upstreamHost
            else:
                host = self._upstreamHost
            out.append((b"Host", host))
        out.extend(kept)

        if self._forwarded:
            self._addForwarded(out, kept, client, trusted, priorXFF)

        if self._via is not None:
            out.append((b"Via", viaFor(self._via, clientVersion)))
        if self._actions is not None:
            return self._actions.apply(out)
        out.extend(self._setHeaders)
        return out

    def _addForwarded(
        self,
        out: Headers,
        kept: Headers,
        client: ClientInfo,
        trusted: bool,
        priorXFF: list[bytes] | None,
    ) -> None:
        """Append the X-Forwarded-* headers for C{client} to C{out}."""
        emit = self._emitForwarded
        address = client.address.encode("utf-8")
        if self._emitXFF:
            if priorXFF:
                chain = b", ".join([v for v in priorXFF if v.strip()] + [address])
            else:
                chain = address
            out.append((b"X-Forwarded-For", chain))

        # A trusted proxy's own X-Forwarded-Host/-Server/-Proto/-Port survive
        # in C{kept}; add ours only for the ones it did not send.
        present: set[bytes] = set()
        if trusted:
            for name, _ in kept:
                lower = name.lower()
                if lower in _FORWARDED_ALL:
                    present.add(lower)

        if (
            client.host is not None
            and emit[b"x-forwarded-host"]
            and b"x-forwarded-host" not in present
        ):
            out.append((b"X-Forwarded-Host", client.host))
        if emit[b"x-forwarded-server"] and b"x-forwarded-server" not in present:
            out.append((b"X-Forwarded-Server", self._serverName))
        if emit[b"x-forwarded-proto"] and b"x-forwarded-proto" not in present:
            out.append((b"X-Forwarded-Proto", client.scheme.encode("ascii")))
        if emit[b"x-forwarded-port"] and b"x-forwarded-port" not in present:
            out.append((b"X-Forwarded-Port", b"%d" % (client.port,)))


class ResponseHeaderRewriter:
    """
    Turn a backend's response headers into the headers sent to the client.

    Built once from the C{[proxy]} settings. L{rewrite} removes hop-by-hop
    headers, replaces the backend's C{Server} per C{server_tokens}, appends or
    blocks C{Via}, then applies C{[proxy.response_headers]} in the order
    edit, edit_all, unset, set, append, add. Output order: the backend's
    surviving headers in order, C{Server}, C{Via}, the C{set} directives, a
    new field of an C{append}, the C{add} directives.

    The caller handles C{101 Switching Protocols} itself: there C{Upgrade} and
    C{Connection} must reach the client.
    """

    def __init__(
        self, settings: ProxySettings, twistedVersion: str | None = None
    ) -> None:
        """
        :param twistedVersion: the Twisted version to name in C{Server} when
            C{server_tokens = "full"} (pass C{twisted.copyright.version}); left
            out when L{None}, which keeps this module free of Twisted.
        """
        serverName = _checkValue(
            "proxy.server_name", settings.server_name.encode("utf-8")
        )
        what = "proxy.response_headers"
        removed, self._setHeaders = _directives(settings.response_headers, what)
        self._actions = headerActions(settings.response_headers, self._setHeaders, what)
        drop = set(HOP_BY_HOP) | {b"server"} | removed
        if settings.via == "block":
            drop.add(b"via")
        self._drop = frozenset(drop)

        self._server: bytes | None = None
        if b"server" not in removed:
            if settings.server_tokens == "prod":
                self._server = b"twisted-proxy"
            elif settings.server_tokens == "full":
                full = f"twisted-proxy/{VERSION}"
                if twistedVersion is not None:
                    full += f" Twisted/{twistedVersion}"
                self._server = _checkValue("server_tokens", full.encode("ascii"))

        self._via = (
            viaValues(settings.via, serverName) if b"via" not in removed else None
        )

    @property
    def server(self) -> bytes | None:
        """The C{Server} header's value (server_tokens), or None when none is sent."""
        return self._server

    def rewrite(
        self, headers: Sequence[tuple[bytes, bytes]], clientVersion: bytes = b"HTTP/1.1"
    ) -> Headers:
        """
        Return the headers to send the client for a response with C{headers}.

        :param clientVersion: the protocol version named in the appended C{Via}.
        """
        kept = _without(headers, self._drop)
        if self._server is not None:
            kept.append((b"Server", self._server))
        if self._via is not None:
            kept.append((b"Via", viaFor(self._via, clientVersion)))
        if self._actions is not None:
            return self._actions.apply(kept)
        kept.extend(self._setHeaders)
        return kept
