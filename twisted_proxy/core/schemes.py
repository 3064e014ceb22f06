"""
The backend URL schemes, as core's modules name them: the table itself is
vocabulary of the configuration (which schemes a backend URL may have, their
default ports) and lives in L{twisted_proxy.config.schemes}.
"""

from __future__ import annotations

from twisted_proxy.config.schemes import (
    BACKEND_SCHEMES,
    Scheme,
    defaultPort,
    isTLS,
    scheme,
    wireScheme,
)

__all__ = ["BACKEND_SCHEMES", "Scheme", "defaultPort", "isTLS", "scheme", "wireScheme"]
