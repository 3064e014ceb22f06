"""
What a request's head alone rules out, before any backend is involved: the
proxy's refusals as plain values (status, message, headers to add), which the
front ends apply.

L{judgeHead} covers CONNECT (405), a forward-proxy request (403), a missing,
repeated or malformed Host, a target that cannot be normalised and a body over
the limit; a head that passes gets its target in normal form. L{refuseTrace}
and L{refuseHeaderCount} are the rules a route's C{trace} and the listener's
C{max_headers} make.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from twisted_proxy.core.requesttarget import (
    RequestTarget,
    TargetError,
    isValidHost,
    normalizeTarget,
    splitAbsoluteForm,
)

__all__ = [
    "ALLOWED_METHODS",
    "HeadRuling",
    "Refusal",
    "judgeHead",
    "namesThisProxy",
    "refuseHeaderCount",
    "refuseTrace",
]

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"
"""What the proxy says it allows (C{Allow}): in a 405, and for C{OPTIONS *}."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer C{status} with C{message}, adding C{headers} to the response."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class HeadRuling:
    """
    What L{judgeHead} made of a head. C{host} and C{target}, when set, are
    what the request now has, refused or not (the access log reports them);
    C{refusal} is None when the request may go on.
    """

    refusal: Refusal | None = None
    host: bytes | None = None
    """The Host header that replaces the request's: an absolute-form target's
    authority, naming this proxy (RFC 9112 3.2.2)."""
    target: RequestTarget | None = None
    """The normalised target; None for C{OPTIONS *} or when refused first."""


def judgeHead(
    method: bytes,
    version: bytes,
    uri: bytes,
    hosts: list[bytes] | None,
    length: int | None,
    maxBodyBytes: int,
    servesAuthority: Callable[[bytes], bool],
    mergeSlashes: bool = True,
) -> HeadRuling:
    """
    Judge a request head: C{hosts} are its Host header values (None: none),
    C{length} its body's length when known, C{servesAuthority} whether an
    absolute-form target's authority names this proxy (see
    L{namesThisProxy}). C{OPTIONS *} passes with no target: the front end
    answers it.
    """
    if method == b"CONNECT":
        return HeadRuling(
            Refusal(
                405,
                "CONNECT is not enabled on this listener",
                ((b"Allow", ALLOWED_METHODS),),
            )
        )
    if hosts is not None and len(hosts) > 1:
        return HeadRuling(Refusal(400, "more than one Host header"))
    if version == b"HTTP/1.1" and not hosts:
        return HeadRuling(Refusal(400, "missing Host header"))
    host = None
    if uri[:1] != b"/":
        if uri == b"*":
            if method != b"OPTIONS":
                return HeadRuling(Refusal(400, "the target * is only for OPTIONS"))
        else:
            parts = splitAbsoluteForm(uri)
            if parts is None:
                return HeadRuling(Refusal(400, "malformed request target"))
            authority, uri = parts
            if not isValidHost(authority):
                return HeadRuling(
                    Refusal(400, "malformed authority in the request target")
                )
            if not servesAuthority(authority):
                return HeadRuling(Refusal(403, "this is not a forward proxy"))
            # Absolute-form naming a host we serve: carry on in origin-form,
            # with the authority as the Host.
            host = authority
            hosts = [authority]
    if hosts and not isValidHost(hosts[0]):
        return HeadRuling(Refusal(400, "malformed Host header"), host)
    target = None
    if uri != b"*":
        try:
            target = normalizeTarget(uri, mergeSlashes)
        except TargetError as e:
            return HeadRuling(Refusal(400, str(e)), host)
    if maxBodyBytes and length is not None and length > maxBodyBytes:
        return HeadRuling(Refusal(413, "request body too large"), host, target)
    return HeadRuling(None, host, target)


def namesThisProxy(
    authority: bytes, hostNames: Collection[str], localHost: Callable[[], str | None]
) -> bool:
    """
    Whether an absolute-form target's C{authority} names this proxy: one of
    its C{hostNames} (server_name, the routes' hosts; C{*.example.com}
    matches below it), or the address the client connected to (C{localHost},
    asked only when no name matched).
    """
    host = authority.lower()
    if host.startswith(b"["):
        host = host[1:].split(b"]", 1)[0]
    elif host.count(b":") == 1:
        host = host.split(b":", 1)[0]
    if host.endswith(b"."):
        host = host[:-1]
    name = host.decode("latin-1")
    if name in hostNames:
        return True
    if any(name.endswith(n[1:]) for n in hostNames if n.startswith("*.")):
        return True
    return name == localHost()


def refuseTrace(method: bytes, allowed: bool) -> Refusal | None:
    """A TRACE on a route that does not pass it on: 405."""
    if method == b"TRACE" and not allowed:
        return Refusal(405, "TRACE is not allowed here", ((b"Allow", ALLOWED_METHODS),))
    return None


def refuseHeaderCount(fields: int, maxHeaders: int) -> Refusal | None:
    """More header fields than C{max_headers}: 400."""
    if fields > maxHeaders:
        return Refusal(400, f"more than {maxHeaders} header fields")
    return None
