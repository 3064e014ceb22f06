"""
The handshake a C{[listen.tls]} table asks for: TLS versions and cipher
suites, and what is weaker than the defaults.

The defaults are Mozilla's "intermediate" profile. An operator bringing an
Apache C{SSLProtocol all -SSLv3} or a legacy C{SSLCipherSuite} may loosen
them: C{min_version = "1.0"} or C{"1.1"} really lets those clients in
(OpenSSL 3 refuses TLS below 1.2 above security level 0, so the cipher
string gets C{@SECLEVEL=0}, and without C{ciphers} the suites are
Mozilla's "old" list, since the intermediate list has none that TLS 1.0 or
1.1 can use), and C{ciphers} takes any string OpenSSL takes. Each such
setting is honoured and said as a warning (L{weakTLSWarnings}) by
C{twisted-proxy check} and at start.
"""

from __future__ import annotations

from OpenSSL import SSL

from twisted_proxy.config.model import Config, ListenerTLS, TLSVersion

__all__ = [
    "DEFAULT_MIN_VERSION",
    "INTERMEDIATE_CIPHERS",
    "INTERMEDIATE_GROUPS",
    "OLD_CIPHERS",
    "VERSIONS",
    "cipherProblem",
    "cipherString",
    "enabledCiphers",
    "weakTLSWarnings",
]

# Mozilla's "intermediate" configuration (version 5.7): the TLS 1.2 suites.
# TLS 1.3 suites are OpenSSL's defaults, which are the profile's.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
INTERMEDIATE_GROUPS = "X25519:prime256v1:secp384r1"

# Mozilla's "old" configuration (version 5.7), for TLS 1.0 to 1.2 clients:
# the intermediate suites, then CBC ones. A suite this OpenSSL does not have
# (3DES, in OpenSSL 4) is left out by OpenSSL itself.
OLD_CIPHERS = ":".join(
    (
        INTERMEDIATE_CIPHERS,
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-RSA-AES256-SHA384",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "DHE-RSA-AES128-SHA256",
        "DHE-RSA-AES256-SHA256",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA256",
        "AES256-SHA256",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    )
)

VERSIONS: dict[TLSVersion, int] = {
    "1.0": SSL.TLS1_VERSION,
    "1.1": SSL.TLS1_1_VERSION,
    "1.2": SSL.TLS1_2_VERSION,
    "1.3": SSL.TLS1_3_VERSION,
}
DEFAULT_MIN_VERSION: TLSVersion = ListenerTLS(certificate="", key="").min_version

# How many of the extra suites a warning names before "and N more".
_NAMED = 8


def _legacy(tls: ListenerTLS) -> bool:
    """Whether C{tls} lets in TLS older than the default minimum."""
    return VERSIONS[tls.min_version] < VERSIONS[DEFAULT_MIN_VERSION]


def cipherString(tls: ListenerTLS) -> str:
    """
    The OpenSSL cipher string a listener's contexts get: C{ciphers}, or the
    profile's list; below TLS 1.2 at security level 0 (unless the string
    names a level itself), without which OpenSSL 3 refuses TLS 1.0 and 1.1.
    """
    legacy = _legacy(tls)
    ciphers = tls.ciphers or (OLD_CIPHERS if legacy else INTERMEDIATE_CIPHERS)
    if legacy and "@SECLEVEL=" not in ciphers.upper():
        ciphers += ":@SECLEVEL=0"
    return ciphers


def enabledCiphers(ciphers: str) -> list[str]:
    """
    The suites OpenSSL enables with the cipher string C{ciphers}, in its
    order of preference (TLS 1.3's first).

    :raise SSL.Error: when OpenSSL takes no suite from it.
    :raise UnicodeEncodeError: when it is not ASCII.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_cipher_list(ciphers.encode("ascii"))
    return SSL.Connection(context, None).get_cipher_list()


def cipherProblem(tls: ListenerTLS) -> str | None:
    """Why OpenSSL cannot use C{tls.ciphers}, or None."""
    if tls.ciphers is None:
        return None
    try:
        enabledCiphers(cipherString(tls))
    except UnicodeEncodeError:
        return "a cipher string is ASCII"
    except SSL.Error as e:
        reasons = [str(r[2]) for r in e.args[0] if len(r) == 3] if e.args else []
        why = "; ".join(reasons) or "refused"
        return f"OpenSSL enables no cipher suite with this string ({why})"
    return None


def weakTLSWarnings(config: Config) -> tuple[str, ...]:
    """
    What each C{[listen.tls]} of C{config} loosens from the defaults, one
    warning a key, each naming its key path: a C{min_version} below
    L{DEFAULT_MIN_VERSION}, and C{ciphers} enabling any suite the default
    list does not (compared as OpenSSL expands both strings) on a listener
    that takes TLS 1.2. A cipher string OpenSSL refuses is
    L{cipherProblem}'s, not a warning.
    """
    warnings: list[str] = []
    for listener in config.listen:
        if listener.tls is not None:
            warnings.extend(_listenerWarnings(listener.tls))
    return tuple(warnings)


def _listenerWarnings(tls: ListenerTLS) -> list[str]:
    warnings = []
    if _legacy(tls):
        allowed = "TLS 1.0 and 1.1 are" if tls.min_version == "1.0" else "TLS 1.1 is"
        how = "at OpenSSL security level 0"
        if tls.ciphers is None:
            how += (
                ', with Mozilla\'s "old" cipher list (CBC suites with SHA-1)'
                " since ciphers is not set"
            )
        warnings.append(
            f'{tls.where}.min_version: "{tls.min_version}" is weaker than the'
            f' default "{DEFAULT_MIN_VERSION}": {allowed} let in (deprecated by'
            f" RFC 8996), {how}"
        )
    # With TLS 1.3 only, the string's suites are never negotiated.
    if tls.ciphers is not None and tls.min_version != "1.3":
        try:
            enabled = enabledCiphers(cipherString(tls))
        except (SSL.Error, UnicodeEncodeError):
            return warnings
        default = set(enabledCiphers(INTERMEDIATE_CIPHERS))
        extra = [name for name in enabled if name not in default]
        if extra:
            named = ", ".join(extra[:_NAMED])
            if len(extra) > _NAMED:
                named += f" and {len(extra) - _NAMED} more"
            warnings.append(
                f"{tls.where}.ciphers: enables ciphers outside the default"
                f" list: {named}"
            )
    return warnings
