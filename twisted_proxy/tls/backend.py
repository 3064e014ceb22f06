"""
TLS to backends: how an https:// backend's certificate is checked, and what
to say when it is refused.

A backend's certificate must chain to the system trust store (or to the
route's or member's C{tls_ca} file) and name the backend's host: a DNS-ID for
a name, an IP-ID for an address, checked by service_identity as
C{optionsForClientTLS} does. SNI carries the host name, never an address
(RFC 6066). C{tls_verify = false} keeps SNI and checks nothing.

The creator is ours rather than C{optionsForClientTLS}'s for two reasons,
both seen with Twisted 26.10: its verify callback lets OpenSSL report every
chain problem as "certificate verify failed" (an expired certificate and an
unknown CA read the same; the X.509 error code is visible only inside the
callback, which it owns), and it catches only service_identity's
C{VerificationError}, so a trusted certificate with no subjectAltName at all
(service_identity's C{CertificateError}) is logged and then accepted for any
host. Here both are refusals, each with its own reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.config.model import Balancer, Route
from twisted_proxy.config.schemes import BACKEND_SCHEMES, isTLS

_log = Logger()

_codes = SSL.X509VerificationCodes

_VerifyCallback = Callable[[SSL.Connection, X509, int, int, int], bool]

# OpenSSL's own words (X509_verify_cert_error_string) for the errors a
# backend's chain most often has; any other code is shown as a number.
_X509_ERRORS = {
    _codes.ERR_UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
    _codes.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: (
        "unable to get local issuer certificate"
    ),
    _codes.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: (
        "unable to verify the first certificate"
    ),
    _codes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
    _codes.ERR_SELF_SIGNED_CERT_IN_CHAIN: (
        "self-signed certificate in certificate chain"
    ),
    _codes.ERR_CERT_UNTRUSTED: "certificate not trusted",
    _codes.ERR_INVALID_CA: "invalid CA certificate",
    _codes.ERR_CERT_HAS_EXPIRED: "certificate has expired",
    _codes.ERR_CERT_NOT_YET_VALID: "certificate is not yet valid",
    _codes.ERR_CERT_SIGNATURE_FAILURE: "certificate signature failure",
    _codes.ERR_INVALID_PURPOSE: "unsupported certificate purpose",
    _codes.ERR_CERT_REJECTED: "certificate rejected",
    _codes.ERR_CERT_REVOKED: "certificate revoked",
    _codes.ERR_PATH_LENGTH_EXCEEDED: "path length constraint exceeded",
    _codes.ERR_CERT_CHAIN_TOO_LONG: "certificate chain too long",
}
# The codes that mean "no trusted CA vouches for it", as opposed to a
# certificate that chains but is refused (expired, wrong purpose, ...).
_UNTRUSTED = frozenset(
    {
        _codes.ERR_UNABLE_TO_GET_ISSUER_CERT,
        _codes.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        _codes.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        _codes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
        _codes.ERR_SELF_SIGNED_CERT_IN_CHAIN,
        _codes.ERR_CERT_UNTRUSTED,
    }
)
# OpenSSL's reasons when the peer did not answer with TLS at all.
_NOT_TLS = ("wrong version number", "packet length too long", "http request")


class TLSPolicy(NamedTuple):
    """How a backend's certificate is checked; part of the pool's key."""

    ca: str | None = None
    """The CA file it must chain to; None: the system trust store."""
    verify: bool = True
    """False: not checked at all (C{tls_verify = false})."""


class CertificateChainError(Exception):
    """
    The backend's chain failed OpenSSL's checks: C{code} is the X.509 error
    (C{X509VerificationCodes}), C{depth} the certificate's place (0: leaf).
    """

    def __init__(self, code: int, depth: int) -> None:
        super().__init__(code, depth)
        self.code = code
        self.depth = depth


class BackendTLSError(Exception):
    """A TLS connection to a backend could not be set up; str() says why."""


class HandshakeTimeoutError(BackendTLSError):
    """The backend accepted the TCP connection but did not finish the handshake."""


class BackendCAError(Exception):
    """A C{tls_ca} file cannot be used; str() names the file and the problem."""


def failureReason(error: BaseException, host: str) -> str:
    """
    A short reason, for the log, why a TLS connection to C{host} failed with
    C{error} (what the connection was lost with during the handshake).
    """
    if isinstance(error, CertificateChainError):
        text = _X509_ERRORS.get(error.code, f"X.509 error {error.code}")
        if error.depth > 0:
            text += f" at chain depth {error.depth}"
        if error.code in _UNTRUSTED:
            return f"certificate not trusted ({text})"
        return f"certificate refused ({text})"
    if isinstance(error, VerificationError):
        return f"certificate does not match {_hostKind(host)} {host}"
    if isinstance(error, CertificateError):
        return (
            f"certificate names no subjectAltName, so it cannot match "
            f"{_hostKind(host)} {host}"
        )
    if isinstance(error, SSL.Error):
        reasons = _sslReasons(error)
        if "certificate verify failed" in reasons:
            return "certificate not trusted (certificate verify failed)"
        text = "; ".join(reasons) or str(error)
        if any(r in reasons for r in _NOT_TLS):
            return f"handshake failed ({text}): is this port speaking TLS?"
        return f"handshake failed ({text})"
    if isinstance(error, ConnectionClosed):
        return "handshake failed (backend closed the connection)"
    return f"handshake failed ({error or error.__class__.__name__})"


def _hostKind(host: str) -> str:
    return "IP address" if _isAddress(host) else "host name"


def _isAddress(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _idna(host: str) -> bytes | None:
    """C{host} as SNI wants it; None (no SNI) for a name IDNA cannot encode."""
    try:
        return host.encode("idna")
    except UnicodeError:
        return None


def _sslReasons(error: SSL.Error) -> list[str]:
    """OpenSSL's reason strings in an C{SSL.Error}."""
    queue = error.args[0] if error.args else None
    if not isinstance(queue, list):
        return []
    return [str(entry[2]) for entry in queue if len(entry) == 3 and entry[2]]


