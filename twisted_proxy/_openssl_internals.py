"""
The one place pyOpenSSL's private binding is used.

pyOpenSSL has no call to limit the key-exchange groups a context offers
(OpenSSL's C{SSL_CTX_set1_groups_list}, spelled C{set1_curves_list} in the
bindings cryptography ships); Mozilla's profiles require the list, so it is
set through the binding here. A pyOpenSSL without it makes start-up fail
loudly, and the tests check that the limit holds in a handshake.
"""

from __future__ import annotations

from OpenSSL import SSL
from OpenSSL._util import lib as _lib  # type: ignore[attr-defined]


def setGroups(context: SSL.Context, groups: str) -> None:
    """Offer only C{groups} (C{"X25519:prime256v1"}) for key exchange."""
    if not _lib.SSL_CTX_set1_curves_list(
        context._context,  # type: ignore[attr-defined]
        groups.encode("ascii"),
    ):
        raise SSL.Error([("", "SSL_CTX_set1_groups_list", f"bad groups {groups}")])


__all__ = ["setGroups"]
