"""The one scheme table: wire scheme, default port, TLS, for each backend scheme."""

from __future__ import annotations

import pytest

from twisted_proxy.config.schemes import (
    BACKEND_SCHEMES,
    defaultPort,
    isTLS,
    scheme,
    wireScheme,
)


@pytest.mark.parametrize(
    ("name", "wire", "port", "tls"),
    [
        ("http", "http", 80, False),
        ("https", "https", 443, True),
        ("ws", "http", 80, False),
        ("wss", "https", 443, True),
        ("ajp", "ajp", 8009, False),
    ],
)
def test_table(name: str, wire: str, port: int, tls: bool) -> None:
    """Each scheme's wire scheme, port and TLS, by str or bytes, any case."""
    assert (wireScheme(name), defaultPort(name), isTLS(name)) == (wire, port, tls)
    upper = name.upper().encode()
    assert (wireScheme(upper), defaultPort(upper), isTLS(upper)) == (wire, port, tls)
    assert scheme(name).websocket is name.startswith("ws")


def test_onlyBackendSchemes() -> None:
    """Schemes no backend may have are not in the table."""
    assert set(BACKEND_SCHEMES) == {"http", "https", "ws", "wss", "ajp"}
    with pytest.raises(KeyError):
        scheme("ftp")