@implementer(IOpenSSLClientConnectionCreator)
class BackendTLSCreator:
    """
    Client TLS connections to one backend host under one policy: SNI for a
    DNS name, and (when verifying) the chain and the name checked in
    OpenSSL's verify callback, a refusal reported through
    C{failVerification} so the connection is lost with its reason.
    """

    def __init__(self, host: str, context: SSL.Context, verify: bool) -> None:
        self.host = host
        self.verify = verify
        self._context = context
        self._address = _isAddress(host)
        # Literal addresses are not sent as SNI (RFC 6066 section 3).
        self._serverName = None if self._address else _idna(host)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A client connection for C{tlsProtocol} (a TLSMemoryBIOProtocol)."""
        connection = SSL.Connection(self._context, None)
        connection.set_connect_state()
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName)
        if self.verify:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                self._verifier(tlsProtocol),
            )
        return connection

    def _verifier(self, tlsProtocol: Any) -> _VerifyCallback:
        host = self.host
        checkName = (
            verify_certificate_ip_address
            if self._address
            else verify_certificate_hostname
        )

        def verify(
            connection: SSL.Connection, cert: X509, code: int, depth: int, ok: int
        ) -> bool:
            try:
                if not ok:
                    tlsProtocol.failVerification(
                        Failure(CertificateChainError(code, depth))
                    )
                    return False
                if depth == 0:
                    checkName(cert.to_cryptography(), host)
                return True
            except (VerificationError, CertificateError):
                tlsProtocol.failVerification(Failure())
                return False
            except BaseException:
                # An exception must not escape into OpenSSL: log it, refuse.
                _log.failure("while verifying the certificate of {host}", host=host)
                return False

        return verify


class BackendTLS:
    """
    The client TLS creators for backends, one per (host, policy), sharing one
    OpenSSL context per policy, so a C{tls_ca} file is read once.

    :param trustStore: makes the system trust store (C{platformTrust}; an
        C{IOpenSSLTrustRoot}, which Twisted does not export).
    """

    def __init__(self, trustStore: Callable[[], Any] = platformTrust) -> None:
        self._trustStore = trustStore
        self._contexts: dict[TLSPolicy, SSL.Context] = {}
        self._creators: dict[tuple[str, TLSPolicy], BackendTLSCreator] = {}

    def creatorFor(self, host: str, policy: TLSPolicy) -> BackendTLSCreator:
        """
        The creator for connections to C{host} under C{policy}. Raises
        L{BackendCAError} when C{policy.ca} cannot be used.
        """
        key = (host, policy)
        creator = self._creators.get(key)
        if creator is None:
            creator = BackendTLSCreator(host, self.context(policy), policy.verify)
            self._creators[key] = creator
        return creator

    def context(self, policy: TLSPolicy) -> SSL.Context:
        """
        The OpenSSL context for C{policy} (TLS 1.2 or later, Twisted's
        ciphers), made once. Raises L{BackendCAError} for a bad C{ca} file.
        """
        context = self._contexts.get(policy)
        if context is None:
            if not policy.verify:
                options = CertificateOptions()
            else:
                trust = (
                    self._trustStore()
                    if policy.ca is None
                    else trustRootFromCertificates(loadCA(policy.ca))
                )
                options = CertificateOptions(trustRoot=trust)
            context = self._contexts[policy] = options.getContext()
        return context


def loadCA(path: str) -> list[Certificate]:
    """Every certificate in the PEM file C{path}; L{BackendCAError} if none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BackendCAError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BackendCAError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise BackendCAError(f"{path}: cannot read: {e.strerror}") from None
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        found = []
    if not found:
        raise BackendCAError(f"{path}: no PEM certificate in this file")
    return [Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in found]


