"""
Client address access lists: ``allow``/``deny`` CIDRs of a route or listener.

Pure and per request: networks are reduced to integer masks once.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from twisted_proxy.config.model import Network

__all__ = ["AccessList"]

_Masks = tuple[tuple[int, int], ...]


def _masks(networks: Sequence[Network], version: int) -> _Masks:
    """Return (network, netmask) integer pairs for the networks of one IP version."""
    return tuple(
        (int(n.network_address), int(n.netmask))
        for n in networks
        if n.version == version
    )


def _parse(address: str) -> tuple[int, int] | None:
    """
    Return (IP version, address as an integer), or C{None} for a non-IP address.

    IPv4-mapped IPv6 addresses come back as IPv4; brackets and zones are dropped.
    """
    try:
        return 4, int(IPv4Address(address))
    except ValueError:
        pass
    if address.startswith("["):
        address = address[1:].split("]", 1)[0]
    address = address.split("%", 1)[0]
    try:
        ip = IPv6Address(address)
    except ValueError:
        return None
    if ip.ipv4_mapped is not None:
        return 4, int(ip.ipv4_mapped)
    return 6, int(ip)


def _within(value: int, masks: _Masks) -> bool:
    """Tell whether an address (as an integer) is in any of the networks."""
    return any(value & mask == network for network, mask in masks)


class AccessList:
    """
    Who may use a route: ``deny`` wins; an empty ``allow`` lets everyone else in.

    An address that is not an IP address (a UNIX socket peer, garbage) is permitted
    only when the list restricts nothing at all. IPv4-mapped IPv6 addresses
    (``::ffff:127.0.0.1``) are checked as the IPv4 address they carry.
    """

    def __init__(self, allow: Sequence[Network], deny: Sequence[Network]) -> None:
        self.unrestricted = not allow and not deny
        self._allowAll = not allow
        self._allow = {4: _masks(allow, 4), 6: _masks(allow, 6)}
        self._deny = {4: _masks(deny, 4), 6: _masks(deny, 6)}

    def permits(self, address: str) -> bool:
        """Tell whether a client at C{address} (an IP address string) is let in."""
        if self.unrestricted:
            return True
        parsed = _parse(address)
        if parsed is None:
            return False
        version, value = parsed
        if _within(value, self._deny[version]):
            return False
        return self._allowAll or _within(value, self._allow[version])
