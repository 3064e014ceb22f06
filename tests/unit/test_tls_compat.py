"""
What a C{[listen.tls]} table may add to or loosen from the defaults, without
sockets: the C{chain} file of intermediates, TLS 1.0 and 1.1, cipher strings
of the operator's own, and the warnings that say so.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from tests.tlsfiles import TestCA
from tests.unit.test_tls import handshake
from twisted_proxy.config import loadString
from twisted_proxy.config.model import Config, ListenerTLS, SNICertificate
from twisted_proxy.tls.profile import (
    INTERMEDIATE_CIPHERS,
    OLD_CIPHERS,
    cipherProblem,
    cipherString,
    enabledCiphers,
    weakTLSWarnings,
)
from twisted_proxy.tls.server import (
    FileProblem,
    ServerTLS,
    TLSFilesError,
    inspectFiles,
)


class Chain:
    """A root, an intermediate it signs, and a leaf the intermediate signs."""

    def __init__(self, folder: Path, host: str = "localhost") -> None:
        self.root = TestCA(folder, "root")
        self.intermediate = self.root.intermediate("intermediate")
        issued = self.intermediate.issue(host, stem=host.replace("*", "wild"))
        # The leaf alone in its file: the intermediate is only in `chain`.
        pem = issued.certificate.read_bytes()
        leaf = x509.load_pem_x509_certificates(pem)[0]
        self.leafOnly = folder / f"{issued.certificate.stem}-leaf.pem"
        self.leafOnly.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        self.withIntermediate = issued.certificate
        self.key = issued.key
        self.chain = self.intermediate.certificate


def tlsFor(made: Chain, **values: object) -> ListenerTLS:
    """The leaf alone as certificate, and C{values}."""
    tls = ListenerTLS(
        certificate=str(made.leafOnly), key=str(made.key), where="listen[0].tls"
    )
    return replace(tls, **values)  # type: ignore[arg-type]


def sentChain(client: SSL.Connection) -> list[str]:
    """The common names of the certificates the server sent, leaf first."""
    sent = client.get_peer_cert_chain(as_cryptography=True) or []
    return [
        str(c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
        for c in sent
    ]


# -- chain --------------------------------------------------------------------


def test_chainSentAfterTheLeaf(tmp_path: Path) -> None:
    """The chain file's intermediate follows a certificate file holding the leaf."""
    made = Chain(tmp_path)
    client, _ = handshake(ServerTLS(tlsFor(made, chain=str(made.chain))))
    assert sentChain(client) == ["localhost", "twisted-proxy test intermediate"]


def test_withoutChainOnlyTheLeafIsSent(tmp_path: Path) -> None:
    """A leaf alone in its file, and no chain: nothing follows it."""
    made = Chain(tmp_path)
    client, _ = handshake(ServerTLS(tlsFor(made)))
    assert sentChain(client) == ["localhost"]


def test_certificateInBothFilesSentOnce(tmp_path: Path) -> None:
    """A certificate file with its intermediate, and the same in chain: sent once."""
    made = Chain(tmp_path)
    tls = tlsFor(made, certificate=str(made.withIntermediate), chain=str(made.chain))
    client, _ = handshake(ServerTLS(tls))
    assert sentChain(client) == ["localhost", "twisted-proxy test intermediate"]


def test_sniCertificateChain(tmp_path: Path) -> None:
    """An [[listen.tls.sni]] chain follows that entry's certificate."""
    made = Chain(tmp_path)
    (tmp_path / "api").mkdir()
    api = Chain(tmp_path / "api", "api.example.test")
    sni = SNICertificate(
        ("api.example.test",), str(api.leafOnly), str(api.key), str(api.chain)
    )
    server = ServerTLS(tlsFor(made, sni=(sni,)))
    client, _ = handshake(server, b"api.example.test")
    assert sentChain(client) == [
        "api.example.test",
        "twisted-proxy test intermediate",
    ]
    assert sentChain(handshake(server)[0]) == ["localhost"]


