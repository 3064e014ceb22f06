"""
Certificates for the tests, made on the spot with C{cryptography}: a CA and
the leaf certificates it signs, written as PEM files a config can name.

They follow what strict (web PKI) verifiers and Mozilla's profiles expect:
ECDSA P-256, SHA-256 signatures, a non-critical subjectAltName, a 90-day
leaf. (trustme's leaves mark subjectAltName critical beside a subject, which
such verifiers refuse.)
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    """A leaf certificate written to disk: chain file and key file."""

    certificate: Path
    key: Path


def _usage(sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign,
        crl_sign=sign,
        encipher_only=False,
        decipher_only=False,
    )


def _altName(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class TestCA:
    """A certificate authority that writes what it issues under C{folder}."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, folder: Path, name: str = "ca", parent: TestCA | None = None
    ) -> None:
        self.folder = folder
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"twisted-proxy test {name}")]
        )
        self._keyId = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        now = datetime.datetime.now(datetime.timezone.utc)
        signer = parent or self
        cert = (
            x509.CertificateBuilder()
            .subject_name(self._subject)
            .issuer_name(signer._subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(_usage(sign=True), critical=True)
            .add_extension(self._keyId, critical=False)
            .sign(signer._key, hashes.SHA256())
        )
        self.certificate = folder / f"{name}.pem"
        self.certificate.write_bytes(cert.public_bytes(_PEM))
        # What a leaf's file carries after the leaf: the intermediates.
        self._chain: bytes = (
            b"" if parent is None else cert.public_bytes(_PEM) + parent._chain
        )
        self._count = 0

    def intermediate(self, name: str) -> TestCA:
        """A CA signed by this one; its leaves' files carry it after the leaf."""
        return TestCA(self.folder, name, parent=self)

    def issue(
        self,
        *names: str,
        days: int = 90,
        commonName: str | None = None,
        expired: bool = False,
        client: bool = False,
        stem: str | None = None,
    ) -> Issued:
        """
        Issue a leaf for C{names} (DNS names or IP addresses), valid C{days}
        from a minute ago (or ended yesterday, when C{expired}).
        """
        self._count += 1
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            notBefore = now - datetime.timedelta(days=30)
            notAfter = now - datetime.timedelta(days=1)
        else:
            notBefore = now - datetime.timedelta(minutes=1)
            notAfter = notBefore + datetime.timedelta(days=days)
        key = ec.generate_private_key(ec.SECP256R1())
        common = commonName or (names[0] if names else "leaf")
        purpose = (
            ExtendedKeyUsageOID.CLIENT_AUTH
            if client
            else (ExtendedKeyUsageOID.SERVER_AUTH)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(_usage(sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self._keyId
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_altName(n) for n in names]), False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        stem = stem or f"{self.name}-leaf{self._count}"
        certificate = self.folder / f"{stem}.pem"
        keyFile = self.folder / f"{stem}.key"
        certificate.write_bytes(cert.public_bytes(_PEM) + self._chain)
        keyFile.write_bytes(
            key.private_bytes(
                _PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        keyFile.chmod(0o600)
        return Issued(certificate, keyFile)

    def clientCertificate(self, commonName: str, stem: str | None = None) -> Issued:
        """A client certificate with subject CN=C{commonName}."""
        return self.issue(commonName=commonName, client=True, stem=stem)


@implementer(IOpenSSLServerConnectionCreator)
class ServingTLS:
    """A test backend's side of TLS: one certificate; records the SNI names sent."""

    def __init__(self, issued: Issued) -> None:
        self.serverNames: list[bytes | None] = []
        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate_chain_file(str(issued.certificate))
        self._context.use_privatekey_file(str(issued.key))
        self._context.set_tlsext_servername_callback(
            lambda connection: self.serverNames.append(connection.get_servername())
        )

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A server-side connection with the certificate."""
        connection = SSL.Connection(self._context, None)
        connection.set_accept_state()
        return connection
