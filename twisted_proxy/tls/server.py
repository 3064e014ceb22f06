"""
TLS termination: what a C{[listen.tls]} table becomes.

L{ServerTLS} gives every new handshake an OpenSSL context built from the
table: Mozilla's "intermediate" profile by default (TLS 1.2 and 1.3, ECDHE
with AES-GCM or ChaCha20 for 1.2, the X25519/P-256/P-384 groups, no
compression, no renegotiation; what a table may loosen is
L{twisted_proxy.tls.profile}'s), a certificate chosen by SNI and sent with
its intermediates (those after it in its file, then the C{chain} file's),
ALPN limited to what the listener lists (so HTTP/2 is on only when asked),
and client certificates checked against C{client_ca}. L{ServerTLS.reload}
reads the files again: new handshakes get the new certificate, open
connections keep theirs, and a broken file leaves the old one serving.

L{inspectFiles} is what C{twisted-proxy check} and start-up say about the
files: missing or unreadable files, keys that do not match their
certificate and a cipher string OpenSSL takes nothing from are errors; an
expired certificate, a key readable by everyone or a chain that does not
issue the certificate is a warning.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from twisted_proxy.config.model import (
    Listener,
    ListenerTLS,
    ProxySettings,
)
from twisted_proxy.tls._openssl import setGroups
from twisted_proxy.tls.profile import (
    INTERMEDIATE_GROUPS,
    VERSIONS,
    cipherProblem,
    cipherString,
)

_OPTIONS = (
    SSL.OP_NO_COMPRESSION
    | SSL.OP_NO_RENEGOTIATION
    | SSL.OP_SINGLE_ECDH_USE
    | SSL.OP_NO_TICKET
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class FileProblem:
    """Something wrong with a file a C{[listen.tls]} table names."""

    severity: Severity
    where: str  # the key path: listen[0].tls.key
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path}: {self.message}"


class TLSFilesError(Exception):
    """A listener's certificate files cannot be used; C{problems} says why."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


# -- reading and checking the files -------------------------------------------


def _read(where: str, path: str, problems: list[FileProblem]) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        problems.append(FileProblem("error", where, path, "no such file"))
    except IsADirectoryError:
        problems.append(FileProblem("error", where, path, "is a folder, not a file"))
    except OSError as e:
        problems.append(FileProblem("error", where, path, f"cannot read: {e.strerror}"))
    return None


def _loadChain(
    where: str, path: str, problems: list[FileProblem]
) -> list[x509.Certificate]:
    data = _read(where, path, problems)
    if data is None:
        return []
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        problems.append(
            FileProblem("error", where, path, "no PEM certificate in this file")
        )
    return chain


def _checkKeyMode(where: str, key: str, problems: list[FileProblem]) -> None:
    try:
        mode = os.stat(key).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        problems.append(
            FileProblem(
                "warning",
                where,
                key,
                f"the private key is readable by everyone "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it",
            )
        )


def _checkPair(
    where: str,
    certificate: str,
    key: str,
    now: datetime.datetime,
    problems: list[FileProblem],
    chainFile: str | None = None,
) -> None:
    """
    One certificate file (leaf first, then its chain), its key file and
    the C{chain} file of intermediates sent after them.
    """
    chain = _loadChain(f"{where}.certificate", certificate, problems)
    if chainFile is not None:
        more = _loadChain(f"{where}.chain", chainFile, problems)
        new = [c for c in more if c not in chain]
        if chain and new and new[0].subject != chain[-1].issuer:
            problems.append(
                FileProblem(
                    "warning",
                    f"{where}.chain",
                    chainFile,
                    f"its first certificate ({new[0].subject.rfc4514_string()})"
                    f" is not the issuer ({chain[-1].issuer.rfc4514_string()})"
                    f" of the last one in {certificate}, so clients may not"
                    " verify the chain",
                )
            )
    keyWhere = f"{where}.key"
    keyData = _read(keyWhere, key, problems)
    privateKey = None
    if keyData is not None:
        try:
            privateKey = serialization.load_pem_private_key(keyData, password=None)
        except TypeError:
            problems.append(
                FileProblem(
                    "error",
                    keyWhere,
                    key,
                    "the key is encrypted; give an unencrypted key",
                )
            )
        except ValueError:
            problems.append(
                FileProblem("error", keyWhere, key, "no PEM private key in this file")
            )
    if chain:
        _checkLeaf(where, certificate, chain[0], key, privateKey, now, problems)
    if privateKey is not None:
        _checkKeyMode(keyWhere, key, problems)