def test_missingOrNonPEMChainIsAnError(tmp_path: Path) -> None:
    """A chain file missing, or with no PEM certificate, is an error naming it."""
    made = Chain(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = str(tmp_path / "nope.pem")
    sni = SNICertificate(("a.test",), str(made.leafOnly), str(made.key), str(junk))
    tls = tlsFor(made, chain=missing, sni=(sni,))
    assert inspectFiles(tls) == [
        FileProblem("error", "listen[0].tls.chain", missing, "no such file"),
        FileProblem(
            "error",
            "listen[0].tls.sni[0].chain",
            str(junk),
            "no PEM certificate in this file",
        ),
    ]
    with pytest.raises(TLSFilesError) as raised:
        ServerTLS(tls)
    assert str(raised.value).startswith(f"listen[0].tls.chain: {missing}: no such")


def test_unreadableChainIsAnError(tmp_path: Path) -> None:
    """A folder given as chain cannot be read: an error naming the key."""
    made = Chain(tmp_path)
    problems = inspectFiles(tlsFor(made, chain=str(tmp_path)))
    assert problems == [
        FileProblem(
            "error", "listen[0].tls.chain", str(tmp_path), "is a folder, not a file"
        )
    ]


def test_chainNotIssuingTheCertificateIsAWarning(tmp_path: Path) -> None:
    """A chain not issuing the leaf is a warning; the listener still serves."""
    made = Chain(tmp_path)
    other = TestCA(tmp_path, "other")
    tls = tlsFor(made, chain=str(other.certificate))
    [problem] = inspectFiles(tls)
    assert (problem.severity, problem.where, problem.path) == (
        "warning",
        "listen[0].tls.chain",
        str(other.certificate),
    )
    assert problem.message == (
        "its first certificate (CN=twisted-proxy test other) is not the issuer"
        " (CN=twisted-proxy test intermediate) of the last one in"
        f" {made.leafOnly}, so clients may not verify the chain"
    )
    handshake(ServerTLS(tls))


# -- TLS 1.0 and 1.1 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "version", "name"),
    [
        ("1.1", SSL.TLS1_1_VERSION, "TLSv1.1"),
        ("1.0", SSL.TLS1_1_VERSION, "TLSv1.1"),
        ("1.0", SSL.TLS1_VERSION, "TLSv1"),
    ],
)
def test_olderVersionReallyServed(
    tmp_path: Path, minimum: str, version: int, name: str
) -> None:
    """min_version "1.0" or "1.1": a client that can go no higher is served."""
    made = Chain(tmp_path)
    server = ServerTLS(tlsFor(made, min_version=minimum))
    client, _ = handshake(server, maxVersion=version)
    assert client.get_protocol_version_name() == name
    assert client.get_cipher_name() in OLD_CIPHERS.split(":")


def test_tls10RefusedAtMinimum11(tmp_path: Path) -> None:
    """min_version "1.1" still refuses a TLS 1.0 client."""
    made = Chain(tmp_path)
    server = ServerTLS(tlsFor(made, min_version="1.1"))
    with pytest.raises(SSL.Error):
        handshake(server, maxVersion=SSL.TLS1_VERSION)


def test_ownCiphersWithOlderVersion(tmp_path: Path) -> None:
    """A cipher string of one's own serves TLS 1.1 at security level 0."""
    made = Chain(tmp_path)
    tls = tlsFor(made, min_version="1.1", ciphers="ECDHE-ECDSA-AES256-SHA")
    client, _ = handshake(ServerTLS(tls), maxVersion=SSL.TLS1_1_VERSION)
    assert client.get_cipher_name() == "ECDHE-ECDSA-AES256-SHA"


def test_cipherString() -> None:
    """The profile's list, Mozilla's old one below 1.2, and level 0 below 1.2."""
    tls = ListenerTLS(certificate="c.pem", key="c.key")
    assert cipherString(tls) == INTERMEDIATE_CIPHERS
    assert cipherString(replace(tls, ciphers="HIGH")) == "HIGH"
    old = replace(tls, min_version="1.1")
    assert cipherString(old) == OLD_CIPHERS + ":@SECLEVEL=0"
    assert cipherString(replace(old, ciphers="HIGH")) == "HIGH:@SECLEVEL=0"
    own = replace(old, ciphers="HIGH:@SECLEVEL=1")
    assert cipherString(own) == "HIGH:@SECLEVEL=1"


