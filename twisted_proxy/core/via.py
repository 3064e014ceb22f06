"""
The C{Via} header the proxy appends (Apache's C{ProxyVia}): C{via = "on"}
names this proxy, C{"full"} adds its version; C{"off"} and C{"block"} append
nothing (C{"block"} also removes the backend's, which the rewriters do).

Pure: the values are worked out once per rewriter, per protocol version.
"""

from __future__ import annotations

from twisted_proxy.core.version import VERSION

__all__ = ["viaFor", "viaValues"]

_VIA_VERSIONS: dict[bytes, bytes] = {
    b"HTTP/1.0": b"1.0",
    b"HTTP/1.1": b"1.1",
    b"HTTP/2": b"2",
    b"HTTP/2.0": b"2",
}


def viaValues(mode: str, serverName: bytes) -> dict[bytes, bytes] | None:
    """
    The Via value the proxy appends, per received protocol version.

    L{None} when C{mode} adds nothing.
    """
    if mode == "on":
        suffix = b" " + serverName
    elif mode == "full":
        suffix = b" %s (twisted-proxy/%s)" % (serverName, VERSION.encode("ascii"))
    else:
        return None
    return {version: short + suffix for version, short in _VIA_VERSIONS.items()}


def viaFor(values: dict[bytes, bytes], clientVersion: bytes) -> bytes:
    """Pick the Via value for C{clientVersion}, treating unknown versions as 1.1."""
    value = values.get(clientVersion)
    return value if value is not None else values[b"HTTP/1.1"]