def _backendURL(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class TLSBackend(NamedTuple):
    """A backend reached over TLS, as the configuration names it."""

    where: str
    """The key path of its table: C{route[2]}, C{balancer.web.member[0]}."""
    url: str
    """C{https://host:port} (or C{wss://})."""
    policy: TLSPolicy


def _isTLS(scheme: str) -> bool:
    """Whether a route's or member's C{scheme} (C{balancer} included) is TLS."""
    return scheme in BACKEND_SCHEMES and isTLS(scheme)


def tlsBackends(
    routes: Iterable[Route] = (), balancers: Iterable[Balancer] = ()
) -> list[TLSBackend]:
    """Every https:// or wss:// route target and https:// member, in file order."""
    found = []
    for route in routes:
        to = route.to
        if to is not None and _isTLS(to.scheme):
            found.append(
                TLSBackend(
                    f"route[{route.index}]",
                    _backendURL(to.scheme, to.host, to.port),
                    TLSPolicy(route.tls_ca, route.tls_verify),
                )
            )
    for balancer in balancers:
        for index, member in enumerate(balancer.members):
            if _isTLS(member.scheme) or member.tls:
                found.append(
                    TLSBackend(
                        f"balancer.{balancer.name}.member[{index}]",
                        _backendURL(member.scheme, member.host, member.port),
                        TLSPolicy(member.tls_ca, member.tls_verify),
                    )
                )
    return found


def unverifiedWarnings(backends: Iterable[TLSBackend]) -> list[tuple[str, str]]:
    """
    (backend URL, warning) for each backend whose certificate is not checked
    (C{tls_verify = false}): one per backend, naming every key that says so.
    """
    places: dict[str, list[str]] = {}
    for backend in backends:
        if not backend.policy.verify:
            keys = places.setdefault(backend.url, [])
            keys.append(f"{backend.where}.tls_verify = false")
    return [
        (
            url,
            f"TLS verification is off for {url} ({', '.join(keys)}): "
            "its certificate is not checked",
        )
        for url, keys in places.items()
    ]


__all__ = [
    "BackendCAError",
    "BackendTLS",
    "BackendTLSCreator",
    "BackendTLSError",
    "CertificateChainError",
    "HandshakeTimeoutError",
    "TLSBackend",
    "TLSPolicy",
    "failureReason",
    "loadCA",
    "tlsBackends",
    "unverifiedWarnings",
]
