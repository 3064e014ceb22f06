"""
What a CONNECT request may reach: the rules of a listener's
C{[listen.connect]}, as pure decisions (no reactor, no socket).

A CONNECT names its destination in authority form (C{host:port}, an IPv6
address in brackets). The listener lets it through when the client's address
is in C{allow_clients}, the port in C{allow_ports}, and the destination in
C{allow_destinations}:

 - a host-name entry allows a CONNECT to that name, at whatever address the
   name resolves to (the operator vouches for the name: list C{db.internal}
   to reach a database on a private address);
 - a CIDR entry allows a destination, given as an address or as a name,
   whose address lies inside it; but an address in a I{guarded} range
   (loopback, "this host", link-local, RFC 1918, unique-local) is allowed
   only by an entry that itself lies inside that range (C{10.0.0.0/8},
   C{127.0.0.1/32}), never by C{0.0.0.0/0}, C{::/0} or any wider entry.

The name is resolved once and the addresses it gave are judged one by one:
the tunnel connects only to an address judged here, so a name that resolves
elsewhere a moment later (DNS rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twisted_proxy.config.model import Network

__all__ = [
    "GUARDED",
    "Address",
    "Authority",
    "AuthorityError",
    "DestinationRules",
    "parseAuthority",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

GUARDED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this host": 0.0.0.0 reaches the proxy's own ports
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::/128",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    )
)
"""The ranges only an entry inside them reaches."""

# A reg-name (RFC 3986 3.2.2) as CONNECT targets use it: letters, digits,
# hyphens, dots and underscores; no percent-encoding, no userinfo.
_NAME_CHARS = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
)


class AuthorityError(ValueError):
    """A CONNECT target that is no C{host:port}."""


@dataclass(frozen=True)
class Authority:
    """A CONNECT target: C{host} lower-cased (no brackets), C{port}."""

    host: str
    port: int
    address: Address | None
    """The host as an IP address, when it is one (then nothing is resolved)."""

    def __str__(self) -> str:
        if isinstance(self.address, ipaddress.IPv6Address):
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parseAuthority(target: bytes) -> Authority:
    """
    Parse a CONNECT request target (RFC 9110 9.3.6: C{host:port}, the port
    required). Raises L{AuthorityError} with what is wrong.
    """
    if not target or len(target) > 261:
        raise AuthorityError("the target must be host:port")
    if target.startswith(b"["):
        end = target.find(b"]")
        if end < 0 or target[end + 1 : end + 2] != b":":
            raise AuthorityError("the target must be [IPv6 address]:port")
        rawHost, rawPort = target[1:end], target[end + 2 :]
        try:
            address: Address | None = ipaddress.IPv6Address(rawHost.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise AuthorityError("malformed IPv6 address in the target") from None
    else:
        rawHost, sep, rawPort = target.rpartition(b":")
        if not sep or not rawHost:
            raise AuthorityError("the target must be host:port")
        if not _NAME_CHARS.issuperset(rawHost) or b".." in rawHost:
            raise AuthorityError("malformed host name in the target")
        try:
            address = ipaddress.IPv4Address(rawHost.decode("ascii"))
        except ValueError:
            address = None
            if rawHost.startswith((b".", b"-")) or rawHost.replace(b".", b"").isdigit():
                raise AuthorityError("malformed host name in the target") from None
    if not rawPort.isdigit() or len(rawPort) > 5:
        raise AuthorityError("the target's port must be a number")
    port = int(rawPort)
    if not 0 < port < 65536:
        raise AuthorityError("the target's port must be 1-65535")
    host = str(address) if address is not None else rawHost.decode("ascii").lower()
    return Authority(host.rstrip(".") if address is None else host, port, address)


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


class DestinationRules:
    """
    A listener's C{allow_destinations}, judged per resolved address. The
    entries are host names (lower case, no trailing dot) and networks.
    """

    def __init__(self, names: Iterable[str], networks: Sequence[Network]) -> None:
        self.names = frozenset(n.lower().rstrip(".") for n in names)
        self._networks = tuple(networks)
        # For each guarded range, the entries that lie inside it.
        self._guarded = tuple(
            (guard, tuple(n for n in self._networks if _inside(n, guard)))
            for guard in GUARDED
        )

    def namesHost(self, host: str) -> bool:
        """Whether C{host} (a name, as L{parseAuthority} gives it) is listed."""
        return host in self.names

    def allows(self, host: str, address: Address) -> bool:
        """
        Whether a CONNECT to C{host} (as asked for) may reach C{address}
        (one address it resolved to, or the host itself when it is one).
        """
        if host in self.names:
            return True
        address = _plain(address)
        for guard, inside in self._guarded:
            if address in guard:
                return any(address in n for n in inside)
        return any(address in n for n in self._networks)

    def judge(
        self, host: str, addresses: Iterable[Address]
    ) -> tuple[list[Address], list[Address]]:
        """
        Split the addresses C{host} resolved to into those allowed and those
        refused, each in the order given (duplicates dropped).
        """
        allowed: list[Address] = []
        refused: list[Address] = []
        seen: set[Address] = set()
        for address in addresses:
            if address in seen:
                continue
            seen.add(address)
            (allowed if self.allows(host, address) else refused).append(address)
        return allowed, refused