def test_cipherStringOpenSSLRefusesIsAnError() -> None:
    """A string OpenSSL enables nothing with is an error naming ciphers."""
    tls = ListenerTLS(
        certificate="c.pem", key="c.key", ciphers="NOPE", where="listen[2].tls"
    )
    assert cipherProblem(tls) == (
        "OpenSSL enables no cipher suite with this string (no cipher match)"
    )
    assert cipherProblem(replace(tls, ciphers="AES128-SHA\u00e9")) == (
        "a cipher string is ASCII"
    )
    assert cipherProblem(replace(tls, ciphers="HIGH")) is None
    assert cipherProblem(replace(tls, ciphers=None)) is None


def test_badCipherStringNamedByInspection(tmp_path: Path) -> None:
    """inspectFiles, and so check and start-up, name the ciphers key."""
    made = Chain(tmp_path)
    tls = tlsFor(made, ciphers="NOPE")
    assert [str(p) for p in inspectFiles(tls)] == [
        'listen[0].tls.ciphers: "NOPE": OpenSSL enables no cipher suite with this'
        " string (no cipher match)"
    ]
    with pytest.raises(TLSFilesError):
        ServerTLS(tls)


# -- the warnings ----------------------------------------------------------------


def configWith(*tables: str) -> Config:
    """A configuration with one TLS listener per table body in C{tables}."""
    text = ""
    for index, body in enumerate(tables):
        text += f'[[listen]]\nendpoint = "tcp:{8443 + index}"\n[listen.tls]\n'
        text += f'certificate = "a.pem"\nkey = "a.key"\n{body}\n'
    return loadString(text, "/etc/p/site.toml")


def test_defaultsWarnNothing() -> None:
    """The defaults, TLS 1.3 only, and a subset of the default list: no warning."""
    config = configWith(
        "",
        'min_version = "1.3"',
        'ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"',
    )
    assert weakTLSWarnings(config) == ()


def test_olderMinimumWarns() -> None:
    """min_version below 1.2 is one warning naming the key, the version and why."""
    config = configWith('min_version = "1.0"', 'min_version = "1.1"')
    assert weakTLSWarnings(config) == (
        'listen[0].tls.min_version: "1.0" is weaker than the default "1.2": TLS'
        " 1.0 and 1.1 are let in (deprecated by RFC 8996), at OpenSSL security"
        ' level 0, with Mozilla\'s "old" cipher list (CBC suites with SHA-1)'
        " since ciphers is not set",
        'listen[1].tls.min_version: "1.1" is weaker than the default "1.2": TLS'
        " 1.1 is let in (deprecated by RFC 8996), at OpenSSL security level 0,"
        ' with Mozilla\'s "old" cipher list (CBC suites with SHA-1) since'
        " ciphers is not set",
    )


def test_weakerCiphersWarnWithTheirNames() -> None:
    """ciphers enabling suites outside the default list names them."""
    config = configWith(
        'min_version = "1.1"\nciphers = "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA"'
    )
    assert weakTLSWarnings(config) == (
        'listen[0].tls.min_version: "1.1" is weaker than the default "1.2": TLS'
        " 1.1 is let in (deprecated by RFC 8996), at OpenSSL security level 0",
        "listen[0].tls.ciphers: enables ciphers outside the default list: AES128-SHA",
    )


def test_manyWeakerCiphersAreCounted() -> None:
    """A broad string names the first eight extra suites and counts the rest."""
    [warning] = weakTLSWarnings(configWith('ciphers = "ALL"'))
    extra = [
        name
        for name in enabledCiphers("ALL")
        if name not in enabledCiphers(INTERMEDIATE_CIPHERS)
    ]
    assert len(extra) > 8
    assert warning == (
        "listen[0].tls.ciphers: enables ciphers outside the default list: "
        + ", ".join(extra[:8])
        + f" and {len(extra) - 8} more"
    )


def test_ciphersUnusedWithTLS13OnlyWarnNothing() -> None:
    """min_version "1.3" never negotiates the string's suites: no warning."""
    config = configWith('min_version = "1.3"\nciphers = "ALL"')
    assert weakTLSWarnings(config) == ()


def test_refusedCipherStringIsNoWarning() -> None:
    """A string OpenSSL refuses is an error elsewhere, not a warning here."""
    assert weakTLSWarnings(configWith('ciphers = "NOPE"')) == ()