def _checkLeaf(
    where: str,
    certificate: str,
    leaf: x509.Certificate,
    key: str,
    privateKey: Any,
    now: datetime.datetime,
    problems: list[FileProblem],
) -> None:
    keyWhere = f"{where}.key"
    if privateKey is not None and (
        privateKey.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ):
        problems.append(
            FileProblem(
                "error",
                keyWhere,
                key,
                f"this key does not match the certificate in {certificate}",
            )
        )
    notAfter = leaf.not_valid_after_utc
    notBefore = leaf.not_valid_before_utc
    if notAfter < now:
        problems.append(
            FileProblem(
                "warning",
                f"{where}.certificate",
                certificate,
                f"the certificate expired on {notAfter:%Y-%m-%d %H:%M} UTC",
            )
        )
    elif notBefore > now:
        problems.append(
            FileProblem(
                "warning",
                f"{where}.certificate",
                certificate,
                f"the certificate is not valid before {notBefore:%Y-%m-%d %H:%M} UTC",
            )
        )


def inspectFiles(
    tls: ListenerTLS, now: datetime.datetime | None = None
) -> list[FileProblem]:
    """
    Read every file C{tls} names; return what is wrong with them, and with
    its cipher string (errors first, in file order, then warnings).
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    problems: list[FileProblem] = []
    _checkPair(tls.where, tls.certificate, tls.key, now, problems, tls.chain)
    for index, sni in enumerate(tls.sni):
        where = f"{tls.where}.sni[{index}]"
        _checkPair(where, sni.certificate, sni.key, now, problems, sni.chain)
    if tls.client_ca is not None:
        _loadChain(f"{tls.where}.client_ca", tls.client_ca, problems)
    problem = cipherProblem(tls)
    if problem is not None:
        # The "path" is the string itself, quoted.
        ciphers = f'"{tls.ciphers}"'
        problems.append(FileProblem("error", f"{tls.where}.ciphers", ciphers, problem))
    return sorted(problems, key=lambda p: p.severity != "error")


# -- contexts -----------------------------------------------------------------


def _alpnChooser(
    offered: Sequence[bytes],
) -> Callable[[SSL.Connection, list[bytes]], Any]:
    """Pick our first protocol the client also offers; none: carry on without."""

    def select(connection: SSL.Connection, theirs: list[bytes]) -> Any:
        for protocol in offered:
            if protocol in theirs:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def _useCertificates(context: SSL.Context, certificate: str, chain: str | None) -> None:
    """
    The leaf, then the intermediates after it in its file, then those of
    C{chain} (each certificate once). Raises L{ValueError} for a file
    without PEM certificates.
    """
    if chain is None:
        context.use_certificate_chain_file(certificate.encode())
        return
    sent: list[x509.Certificate] = []
    for path in (certificate, chain):
        with open(path, "rb") as f:
            found = x509.load_pem_x509_certificates(f.read())
        sent.extend(c for c in found if c not in sent)
    context.use_certificate(sent[0])
    # The context's extra chain certificates: OpenSSL sends them when the
    # leaf has no chain of its own, which one set by use_certificate has not
    # (pyOpenSSL does not bind SSL_CTX_add0_chain_cert).
    for intermediate in sent[1:]:
        context.add_extra_chain_cert(intermediate)


def buildContext(
    tls: ListenerTLS,
    certificate: str,
    key: str,
    onServerName: Callable[[SSL.Connection], None] | None = None,
    chain: str | None = None,
) -> SSL.Context:
    """
    An OpenSSL context for one certificate of a listener (C{chain}: its
    file of intermediates): Mozilla's intermediate profile unless C{tls}
    says otherwise. Raises L{SSL.Error}, L{OSError} or L{ValueError} when a
    file cannot be used.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(VERSIONS[tls.min_version])
    context.set_options(_OPTIONS)
    context.set_cipher_list(cipherString(tls).encode("ascii"))
    setGroups(context, INTERMEDIATE_GROUPS)
    _useCertificates(context, certificate, chain)
    context.use_privatekey_file(key.encode())
    context.check_privatekey()
    # Needed for client certificates with session resumption.
    context.set_session_id(b"twisted-proxy")
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    if tls.client_ca is not None:
        context.load_verify_locations(tls.client_ca.encode())
        context.load_client_ca(tls.client_ca.encode())
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    context.set_alpn_select_callback(
        _alpnChooser([p.encode("ascii") for p in tls.alpn])
    )
    if onServerName is not None:
        context.set_tlsext_servername_callback(onServerName)
    return context


