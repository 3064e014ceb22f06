"""
The one place pyOpenSSL's private binding is used.

pyOpenSSL has no call to limit the key-exchange groups a context offers
(OpenSSL's C{SSL_CTX_set1_groups_list}, spelled C{set1_curves_list} in the
bindings cryptography ships); Mozilla's profiles require the list, so it is
set through the binding here. Only cryptography 47 and later bind it, which is
why pyproject.toml declares that floor. A binding without it (an older
cryptography that a distribution or another package's pin put in place)
leaves OpenSSL's default groups on and logs one warning saying so, instead of
stopping every TLS listener from starting; the tests check that the limit
holds in a handshake wherever the binding has it.
"""

from __future__ import annotations

import cryptography
import OpenSSL
from OpenSSL import SSL
from OpenSSL._util import lib as _lib  # type: ignore[attr-defined]
from twisted.logger import Logger

_log = Logger()
# The binding's names for the call, newest spelling first.
_SETTERS = ("SSL_CTX_set1_groups_list", "SSL_CTX_set1_curves_list")
# Whether the fallback has been logged: once per process is enough, not once
# per certificate or reload.
_warned = False


def setGroups(context: SSL.Context, groups: str) -> bool:
    """
    Offer only C{groups} (C{"X25519:prime256v1"}) for key exchange. Return
    False, with OpenSSL's default groups left on and a warning logged the
    first time, when the binding cannot set them.
    """
    for name in _SETTERS:
        setter = getattr(_lib, name, None)
        if setter is not None:
            break
    else:
        _warnNoSetter(groups)
        return False
    if not setter(
        context._context,  # type: ignore[attr-defined]
        groups.encode("ascii"),
    ):
        raise SSL.Error([("", "SSL_CTX_set1_groups_list", f"bad groups {groups}")])
    return True


def _warnNoSetter(groups: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    _log.warn(
        "TLS: cryptography {cryptography} (with pyOpenSSL {pyopenssl}, "
        "{openssl}) has no binding for SSL_CTX_set1_groups_list, so TLS "
        "listeners offer OpenSSL's default key-exchange groups instead of "
        "{groups}; install cryptography>=47 to limit them",
        cryptography=cryptography.__version__,
        pyopenssl=OpenSSL.__version__,
        openssl=SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace"),
        groups=groups,
    )


__all__ = ["setGroups"]
