"""
TLS termination without sockets: handshakes between pyOpenSSL connections in
memory, against the contexts a C{[listen.tls]} table becomes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import replace
from pathlib import Path

import cryptography
import OpenSSL
import pytest
from cryptography import x509
from OpenSSL import SSL
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests.tlsfiles import TestCA
from twisted_proxy.config.model import (
    HeaderDirectives,
    Listener,
    ListenerTLS,
    ProxySettings,
    SNICertificate,
)
from twisted_proxy.tls.server import (
    FileProblem,
    ServerTLS,
    TLSFilesError,
    clientSubject,
    inspectFiles,
    listenerSettings,
    matchServerName,
)


def _pump(source: SSL.Connection, sink: SSL.Connection) -> bool:
    try:
        data = source.bio_read(65536)
    except SSL.WantReadError:
        return False
    sink.bio_write(data)
    return True


def handshake(
    server: ServerTLS,
    serverName: bytes | None = None,
    alpn: list[bytes] | None = None,
    maxVersion: int | None = None,
    minVersion: int | None = None,
    groups: str | None = None,
    clientCertificate: tuple[Path, Path] | None = None,
    ciphers: bytes | None = None,
) -> tuple[SSL.Connection, SSL.Connection]:
    """Run one handshake in memory; return (client, server) connections."""
    context = SSL.Context(SSL.TLS_METHOD)
    if maxVersion is not None:
        context.set_max_proto_version(maxVersion)
    if minVersion is not None:
        context.set_min_proto_version(minVersion)
    if maxVersion is not None and maxVersion < SSL.TLS1_2_VERSION:
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if ciphers is not None:
        context.set_cipher_list(ciphers)
    if groups is not None:
        from twisted_proxy.tls._openssl import setGroups

        setGroups(context, groups)
    if clientCertificate is not None:
        context.use_certificate_chain_file(str(clientCertificate[0]).encode())
        context.use_privatekey_file(str(clientCertificate[1]).encode())
    client = SSL.Connection(context, None)
    client.set_connect_state()
    if serverName is not None:
        client.set_tlsext_host_name(serverName)
    if alpn is not None:
        client.set_alpn_protos(alpn)
    serverSide = server.serverConnectionForTLS(None)
    serverSide.set_accept_state()
    done: set[int] = set()
    for _ in range(20):
        for index, connection in enumerate((client, serverSide)):
            if index in done:
                continue
            with contextlib.suppress(SSL.WantReadError):
                connection.do_handshake()
                done.add(index)
        moved = _pump(client, serverSide) | _pump(serverSide, client)
        if len(done) == 2 and not moved:
            # TLS 1.3: the server judges a client certificate after the
            # client's handshake is over; a read shows its verdict.
            with contextlib.suppress(SSL.WantReadError):
                serverSide.recv(1)
            return client, serverSide
    raise AssertionError("handshake did not finish")


def subjectCN(connection: SSL.Connection) -> str:
    certificate = connection.get_peer_certificate(as_cryptography=True)
    assert certificate is not None
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value)


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def listenerTLS(ca: TestCA, **values: object) -> ListenerTLS:
    leaf = ca.issue("localhost", "127.0.0.1", commonName="default.test")
    tls = ListenerTLS(
        certificate=str(leaf.certificate), key=str(leaf.key), where="listen[0].tls"
    )
    return replace(tls, **values)  # type: ignore[arg-type]


def withSNI(ca: TestCA, tls: ListenerTLS, *hosts: str) -> ListenerTLS:
    leaf = ca.issue(*hosts, commonName=hosts[0].replace("*", "wild"))
    sni = SNICertificate(hosts, str(leaf.certificate), str(leaf.key))
    return replace(tls, sni=(*tls.sni, sni))


# -- certificates chosen by SNI ------------------------------------------------


def test_sniChoosesTheCertificate(ca: TestCA) -> None:
    """A client naming a host with its own certificate gets that certificate."""
    tls = withSNI(ca, listenerTLS(ca), "api.example.test")
    client, _ = handshake(ServerTLS(tls), b"api.example.test")
    assert subjectCN(client) == "api.example.test"


def test_sniWildcardCoversOneLabel(ca: TestCA) -> None:
    """*.apps.test serves x.apps.test, but neither apps.test nor a.b.apps.test."""
    server = ServerTLS(withSNI(ca, listenerTLS(ca), "*.apps.test"))
    assert subjectCN(handshake(server, b"x.apps.test")[0]) == "wild.apps.test"
    assert subjectCN(handshake(server, b"X.Apps.Test")[0]) == "wild.apps.test"
    assert subjectCN(handshake(server, b"apps.test")[0]) == "default.test"
    assert subjectCN(handshake(server, b"a.b.apps.test")[0]) == "default.test"


def test_noOrUnknownSNIGetsTheDefault(ca: TestCA) -> None:
    """No server name, or one nobody configured: the default certificate."""
    server = ServerTLS(withSNI(ca, listenerTLS(ca), "api.example.test"))
    assert subjectCN(handshake(server)[0]) == "default.test"
    assert subjectCN(handshake(server, b"other.test")[0]) == "default.test"


def test_exactNameBeatsWildcard() -> None:
    """An exact SNI entry wins over a wildcard covering the same name."""
    exact = {"api.apps.test": "exact"}
    wildcard = {"apps.test": "wild"}
    assert matchServerName("api.apps.test", exact, wildcard) == "exact"
    assert matchServerName("web.apps.test.", exact, wildcard) == "wild"
    assert matchServerName("test", exact, wildcard) is None


# -- the protocol profile ----------------------------------------------------------


def test_tls12IsTheDefaultMinimum(ca: TestCA) -> None:
    """TLS 1.2 clients are served with an ECDHE AEAD suite; TLS 1.1 is refused."""
    server = ServerTLS(listenerTLS(ca))
    client, _ = handshake(server, maxVersion=SSL.TLS1_2_VERSION)
    assert client.get_protocol_version_name() == "TLSv1.2"
    cipher = client.get_cipher_name()
    assert cipher is not None
    assert cipher.startswith("ECDHE-")
    assert "GCM" in cipher or "CHACHA" in cipher
    with pytest.raises(SSL.Error):
        handshake(server, maxVersion=SSL.TLS1_1_VERSION)


def test_minVersion13RefusesTLS12(ca: TestCA) -> None:
    """min_version = "1.3": a TLS 1.2-only client fails the handshake."""
    server = ServerTLS(listenerTLS(ca, min_version="1.3"))
    assert handshake(server)[0].get_protocol_version_name() == "TLSv1.3"
    with pytest.raises(SSL.Error):
        handshake(server, maxVersion=SSL.TLS1_2_VERSION)


def test_cbcSuitesAreNotOffered(ca: TestCA) -> None:
    """A TLS 1.2 client offering only CBC suites is refused (Mozilla intermediate)."""
    server = ServerTLS(listenerTLS(ca))
    cbc = b"ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA"
    with pytest.raises(SSL.Error):
        handshake(server, maxVersion=SSL.TLS1_2_VERSION, ciphers=cbc)


def test_onlyProfileGroups(ca: TestCA) -> None:
    """Key exchange over X25519 or P-256 works; P-521 and X448 are refused."""
    server = ServerTLS(listenerTLS(ca))
    handshake(server, groups="X25519")
    handshake(server, groups="prime256v1")
    for group in ("secp521r1", "X448"):
        with pytest.raises(SSL.Error):
            handshake(server, groups=group)


class _BindingWithoutGroups:
    """pyOpenSSL's binding as cryptography before 47 has it: no groups call."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        if name in ("SSL_CTX_set1_groups_list", "SSL_CTX_set1_curves_list"):
            raise AttributeError(f"module 'lib' has no attribute {name!r}")
        return getattr(self._real, name)