def matchServerName(
    name: str, exact: dict[str, Any], wildcard: dict[str, Any]
) -> Any | None:
    """
    The entry for an SNI C{name}: an exact name first, then C{*.domain}
    covering one more label (as certificates match); None if neither.
    """
    name = name.lower().rstrip(".")
    found = exact.get(name)
    if found is not None:
        return found
    _, dot, parent = name.partition(".")
    if dot and parent:
        return wildcard.get(parent)
    return None


@dataclass(frozen=True)
class _Contexts:
    default: SSL.Context
    exact: dict[str, SSL.Context]
    wildcard: dict[str, SSL.Context]


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS side of one listener: hand it to C{TLSMemoryBIOFactory}.

    Raises L{TLSFilesError} at construction when a file cannot be used.
    """

    _log = Logger()

    def __init__(self, tls: ListenerTLS) -> None:
        self.tls = tls
        self._contexts = self._load()

    def _load(self) -> _Contexts:
        tls = self.tls
        problems = [p for p in inspectFiles(tls) if p.severity == "error"]
        if problems:
            raise TLSFilesError(problems)
        try:
            default = buildContext(
                tls, tls.certificate, tls.key, self._serverName, tls.chain
            )
            exact: dict[str, SSL.Context] = {}
            wildcard: dict[str, SSL.Context] = {}
            for sni in tls.sni:
                context = buildContext(tls, sni.certificate, sni.key, chain=sni.chain)
                for host in sni.hosts:
                    if host.startswith("*."):
                        wildcard[host[2:]] = context
                    else:
                        exact[host] = context
        except (SSL.Error, OSError, ValueError) as e:
            raise TLSFilesError(
                [FileProblem("error", tls.where, tls.certificate, _describe(e))]
            ) from e
        return _Contexts(default, exact, wildcard)

    def _serverName(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if not name:
            return
        contexts = self._contexts
        chosen = matchServerName(
            name.decode("ascii", "replace"), contexts.exact, contexts.wildcard
        )
        if chosen is not None:
            connection.set_context(chosen)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A connection for one new client, with the current certificates."""
        return SSL.Connection(self._contexts.default, None)

    def reload(self) -> bool:
        """
        Read the files again. On success new handshakes use them; otherwise
        the old certificates stay and the log says why. Return whether the
        new files were taken.
        """
        try:
            self._contexts = self._load()
        except TLSFilesError as e:
            for problem in e.problems:
                self._log.error(
                    "certificate reload failed, keeping the old certificate: {problem}",
                    problem=str(problem),
                )
            return False
        self._log.info(
            "{where}: certificates reloaded from {path}",
            where=self.tls.where,
            path=self.tls.certificate,
        )
        return True


def _describe(error: Exception) -> str:
    if isinstance(error, SSL.Error) and error.args and error.args[0]:
        reasons = [str(r[2]) for r in error.args[0] if len(r) == 3]
        if reasons:
            return "; ".join(reasons)
    return str(error) or error.__class__.__name__


# -- what the listener adds to requests and responses ---------------------------


def clientSubject(transport: Any) -> bytes | None:
    """
    The subject of the verified client certificate on C{transport}, as an
    RFC 4514 string (C{CN=alice,O=Example}); None without one.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    if getPeerCertificate is None:
        return None
    certificate = getPeerCertificate()
    if certificate is None:
        return None
    subject: str = certificate.to_cryptography().subject.rfc4514_string()
    return subject.encode("utf-8")


def listenerSettings(
    settings: ProxySettings, listener: Listener | None
) -> ProxySettings:
    """
    C{settings} as one listener applies them to responses: a TLS listener
    with C{hsts} sets Strict-Transport-Security (unless the configuration
    already sets that header itself).
    """
    tls = listener.tls if listener is not None else None
    if tls is None or not tls.hsts:
        return settings
    headers = settings.response_headers
    if any(name.lower() == "strict-transport-security" for name, _ in headers.set):
        return settings
    hsts = ("Strict-Transport-Security", f"max-age={tls.hsts}")
    return replace(
        settings,
        response_headers=replace(headers, set=(*headers.set, hsts)),
    )


__all__ = [
    "FileProblem",
    "ServerTLS",
    "TLSFilesError",
    "buildContext",
    "clientSubject",
    "inspectFiles",
    "listenerSettings",
    "matchServerName",
]