def test_noGroupsBindingFallsBackToDefaultsWithOneWarning(
    ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the binding's groups call a listener still serves, warning once."""
    from twisted_proxy.tls import _openssl

    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        with monkeypatch.context() as patched:
            patched.setattr(_openssl, "_warned", False)
            patched.setattr(
                _openssl,
                "_lib",
                _BindingWithoutGroups(_openssl._lib),  # type: ignore[attr-defined]
            )
            server = ServerTLS(withSNI(ca, listenerTLS(ca), "api.example.test"))
            assert server.reload() is True
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    # OpenSSL's defaults include P-521, which the profile's list leaves out.
    client, _ = handshake(server, groups="secp521r1")
    assert client.get_protocol_version_name() == "TLSv1.3"
    warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 1
    text = formatEvent(warnings[0])
    assert "OpenSSL's default key-exchange groups" in text
    assert "X25519:prime256v1:secp384r1" in text
    assert f"cryptography {cryptography.__version__}" in text
    assert f"pyOpenSSL {OpenSSL.__version__}" in text


def test_groupsBindingPresentLogsNothing(ca: TestCA) -> None:
    """With the binding's groups call, building a listener logs no warning."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        ServerTLS(listenerTLS(ca))
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    assert [e for e in events if e.get("log_level") == LogLevel.warn] == []


# -- ALPN ---------------------------------------------------------------------------


def test_h2OnlyWhenListed(ca: TestCA) -> None:
    """A client offering h2 gets http/1.1 unless the listener lists h2."""
    offered = [b"h2", b"http/1.1"]
    plain = ServerTLS(listenerTLS(ca))
    assert handshake(plain, alpn=offered)[0].get_alpn_proto_negotiated() == (
        b"http/1.1"
    )
    h2 = ServerTLS(listenerTLS(ca, alpn=("h2", "http/1.1")))
    assert handshake(h2, alpn=offered)[0].get_alpn_proto_negotiated() == b"h2"
    assert handshake(h2, alpn=[b"http/1.1"])[0].get_alpn_proto_negotiated() == (
        b"http/1.1"
    )


def test_unknownALPNStillConnects(ca: TestCA) -> None:
    """A client offering only protocols we do not speak still completes TLS."""
    server = ServerTLS(listenerTLS(ca))
    client, _ = handshake(server, alpn=[b"spdy/3"])
    assert client.get_alpn_proto_negotiated() == b""


# -- client certificates ------------------------------------------------------


def test_clientCertificateRequired(ca: TestCA, tmp_path: Path) -> None:
    """With client_ca, a client without a certificate fails the handshake."""
    clients = TestCA(tmp_path, "clients")
    server = ServerTLS(listenerTLS(ca, client_ca=str(clients.certificate)))
    with pytest.raises(SSL.Error):
        handshake(server)
    with pytest.raises(SSL.Error):
        handshake(server, maxVersion=SSL.TLS1_2_VERSION)


def test_clientCertificateFromAnotherCARefused(ca: TestCA, tmp_path: Path) -> None:
    """A certificate signed by another CA is refused."""
    clients = TestCA(tmp_path, "clients")
    stranger = TestCA(tmp_path, "stranger").clientCertificate("mallory")
    server = ServerTLS(listenerTLS(ca, client_ca=str(clients.certificate)))
    with pytest.raises(SSL.Error):
        handshake(server, clientCertificate=(stranger.certificate, stranger.key))


def test_clientCertificateAccepted(ca: TestCA, tmp_path: Path) -> None:
    """A certificate from client_ca is accepted and its subject is readable."""
    clients = TestCA(tmp_path, "clients")
    alice = clients.clientCertificate("alice")
    server = ServerTLS(listenerTLS(ca, client_ca=str(clients.certificate)))
    _, serverSide = handshake(server, clientCertificate=(alice.certificate, alice.key))

    class Transport:
        def getPeerCertificate(self) -> object:
            return serverSide.get_peer_certificate()

    assert clientSubject(Transport()) == b"CN=alice"
    assert clientSubject(object()) is None


# -- reload -----------------------------------------------------------------


def test_reloadTakesNewCertificate(ca: TestCA) -> None:
    """After the files are replaced, reload() makes new handshakes use them."""
    tls = listenerTLS(ca)
    server = ServerTLS(tls)
    renewed = ca.issue("localhost", commonName="renewed.test")
    os.replace(renewed.certificate, tls.certificate)
    os.replace(renewed.key, tls.key)
    assert subjectCN(handshake(server)[0]) == "default.test"
    assert server.reload() is True
    assert subjectCN(handshake(server)[0]) == "renewed.test"


def test_brokenReloadKeepsOldCertificate(ca: TestCA) -> None:
    """A renewed certificate whose key does not match is refused and logged."""
    tls = listenerTLS(ca)
    server = ServerTLS(tls)
    other = ca.issue("localhost", commonName="renewed.test")
    os.replace(other.certificate, tls.certificate)  # the old key stays
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        assert server.reload() is False
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    assert subjectCN(handshake(server)[0]) == "default.test"
    errors = [e for e in events if e.get("log_level") == LogLevel.error]
    assert len(errors) == 1
    assert "keeping the old certificate" in str(errors[0]["log_format"])
    assert "does not match the certificate" in str(errors[0]["problem"])


# -- the files -----------------------------------------------------------------


def test_missingFilesAreErrors(tmp_path: Path) -> None:
    """Missing certificate and key files are errors naming key path and file."""
    tls = ListenerTLS(
        certificate=str(tmp_path / "no.pem"),
        key=str(tmp_path / "no.key"),
        where="listen[1].tls",
    )
    assert [str(p) for p in inspectFiles(tls)] == [
        f"listen[1].tls.certificate: {tmp_path / 'no.pem'}: no such file",
        f"listen[1].tls.key: {tmp_path / 'no.key'}: no such file",
    ]
    with pytest.raises(TLSFilesError) as raised:
        ServerTLS(tls)
    assert "no such file" in str(raised.value)


def test_keyNotMatchingIsAnError(ca: TestCA) -> None:
    """A key from another certificate is named as not matching it."""
    tls = listenerTLS(ca)
    other = ca.issue("localhost")
    problems = inspectFiles(replace(tls, key=str(other.key)))
    assert problems == [
        FileProblem(
            "error",
            "listen[0].tls.key",
            str(other.key),
            f"this key does not match the certificate in {tls.certificate}",
        )
    ]


def test_notPEMIsAnError(ca: TestCA, tmp_path: Path) -> None:
    """A file that holds no certificate or no key says so."""
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    tls = listenerTLS(ca)
    assert [p.message for p in inspectFiles(replace(tls, certificate=str(junk)))] == [
        "no PEM certificate in this file"
    ]
    assert [p.message for p in inspectFiles(replace(tls, key=str(junk)))] == [
        "no PEM private key in this file"
    ]


def test_expiredCertificateIsAWarning(ca: TestCA) -> None:
    """An expired certificate is a warning with its end date; TLS still starts."""
    leaf = ca.issue("localhost", expired=True)
    tls = ListenerTLS(certificate=str(leaf.certificate), key=str(leaf.key))
    problems = inspectFiles(tls)
    assert [(p.severity, p.where) for p in problems] == [("warning", "tls.certificate")]
    assert problems[0].message.startswith("the certificate expired on ")
    ServerTLS(tls)


def test_worldReadableKeyIsAWarning(ca: TestCA) -> None:
    """A key readable by everyone is a warning that shows the mode."""
    tls = listenerTLS(ca)
    os.chmod(tls.key, 0o644)
    assert inspectFiles(tls) == [
        FileProblem(
            "warning",
            "listen[0].tls.key",
            tls.key,
            "the private key is readable by everyone (mode 0644); chmod 600 it",
        )
    ]


def test_sniAndClientCAFilesChecked(ca: TestCA, tmp_path: Path) -> None:
    """SNI certificates and the client CA are checked with their own key paths."""
    tls = listenerTLS(ca, client_ca=str(tmp_path / "clients.pem"))
    tls = replace(
        tls, sni=(SNICertificate(("a.test",), str(tmp_path / "a.pem"), tls.key),)
    )
    assert [(p.where, p.message) for p in inspectFiles(tls)] == [
        ("listen[0].tls.sni[0].certificate", "no such file"),
        ("listen[0].tls.client_ca", "no such file"),
    ]


def test_expiryJudgedAtTheGivenTime(ca: TestCA) -> None:
    """A certificate valid today is reported expired when checked after its end."""
    tls = listenerTLS(ca)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=91)
    assert [p.severity for p in inspectFiles(tls, later)] == ["warning"]


# -- what the listener adds -------------------------------------------------


def test_hstsAddsStrictTransportSecurity(ca: TestCA) -> None:
    """hsts = N adds Strict-Transport-Security: max-age=N to the response set."""
    settings = ProxySettings()
    listener = Listener("tcp:8443", tls=listenerTLS(ca, hsts=31536000))
    applied = listenerSettings(settings, listener)
    assert applied.response_headers.set == (
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert listenerSettings(settings, Listener("tcp:8080")) is settings
    own = ProxySettings(
        response_headers=HeaderDirectives(
            set=(("Strict-Transport-Security", "max-age=60"),)
        )
    )
    assert listenerSettings(own, listener) is own


def test_hstsKeepsTheOtherHeaderDirectives(ca: TestCA) -> None:
    """The listener's HSTS joins set; add, append, edit and unset stay as written."""
    headers = HeaderDirectives(
        unset=("X-Powered-By",),
        add=(("Set-Cookie", "a=1"),),
        append=(("Cache-Control", "private"),),
    )
    listener = Listener("tcp:8443", tls=listenerTLS(ca, hsts=60))
    applied = listenerSettings(ProxySettings(response_headers=headers), listener)
    assert applied.response_headers == replace(
        headers, set=(("Strict-Transport-Security", "max-age=60"),)
    )
