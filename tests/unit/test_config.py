"""
Tests for the configuration loader: TOML text in, a validated Config out, or
every error at once, each naming the file, the key path and what was expected.
"""

from __future__ import annotations

import ipaddress
import os
import pickle
from pathlib import Path

import pytest

from twisted_proxy.config import (
    Balancer,
    Config,
    ConfigError,
    HeaderDirectives,
    Listener,
    ListenerTLS,
    Member,
    ProxySettings,
    Route,
    Target,
    load,
    loadString,
)
from twisted_proxy.config.model import (
    HealthCheck,
    SNICertificate,
    Sticky,
    WebSocketSettings,
)


def errorsOf(text: str, source: str = "site.toml") -> list[str]:
    """Load C{text}, expect a ConfigError, return its messages."""
    with pytest.raises(ConfigError) as info:
        loadString(text, source)
    return info.value.errors


def onlyRoute(text: str) -> Route:
    """Load C{text} and return its single route."""
    (route,) = loadString(text).routes
    return route


def targetOf(url: str) -> Target | None:
    """The Target parsed from C{to = url} on a "/" route."""
    return onlyRoute(f'[[route]]\npath = "/"\nto = "{url}"\n').to


BALANCED = """
[[route]]
path = "/"
to = "balancer://web/"

[balancer.web]
"""


# -- defaults and the shape of the result --------------------------------------


def test_emptyDocumentGivesDefaults() -> None:
    """An empty file is valid and gives the documented defaults."""
    assert loadString("") == Config()


def test_proxyDefaults() -> None:
    """Every [proxy] default is the documented one."""
    proxy = loadString("[proxy]\n").proxy
    assert proxy == ProxySettings(
        server_name="localhost",
        server_tokens="prod",
        preserve_host=False,
        forwarded_headers=True,
        trusted_proxies=(),
        via="off",
        timeout=60.0,
        connect_timeout=5.0,
        header_timeout=20.0,
        idle_timeout=75.0,
        max_header_bytes=65536,
        max_body_bytes=0,
        access_log="-",
        access_log_format="combined",
        compress=(),
        response_headers=HeaderDirectives(),
        keepalive=True,
        pool_size=64,
        pool_ttl=60.0,
        shutdown_grace=30.0,
        log_level="info",
    )


def test_pseudoSourceIsNotRecorded() -> None:
    """Text loaded under a pseudo-name such as <string> has no Config.source."""
    assert loadString("", "<string>").source is None


def test_sourceIsRecorded() -> None:
    """Text loaded under a file name records it as Config.source."""
    assert loadString("", "conf/site.toml").source == "conf/site.toml"


def test_routeDefaults() -> None:
    """A route with only path and to takes the documented defaults."""
    route = onlyRoute('[[route]]\npath = "/"\nto = "http://127.0.0.1:3000/"\n')
    assert route == Route(
        path="/",
        to=Target("http://127.0.0.1:3000/", "http", "127.0.0.1", 3000, "/"),
        index=0,
    )
    assert route.host is None
    assert route.preserve_host is None
    assert route.timeout is None
    assert route.websocket is True


# -- [proxy] --------------------------------------------------------------------


def test_proxyAllKeys() -> None:
    """Every [proxy] key is read into ProxySettings."""
    proxy = loadString(
        """
        [proxy]
        server_name = "proxy.example.test"
        server_tokens = "full"
        preserve_host = true
        forwarded_headers = false
        trusted_proxies = ["198.51.100.0/24", "192.0.2.7", "2001:db8::/32"]
        via = "block"
        timeout = 30.5
        connect_timeout = 1.5
        header_timeout = 10.0
        idle_timeout = 5.0
        max_header_bytes = 1024
        max_body_bytes = 1000000
        access_log = "/var/log/proxy.log"
        access_log_format = "%h %l %u %t \\"%r\\" %>s %b %D"
        compress = ["text/html", "application/json"]
        keepalive = false
        pool_size = 4
        pool_ttl = 10.0
        shutdown_grace = 2.5
        log_level = "debug"
        """
    ).proxy
    assert proxy == ProxySettings(
        server_name="proxy.example.test",
        server_tokens="full",
        preserve_host=True,
        forwarded_headers=False,
        trusted_proxies=(
            ipaddress.ip_network("198.51.100.0/24"),
            ipaddress.ip_network("192.0.2.7/32"),
            ipaddress.ip_network("2001:db8::/32"),
        ),
        via="block",
        timeout=30.5,
        connect_timeout=1.5,
        header_timeout=10.0,
        idle_timeout=5.0,
        max_header_bytes=1024,
        max_body_bytes=1000000,
        access_log="/var/log/proxy.log",
        access_log_format='%h %l %u %t "%r" %>s %b %D',
        compress=("text/html", "application/json"),
        keepalive=False,
        pool_size=4,
        pool_ttl=10.0,
        shutdown_grace=2.5,
        log_level="debug",
    )


def test_integersAcceptedForDurations() -> None:
    """An integer number of seconds is read as a float."""
    proxy = loadString("[proxy]\ntimeout = 10\npool_ttl = 3\n").proxy
    assert proxy.timeout == 10.0
    assert isinstance(proxy.timeout, float)
    assert proxy.pool_ttl == 3.0


@pytest.mark.parametrize("value", ["prod", "full", "none"])
def test_serverTokensValues(value: str) -> None:
    """Each documented server_tokens value is accepted."""
    assert loadString(f'[proxy]\nserver_tokens = "{value}"\n').proxy.server_tokens == (
        value
    )


@pytest.mark.parametrize("value", ["off", "on", "full", "block"])
def test_viaValues(value: str) -> None:
    """Each documented via value is accepted."""
    assert loadString(f'[proxy]\nvia = "{value}"\n').proxy.via == value


@pytest.mark.parametrize("value", ["info", "debug"])
def test_logLevelValues(value: str) -> None:
    """Each documented log_level value is accepted."""
    assert loadString(f'[proxy]\nlog_level = "{value}"\n').proxy.log_level == value


def test_trustedProxiesNonStrict() -> None:
    """A CIDR with host bits set is accepted as its network."""
    proxy = loadString('[proxy]\ntrusted_proxies = ["198.51.100.9/24"]\n').proxy
    assert proxy.trusted_proxies == (ipaddress.ip_network("198.51.100.0/24"),)


def test_accessLogFalse() -> None:
    """access_log = false turns the access log off."""
    assert loadString("[proxy]\naccess_log = false\n").proxy.access_log is None


def test_accessLogStdout() -> None:
    """access_log = "-" means standard output and is not treated as a path."""
    proxy = loadString('[proxy]\naccess_log = "-"\n', "/srv/proxy/site.toml").proxy
    assert proxy.access_log == "-"


def test_accessLogRelativeToConfigFolder() -> None:
    """A relative access_log path is resolved against the config file's folder."""
    proxy = loadString(
        '[proxy]\naccess_log = "logs/access.log"\n', "/srv/proxy/site.toml"
    ).proxy
    assert proxy.access_log == os.path.normpath("/srv/proxy/logs/access.log")


def test_accessLogRelativeToRelativeSource() -> None:
    """A relative source is resolved against the current directory first."""
    proxy = loadString(
        '[proxy]\naccess_log = "../access.log"\n', "conf/site.toml"
    ).proxy
    assert proxy.access_log == os.path.abspath("access.log")


def test_accessLogAbsoluteKept() -> None:
    """An absolute access_log path is kept as written."""
    proxy = loadString(
        '[proxy]\naccess_log = "/var/log/a.log"\n', "/srv/proxy/site.toml"
    ).proxy
    assert proxy.access_log == "/var/log/a.log"


def test_accessLogFromStringRelativeToWorkingDirectory() -> None:
    """Without a file name, relative paths resolve against the working directory."""
    proxy = loadString('[proxy]\naccess_log = "a.log"\n').proxy
    assert proxy.access_log == os.path.join(os.getcwd(), "a.log")


def test_responseHeaders() -> None:
    """[proxy.response_headers] set and unset keep the file's order."""
    proxy = loadString(
        """
        [proxy.response_headers]
        set = { "X-Frame-Options" = "DENY", "X-Content-Type-Options" = "nosniff" }
        unset = ["X-Powered-By", "Server-Timing"]
        """
    ).proxy
    assert proxy.response_headers == HeaderDirectives(
        set=(("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff")),
        unset=("X-Powered-By", "Server-Timing"),
    )


def test_headerValueMayBeEmpty() -> None:
    """A header may be set to the empty string."""
    proxy = loadString('[proxy.response_headers]\nset = { "X-Empty" = "" }\n').proxy
    assert proxy.response_headers.set == (("X-Empty", ""),)


def test_proxyUnknownKey() -> None:
    """A misspelt [proxy] key is reported as unknown, with its key path."""
    assert errorsOf("[proxy]\ntmeout = 3\n") == ["site.toml: proxy.tmeout: unknown key"]


def test_topLevelUnknownKey() -> None:
    """A key outside the vocabulary at the top level is reported."""
    assert errorsOf("[proxies]\n") == ["site.toml: proxies: unknown key"]


def test_proxyNotATable() -> None:
    """proxy must be a table."""
    assert errorsOf("proxy = 3\n") == ["site.toml: proxy: expected a table, got 3"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'server_tokens = "minimal"',
            'proxy.server_tokens: expected one of "prod", "full", "none", '
            'got "minimal"',
        ),
        (
            'via = "yes"',
            'proxy.via: expected one of "off", "on", "full", "block", got "yes"',
        ),
        (
            "via = true",
            'proxy.via: expected one of "off", "on", "full", "block", got true',
        ),
        (
            'preserve_host = "yes"',
            'proxy.preserve_host: expected true or false, got "yes"',
        ),
        ("keepalive = 1", "proxy.keepalive: expected true or false, got 1"),
        (
            "timeout = 0",
            "proxy.timeout: expected a positive number of seconds, got 0",
        ),
        (
            "connect_timeout = -1.5",
            "proxy.connect_timeout: expected a positive number of seconds, got -1.5",
        ),
        (
            'header_timeout = "20"',
            'proxy.header_timeout: expected a positive number of seconds, got "20"',
        ),
        (
            "idle_timeout = inf",
            "proxy.idle_timeout: expected a positive number of seconds, got inf",
        ),
        (
            "pool_ttl = nan",
            "proxy.pool_ttl: expected a positive number of seconds, got nan",
        ),
        (
            "shutdown_grace = true",
            "proxy.shutdown_grace: expected a positive number of seconds, got true",
        ),
        (
            'log_level = "trace2"',
            'proxy.log_level: expected one of "info", "debug", got "trace2"',
        ),
        ("log_level = 1", 'proxy.log_level: expected one of "info", "debug", got 1'),
        (
            "max_header_bytes = 1023",
            "proxy.max_header_bytes: expected an integer >= 1024, got 1023",
        ),
        (
            "max_header_bytes = 2048.0",
            "proxy.max_header_bytes: expected an integer >= 1024, got 2048.0",
        ),
        (
            "max_body_bytes = -1",
            "proxy.max_body_bytes: expected an integer >= 0, got -1",
        ),
        (
            "max_body_bytes = false",
            "proxy.max_body_bytes: expected an integer >= 0, got false",
        ),
        ("pool_size = 0", "proxy.pool_size: expected a positive integer, got 0"),
        (
            "access_log = true",
            'proxy.access_log: expected "-", a file path or false, got true',
        ),
        (
            'access_log = ""',
            'proxy.access_log: expected "-", a file path or false, got ""',
        ),
        (
            'access_log_format = ""',
            'proxy.access_log_format: expected a non-empty string, got ""',
        ),
        (
            'compress = "text/html"',
            'proxy.compress: expected an array of strings, got "text/html"',
        ),
        (
            'compress = ["text/html", 3]',
            "proxy.compress[1]: expected a non-empty string, got 3",
        ),
        (
            'trusted_proxies = ["198.51.100.0/24", "not-a-net"]',
            "proxy.trusted_proxies[1]: expected a CIDR network or an address, "
            'got "not-a-net"',
        ),
        (
            'trusted_proxies = "198.51.100.0/24"',
            "proxy.trusted_proxies: expected an array of CIDR networks or "
            'addresses, got "198.51.100.0/24"',
        ),
        (
            'server_name = "a b"',
            'proxy.server_name: expected a host name, got "a b"',
        ),
        (
            "response_headers = []",
            "proxy.response_headers: expected a table, got an array",
        ),
    ],
)
def test_proxyValueErrors(line: str, message: str) -> None:
    """Each wrong [proxy] value is reported with its key path and expectation."""
    assert errorsOf(f"[proxy]\n{line}\n") == [f"site.toml: {message}"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'set = { "Bad Name" = "x" }',
            'proxy.response_headers.set."Bad Name": '
            "expected a header name (an HTTP token)",
        ),
        (
            'set = { "X-A" = 1 }',
            "proxy.response_headers.set.X-A: expected a string, got 1",
        ),
        (
            'set = { "X-A" = "a\\r\\nInjected: yes" }',
            "proxy.response_headers.set.X-A: "
            "expected a header value without line breaks",
        ),
        (
            'set = { "X-A" = "1", "x-a" = "2" }',
            'proxy.response_headers.set.x-a: same header as "X-A"',
        ),
        (
            'set = "X-A: 1"',
            'proxy.response_headers.set: expected a table, got "X-A: 1"',
        ),
        (
            'unset = "X-Powered-By"',
            "proxy.response_headers.unset: expected an array of header names, "
            'got "X-Powered-By"',
        ),
        (
            'unset = ["X-Powered-By", "no good"]',
            'proxy.response_headers.unset[1]: expected a header name, got "no good"',
        ),
        (
            'set = { "X-A" = "1" }\nunset = ["x-a"]',
            'proxy.response_headers.unset[0]: "x-a" is also in set',
        ),
        ('merge = [["X-A", "1"]]', "proxy.response_headers.merge: unknown key"),
    ],
)
def test_headerDirectiveErrors(table: str, message: str) -> None:
    """Header set/unset tables check names, values and conflicts."""
    assert errorsOf(f"[proxy.response_headers]\n{table}\n") == [f"site.toml: {message}"]


# -- [[listen]] -----------------------------------------------------------------


def test_listeners() -> None:
    """Each [[listen]] endpoint string is kept, in order."""
    config = loadString(
        """
        [[listen]]
        endpoint = "tcp:8080:interface=127.0.0.1"
        [[listen]]
        endpoint = "unix:/run/proxy.sock"
        [[listen]]
        endpoint = "systemd:domain=INET:index=0"
        """
    )
    assert config.listen == (
        Listener("tcp:8080:interface=127.0.0.1", index=0),
        Listener("unix:/run/proxy.sock", index=1),
        Listener("systemd:domain=INET:index=0", index=2),
    )


def test_listenConnectDefaults() -> None:
    """[listen.connect]: AllowCONNECT's ports, loopback clients, nothing else."""
    config = loadString('[[listen]]\nendpoint = "tcp:3128"\n[listen.connect]\n')
    connect = config.listen[0].connect
    assert connect is not None
    assert connect.allow_ports == (443, 563)
    assert connect.allow_clients == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert connect.allow_destinations == ()
    assert (connect.connect_timeout, connect.idle_timeout) == (None, 300.0)
    assert loadString('[[listen]]\nendpoint = "tcp:3128"\n').listen[0].connect is None


def test_listenConnectValues() -> None:
    """Names are lower-cased without their dot; networks and addresses parsed."""
    config = loadString(
        '[[listen]]\nendpoint = "tcp:3128"\n[listen.connect]\n'
        "allow_ports = [443, 8443]\n"
        'allow_clients = ["192.0.2.0/24"]\n'
        'allow_destinations = ["Git.Example.TEST.", "198.51.100.0/24", "::1"]\n'
        "connect_timeout = 2.5\nidle_timeout = 60\n"
    )
    connect = config.listen[0].connect
    assert connect is not None
    assert connect.allow_ports == (443, 8443)
    assert connect.allow_clients == (ipaddress.ip_network("192.0.2.0/24"),)
    assert connect.allow_destinations == (
        "git.example.test",
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("::1/128"),
    )
    assert (connect.connect_timeout, connect.idle_timeout) == (2.5, 60.0)


def test_listenConnectErrors() -> None:
    """Every wrong value is named, all at once."""
    text = (
        '[[listen]]\nendpoint = "tcp:3128"\n[listen.connect]\n'
        'allow_ports = [0, "443", true, 70000]\n'
        'allow_clients = ["nowhere"]\n'
        'allow_destinations = ["*.example.test", 5, "1.2.3", "bad name"]\n'
        "users = 5\nidle_timeout = 0\nport = 1\n"
    )
    where = "site.toml: listen[0].connect"
    assert errorsOf(text) == [
        f"{where}.port: unknown key",
        f"{where}.allow_ports[0]: expected a port number 1-65535, got 0",
        f'{where}.allow_ports[1]: expected a port number 1-65535, got "443"',
        f"{where}.allow_ports[2]: expected a port number 1-65535, got true",
        f"{where}.allow_ports[3]: expected a port number 1-65535, got 70000",
        f"{where}.allow_clients[0]: expected a CIDR network or an address,"
        ' got "nowhere"',
        f"{where}.allow_destinations[0]: expected a CIDR network, an address or"
        ' a host name, got "*.example.test"',
        f"{where}.allow_destinations[1]: expected a CIDR network, an address or"
        " a host name, got 5",
        f"{where}.allow_destinations[2]: expected a CIDR network, an address or"
        ' a host name, got "1.2.3"',
        f"{where}.allow_destinations[3]: expected a CIDR network, an address or"
        ' a host name, got "bad name"',
        f"{where}.users: expected a non-empty string, got 5",
        f"{where}.idle_timeout: expected a positive number of seconds, got 0",
    ]


def test_listenTLS() -> None:
    """[listen.tls] and its SNI certificates, with paths resolved."""
    config = loadString(
        """
        [[listen]]
        endpoint = "tcp:8443"
        [listen.tls]
        certificate = "tls/proxy.pem"
        key = "tls/proxy.key"
        chain = "tls/intermediates.pem"
        min_version = "1.3"
        alpn = ["h2", "http/1.1"]
        hsts = 31536000
        client_ca = "/etc/ca.pem"
        client_cert_header = "X-Client-Subject"
        [[listen.tls.sni]]
        hosts = ["API.example.test", "*.apps.example.test"]
        certificate = "tls/api.pem"
        key = "tls/api.key"
        chain = "/etc/ssl/api-chain.pem"
        """,
        "/srv/proxy/site.toml",
    )
    tls = config.listen[0].tls
    assert tls == ListenerTLS(
        certificate="/srv/proxy/tls/proxy.pem",
        key="/srv/proxy/tls/proxy.key",
        chain="/srv/proxy/tls/intermediates.pem",
        min_version="1.3",
        alpn=("h2", "http/1.1"),
        hsts=31536000,
        client_ca="/etc/ca.pem",
        client_cert_header="X-Client-Subject",
        sni=(
            SNICertificate(
                hosts=("api.example.test", "*.apps.example.test"),
                certificate="/srv/proxy/tls/api.pem",
                key="/srv/proxy/tls/api.key",
                chain="/etc/ssl/api-chain.pem",
            ),
        ),
        where="listen[0].tls",
    )


def test_listenTLSDefaults() -> None:
    """TLS 1.2 minimum, HTTP/1.1 only (h2 is opt-in), no HSTS, no mTLS."""
    text = '[[listen]]\nendpoint = "tcp:8443"\n[listen.tls]\n'
    text += 'certificate = "a.pem"\nkey = "a.key"\n'
    tls = loadString(text, "/etc/p/site.toml").listen[0].tls
    assert tls is not None
    assert (tls.min_version, tls.alpn, tls.hsts, tls.client_ca, tls.sni) == (
        "1.2",
        ("http/1.1",),
        0,
        None,
        (),
    )


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_listenTLSOlderVersionsAndAnyCipherString(version: str) -> None:
    """min_version "1.0" and "1.1" load, as does a cipher string kept as given."""
    text = '[[listen]]\nendpoint = "tcp:8443"\n[listen.tls]\n'
    text += 'certificate = "a.pem"\nkey = "a.key"\n'
    text += f'min_version = "{version}"\nciphers = "HIGH:!aNULL:@SECLEVEL=0"\n'
    tls = loadString(text, "/etc/p/site.toml").listen[0].tls
    assert tls is not None
    assert (tls.min_version, tls.ciphers, tls.chain) == (
        version,
        "HIGH:!aNULL:@SECLEVEL=0",
        None,
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            'certificate = "a.pem"',
            "listen[0].tls.key: missing, expected a PEM file path",
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nchain = 5',
            "listen[0].tls.chain: expected a non-empty string, got 5",
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\n[[listen.tls.sni]]\n'
            'hosts = ["x.test"]\ncertificate = "b.pem"\nkey = "b.key"\nchain = ""',
            'listen[0].tls.sni[0].chain: expected a non-empty string, got ""',
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nmin_version = "1.4"',
            'listen[0].tls.min_version: expected one of "1.0", "1.1", "1.2", "1.3",'
            ' got "1.4"',
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nalpn = ["spdy/3"]',
            'listen[0].tls.alpn: expected one of "h2", "http/1.1", got "spdy/3"',
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nalpn = []',
            'listen[0].tls.alpn: expected at least one of "h2", "http/1.1"',
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nclient_cert_header = "X-S"',
            "listen[0].tls.client_cert_header: needs client_ca "
            "(only verified client certificates are passed on)",
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nhsts = -1',
            "listen[0].tls.hsts: expected an integer >= 0, got -1",
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\nsessions = true',
            "listen[0].tls.sessions: unknown key",
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\n[[listen.tls.sni]]\n'
            'hosts = ["a b"]\ncertificate = "b.pem"\nkey = "b.key"',
            "listen[0].tls.sni[0].hosts: expected a host name like "
            '"api.example.test" or "*.example.test", got "a b"',
        ),
        (
            'certificate = "a.pem"\nkey = "a.key"\n[[listen.tls.sni]]\n'
            'hosts = ["x.test"]\ncertificate = "b.pem"\nkey = "b.key"\n'
            '[[listen.tls.sni]]\nhosts = ["x.test"]\ncertificate = "c.pem"\n'
            'key = "c.key"',
            "listen[0].tls.sni[1].hosts: 'x.test' is also in listen[0].tls.sni[0]",
        ),
    ],
)
def test_listenTLSErrors(body: str, error: str) -> None:
    """Each wrong [listen.tls] value is named with its key path."""
    text = f'[[listen]]\nendpoint = "tcp:8443"\n[listen.tls]\n{body}\n'
    assert errorsOf(text) == [f"site.toml: {error}"]


def test_redirectHTTPS() -> None:
    """redirect_https keeps scheme, host and port; paths and http are refused."""
    text = '[[listen]]\nendpoint = "tcp:8000"\nredirect_https = "%s"\n'
    config = loadString(text % "https://proxy.example.test:8443/")
    assert config.listen[0].redirect_https == "https://proxy.example.test:8443"
    assert errorsOf(text % "http://proxy.example.test") == [
        "site.toml: listen[0].redirect_https: expected an https:// URL like "
        '"https://proxy.example.test:8443", got "http://proxy.example.test"'
    ]
    assert errorsOf(text % "https://proxy.example.test/app/") != []


def test_backendTLSKeys() -> None:
    """tls_ca and tls_verify on https routes and members; refused on http."""
    config = loadString(
        """
        [[route]]
        path = "/a/"
        to = "https://backend.test/"
        tls_ca = "ca.pem"
        [[route]]
        path = "/b/"
        to = "https://127.0.0.1:9443/"
        tls_verify = false
        [[route]]
        path = "/"
        to = "balancer://web/"
        [[balancer.web.member]]
        url = "https://127.0.0.1:9444"
        tls_ca = "/etc/ca.pem"
        """,
        "/srv/site.toml",
    )
    assert (config.routes[0].tls_ca, config.routes[0].tls_verify) == (
        "/srv/ca.pem",
        True,
    )
    assert (config.routes[1].tls_ca, config.routes[1].tls_verify) == (None, False)
    member = config.balancer("web").members[0]
    assert (member.tls_ca, member.tls_verify) == ("/etc/ca.pem", True)
    assert errorsOf(
        """
        [[route]]
        path = "/a/"
        to = "http://backend.test/"
        tls_verify = false
        [[route]]
        path = "/"
        to = "balancer://web/"
        tls_ca = "ca.pem"
        [[balancer.web.member]]
        url = "http://127.0.0.1:9001"
        tls_ca = "ca.pem"
        """
    ) == [
        "site.toml: route[0].tls_verify: only for https:// and wss:// backends, "
        "not http://",
        "site.toml: route[1].tls_ca: set it on the balancer's https:// members, "
        "not balancer://",
        "site.toml: balancer.web.member[0].tls_ca: only for https:// and wss:// "
        "backends, not http://",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('"8080"', '"8080"'),
        ('"127.0.0.1:8080"', '"127.0.0.1:8080"'),
        ('""', '""'),
        ('"tcp:"', '"tcp:"'),
        ("8080", "8080"),
    ],
)
def test_listenBadEndpoint(value: str, shown: str) -> None:
    """An endpoint without a type prefix such as tcp: is refused."""
    assert errorsOf(f"[[listen]]\nendpoint = {value}\n") == [
        "site.toml: listen[0].endpoint: expected a Twisted endpoint string like "
        f'"tcp:8080:interface=127.0.0.1", got {shown}'
    ]


def test_listenMissingEndpoint() -> None:
    """A [[listen]] without an endpoint is reported."""
    assert errorsOf("[[listen]]\n") == [
        "site.toml: listen[0].endpoint: missing, expected a Twisted endpoint string "
        'like "tcp:8080"'
    ]


def test_listenDuplicateEndpoint() -> None:
    """The same endpoint twice is refused: the second could never bind."""
    text = '[[listen]]\nendpoint = "tcp:80"\n[[listen]]\nendpoint = "tcp:80"\n'
    assert errorsOf(text) == [
        "site.toml: listen[1].endpoint: same endpoint as listen[0]"
    ]


def test_listenNotAnArrayOfTables() -> None:
    """[listen] written as a single table is refused with a hint."""
    assert errorsOf('[listen]\nendpoint = "tcp:80"\n') == [
        "site.toml: listen: expected an array of tables ([[listen]]), got a table"
    ]


def test_listenItemNotATable() -> None:
    """listen = ["tcp:80"] names the offending item."""
    assert errorsOf('listen = ["tcp:80"]\n') == [
        'site.toml: listen[0]: expected a table, got "tcp:80"'
    ]


# -- [[route]] ------------------------------------------------------------------


def test_routeAllKeys() -> None:
    """Every [[route]] key is read into Route."""
    route = onlyRoute(
        """
        [[route]]
        host = "API.example.test"
        path = "/api/users/"
        to = "http://127.0.0.1:3000/"
        reverse = ["http://users.internal/", "https://users.internal:8443/x/"]
        cookie_domain = { "users.internal" = "api.example.test" }
        cookie_path = { "/" = "/api/users/" }
        preserve_host = true
        timeout = 10
        allow = ["198.51.100.0/24", "::1"]
        deny = ["192.0.2.0/24"]
        websocket = false
        [route.request_headers]
        set = { "X-Forwarded-Proto" = "https" }
        unset = ["X-Debug"]
        """
    )
    assert route == Route(
        path="/api/users/",
        host="api.example.test",
        to=Target("http://127.0.0.1:3000/", "http", "127.0.0.1", 3000, "/"),
        reverse=("http://users.internal/", "https://users.internal:8443/x/"),
        cookie_domain=(("users.internal", "api.example.test"),),
        cookie_path=(("/", "/api/users/"),),
        preserve_host=True,
        timeout=10.0,
        allow=(
            ipaddress.ip_network("198.51.100.0/24"),
            ipaddress.ip_network("::1/128"),
        ),
        deny=(ipaddress.ip_network("192.0.2.0/24"),),
        request_headers=HeaderDirectives(
            set=(("X-Forwarded-Proto", "https"),), unset=("X-Debug",)
        ),
        index=0,
        websocket=False,
    )


def test_routeIndexIsFilePosition() -> None:
    """Route.index is the route's position in the file, and file order is kept."""
    config = loadString(
        """
        [[route]]
        path = "/"
        to = "http://127.0.0.1:1/"
        [[route]]
        path = "/a/"
        to = "http://127.0.0.1:2/"
        [[route]]
        path = "/a/b/"
        to = "http://127.0.0.1:3/"
        """
    )
    assert [(r.index, r.path) for r in config.routes] == [
        (0, "/"),
        (1, "/a/"),
        (2, "/a/b/"),
    ]


def test_routeAllowSingleAddressesAndNonStrict() -> None:
    """allow/deny take single addresses and CIDRs with host bits set."""
    route = onlyRoute(
        '[[route]]\npath = "/"\nto = "http://h/"\n'
        'allow = ["127.0.0.1", "198.51.100.9/24", "::1/128"]\n'
    )
    assert route.allow == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://127.0.0.1:3000/",
            Target("http://127.0.0.1:3000/", "http", "127.0.0.1", 3000, "/"),
        ),
        (
            "http://backend.internal",
            Target("http://backend.internal", "http", "backend.internal", 80, "/"),
        ),
        (
            "https://backend.internal/app/",
            Target(
                "https://backend.internal/app/",
                "https",
                "backend.internal",
                443,
                "/app/",
            ),
        ),
        (
            "ws://127.0.0.1/ws/",
            Target("ws://127.0.0.1/ws/", "ws", "127.0.0.1", 80, "/ws/"),
        ),
        (
            "wss://127.0.0.1/ws",
            Target("wss://127.0.0.1/ws", "wss", "127.0.0.1", 443, "/ws"),
        ),
        (
            "http://[::1]:8080/",
            Target("http://[::1]:8080/", "http", "::1", 8080, "/"),
        ),
        (
            "https://[2001:db8::1]/",
            Target("https://[2001:db8::1]/", "https", "2001:db8::1", 443, "/"),
        ),
        (
            "HTTP://Backend.Internal:81/X/",
            Target(
                "HTTP://Backend.Internal:81/X/", "http", "backend.internal", 81, "/X/"
            ),
        ),
    ],
)
def test_targetParsing(url: str, expected: Target) -> None:
    """A to URL is split into scheme, host, port (with defaults) and path."""
    assert targetOf(url) == expected


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("balancer://web/", "/"),
        ("balancer://web", "/"),
        ("balancer://web/app/", "/app/"),
    ],
)
def test_balancerTarget(url: str, path: str) -> None:
    """A balancer:// target names the balancer as host, with port 0."""
    config = loadString(
        f'[[route]]\npath = "/"\nto = "{url}"\n'
        '[[balancer.web.member]]\nurl = "http://127.0.0.1:9001"\n'
    )
    assert config.routes[0].to == Target(url, "balancer", "web", 0, path)


def test_unknownBalancer() -> None:
    """A balancer:// target must name a [balancer.NAME] in the file."""
    text = '[[route]]\npath = "/"\nto = "balancer://nope/"\n'
    assert errorsOf(text) == ['site.toml: route[0].to: unknown balancer "nope"']


def test_invalidBalancerStillKnown() -> None:
    """A route to a balancer that has its own errors reports only those."""
    text = BALANCED + '[[balancer.web.member]]\nurl = "http://h"\nweight = 0\n'
    assert errorsOf(text) == [
        "site.toml: balancer.web.member[0].weight: expected a positive integer, got 0"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '"ftp://files.internal/"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "ftp://files.internal/"',
        ),
        (
            '"127.0.0.1:3000"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "127.0.0.1:3000"',
        ),
        (
            '"http:///path"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "http:///path"',
        ),
        (
            '"http://h:99999/"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "http://h:99999/"',
        ),
        (
            '"http://h:0/"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "http://h:0/"',
        ),
        (
            '"http://user:pw@h/"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "http://user:pw@h/"',
        ),
        (
            '"http://[::1/"',
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            'balancer:// URL, got "http://[::1/"',
        ),
        (
            '"http://h/?a=1"',
            'route[0].to: expected a URL without query or fragment, got "http://h/?a=1"',
        ),
        (
            '"balancer:///"',
            'route[0].to: expected a URL like "balancer://NAME/", got "balancer:///"',
        ),
        (
            "3000",
            "route[0].to: expected an http://, https://, ws://, wss:// or "
            "balancer:// URL, got 3000",
        ),
    ],
)
def test_badTarget(value: str, message: str) -> None:
    """A to value that is not a usable backend URL is refused."""
    assert errorsOf(f'[[route]]\npath = "/"\nto = {value}\n') == [
        f"site.toml: {message}"
    ]


def test_routeBothToAndHandler() -> None:
    """A route needs exactly one of to, handler and exclude: both is an error."""
    text = '[[route]]\npath = "/"\nto = "http://h/"\nhandler = "status"\n'
    assert errorsOf(text) == [
        'site.toml: route[0]: expected exactly one of "to", "handler"'
        ' or "exclude = true"',
    ]


def test_routeNeitherToNorHandler() -> None:
    """A route needs exactly one of to, handler and exclude: none is an error."""
    assert errorsOf('[[route]]\npath = "/"\n') == [
        'site.toml: route[0]: expected exactly one of "to", "handler"'
        ' or "exclude = true"'
    ]


@pytest.mark.parametrize("handler", ["balancer-manager", "status", "info", "metrics"])
def test_everyHandlerIsServed(handler: str) -> None:
    """Each documented handler loads (and is local-only by default)."""
    [route] = loadString(f'[[route]]\npath = "/x"\nhandler = "{handler}"\n').routes
    assert route.handler == handler
    assert route.to is None


def test_unknownHandler() -> None:
    """A handler outside the documented ones is refused with the choices."""
    text = '[[route]]\npath = "/x"\nhandler = "phpinfo"\n'
    assert errorsOf(text) == [
        'site.toml: route[0].handler: expected one of "balancer-manager", '
        '"status", "info", "metrics", got "phpinfo"'
    ]


def test_balancerManagerRouteIsLocalOnlyByDefault() -> None:
    """A handler route without allow serves this machine only (Require local)."""
    config = loadString(
        '[[route]]\npath = "/balancer-manager"\nhandler = "balancer-manager"\n'
    )
    [route] = config.routes
    assert route.handler == "balancer-manager"
    assert [str(n) for n in route.allow] == ["127.0.0.0/8", "::1/128"]
    assert route.token_file is None
    opened = loadString(
        '[[route]]\npath = "/m"\nhandler = "balancer-manager"\n'
        'allow = ["192.0.2.0/24"]\n'
    )
    assert [str(n) for n in opened.routes[0].allow] == ["192.0.2.0/24"]


def test_tokenFile(tmp_path: Path) -> None:
    """token_file: read at load; missing, short or on a proxied route: errors."""
    good = tmp_path / "token"
    good.write_text("s3cret-token-0123456789\n")
    short = tmp_path / "short"
    short.write_text("abc\n")
    head = '[[route]]\npath = "/m"\nhandler = "balancer-manager"\n'
    config = loadString(head + f'token_file = "{good}"\n')
    assert config.routes[0].token_file == str(good)
    assert errorsOf(head + f'token_file = "{tmp_path / "none"}"\n') == [
        f"site.toml: route[0].token_file: cannot read {tmp_path / 'none'}:"
        " No such file or directory"
    ]
    assert errorsOf(head + f'token_file = "{short}"\n') == [
        f"site.toml: route[0].token_file: {short}: its first line must be a token"
        " of 16 to 4096 ASCII characters"
    ]
    proxied = '[[route]]\npath = "/"\nto = "http://h/"\n'
    assert errorsOf(proxied + f'token_file = "{good}"\n') == [
        "site.toml: route[0].token_file: only a handler route takes a token"
    ]


@pytest.mark.parametrize("path", ['"api/"', '""', '"/a b/"', '"/a?x=1"', "1"])
def test_routeBadPath(path: str) -> None:
    """A route path must start with "/" and be a plain URL path."""
    errors = errorsOf(f'[[route]]\npath = {path}\nto = "http://h/"\n')
    assert errors == [
        f'site.toml: route[0].path: expected a path starting with "/", got {path}'
    ]


def test_routeMissingPath() -> None:
    """A route without a path is reported."""
    assert errorsOf('[[route]]\nto = "http://h/"\n') == [
        'site.toml: route[0].path: missing, expected a path like "/app/" (or a match)'
    ]


@pytest.mark.parametrize(
    ("host", "stored"),
    [
        ("api.example.test", "api.example.test"),
        ("*.Example.Test", "*.example.test"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "[::1]"),
    ],
)
def test_routeHost(host: str, stored: str) -> None:
    """A route host is an exact name or *.domain, stored lower-case."""
    route = onlyRoute(f'[[route]]\nhost = "{host}"\npath = "/"\nto = "http://h/"\n')
    assert route.host == stored


@pytest.mark.parametrize(
    "host", ["", "*", "a.*.test", "example.test:8080", "http://x", "a..b", "-a.test"]
)
def test_routeBadHost(host: str) -> None:
    """A route host that is not a name or *.domain is refused."""
    text = f'[[route]]\nhost = "{host}"\npath = "/"\nto = "http://h/"\n'
    assert errorsOf(text) == [
        f'site.toml: route[0].host: expected a host name or "*.domain", got "{host}"'
    ]


def test_routeDuplicate() -> None:
    """Two routes with the same host and path are refused: one would be dead."""
    text = (
        '[[route]]\npath = "/a/"\nto = "http://h/"\n'
        '[[route]]\nhost = "x.test"\npath = "/a/"\nto = "http://h/"\n'
        '[[route]]\npath = "/a/"\nto = "http://i/"\n'
    )
    assert errorsOf(text) == ["site.toml: route[2]: same host and path as route[0]"]


def test_websocketFalseOnWebSocketRoute() -> None:
    """websocket = false contradicts a ws:// target."""
    text = '[[route]]\npath = "/ws/"\nto = "ws://h/ws/"\nwebsocket = false\n'
    assert errorsOf(text) == [
        "site.toml: route[0].websocket: a ws:// route always carries WebSockets, "
        "got false"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'preserve_host = "on"',
            'route[0].preserve_host: expected true or false, got "on"',
        ),
        (
            "timeout = 0",
            "route[0].timeout: expected a positive number of seconds, got 0",
        ),
        ('websocket = "no"', 'route[0].websocket: expected true or false, got "no"'),
        (
            'allow = ["127.0.0.1", "localhost"]',
            'route[0].allow[1]: expected a CIDR network or an address, got "localhost"',
        ),
        (
            'deny = ["198.51.100.0/33"]',
            "route[0].deny[0]: expected a CIDR network or an address, "
            'got "198.51.100.0/33"',
        ),
        (
            'reverse = "http://x/"',
            'route[0].reverse: expected an array of URLs, got "http://x/"',
        ),
        (
            'reverse = ["http://x/", "ws://y/"]',
            'route[0].reverse[1]: expected an http:// or https:// URL, got "ws://y/"',
        ),
        (
            'cookie_domain = { "a.internal" = 1 }',
            'route[0].cookie_domain."a.internal": expected a string, got 1',
        ),
        (
            'cookie_path = ["/"]',
            "route[0].cookie_path: expected a table, got an array",
        ),
        ("color = 1", "route[0].color: unknown key"),
    ],
)
def test_routeValueErrors(line: str, message: str) -> None:
    """Each wrong route value is reported with its key path and expectation."""
    text = f'[[route]]\npath = "/"\nto = "http://h/"\n{line}\n'
    assert errorsOf(text) == [f"site.toml: {message}"]


def test_routeRequestHeaderErrors() -> None:
    """[route.request_headers] is checked like the response headers."""
    text = (
        '[[route]]\npath = "/"\nto = "http://h/"\n'
        '[route.request_headers]\nset = { "X Y" = "1" }\nunset = [1]\n'
    )
    assert errorsOf(text) == [
        'site.toml: route[0].request_headers.set."X Y": '
        "expected a header name (an HTTP token)",
        "site.toml: route[0].request_headers.unset[0]: expected a header name, got 1",
    ]


def test_routeNotAnArrayOfTables() -> None:
    """[route] written as a single table is refused with a hint."""
    assert errorsOf('[route]\npath = "/"\n') == [
        "site.toml: route: expected an array of tables ([[route]]), got a table"
    ]


# -- [balancer.NAME] ------------------------------------------------------------


def test_balancer() -> None:
    """A balancer and its members are read, ports defaulting by scheme."""
    config = loadString(
        BALANCED
        + """
        method = "roundrobin"
        [[balancer.web.member]]
        url = "http://127.0.0.1:9001"
        route = "1"
        weight = 3
        [[balancer.web.member]]
        url = "https://app2.internal"
        route = "b-2"
        disabled = true
        [[balancer.web.member]]
        url = "http://[::1]/"
        standby = true
        """
    )
    assert config.balancers == (
        (
            "web",
            Balancer(
                name="web",
                method="roundrobin",
                members=(
                    Member(
                        url="http://127.0.0.1:9001",
                        scheme="http",
                        host="127.0.0.1",
                        port=9001,
                        route="1",
                        weight=3,
                    ),
                    Member(
                        url="https://app2.internal",
                        scheme="https",
                        host="app2.internal",
                        port=443,
                        route="b-2",
                        disabled=True,
                    ),
                    Member(
                        url="http://[::1]/",
                        scheme="http",
                        host="::1",
                        port=80,
                        standby=True,
                    ),
                ),
            ),
        ),
    )
    assert config.balancer("web").members[0].name == "http://127.0.0.1:9001"
    assert config.balancer("web").members[1].name == "https://app2.internal:443"


def test_balancerDefaults() -> None:
    """A balancer's method defaults to byrequests, a member's weight to 1."""
    config = loadString(BALANCED + '[[balancer.web.member]]\nurl = "http://h"\n')
    balancer = config.balancer("web")
    assert balancer.method == "byrequests"
    (member,) = balancer.members
    assert (member.weight, member.standby, member.disabled, member.route) == (
        1,
        False,
        False,
        None,
    )


def test_balancersKeepFileOrder() -> None:
    """Config.balancers lists the balancers in file order."""
    config = loadString(
        '[[balancer.b.member]]\nurl = "http://h:1"\n'
        '[[balancer.a.member]]\nurl = "http://h:2"\n'
    )
    assert [name for name, _ in config.balancers] == ["b", "a"]


@pytest.mark.parametrize(
    "method", ["byrequests", "bytraffic", "bybusyness", "roundrobin", "random2", "hash"]
)
def test_balancerMethods(method: str) -> None:
    """Every documented balancing method is accepted."""
    text = f'[balancer.web]\nmethod = "{method}"\n[[balancer.web.member]]\nurl = "http://h"\n'
    assert loadString(text).balancer("web").method == method


def test_balancerUnknownMethod() -> None:
    """An undocumented balancer method is refused with the choices."""
    text = '[balancer.web]\nmethod = "fastest"\n[[balancer.web.member]]\nurl = "http://h"\n'
    assert errorsOf(text) == [
        'site.toml: balancer.web.method: expected one of "byrequests", '
        '"bytraffic", "bybusyness", "roundrobin", "random2", "hash", got "fastest"'
    ]


def test_balancerAllKeys() -> None:
    """Every [balancer.NAME] key, sticky and health included, is read."""
    balancer = loadString(
        """
        [balancer.web]
        method = "hash"
        hash_key = "cookie:session"
        max_attempts = 2
        fail_on_status = [503, 502]
        retry = 15
        [balancer.web.sticky]
        name = "JSESSIONID"
        insert = true
        failover = false
        [balancer.web.health]
        method = "head"
        uri = "/health?full=1"
        interval = 10
        timeout = 2.5
        passes = 1
        fails = 4
        expect_status = ["2XX", "301", 418]
        expect_body = "^ok$"
        [[balancer.web.member]]
        url = "http://127.0.0.1:9001"
        route = "a"
        max_connections = 100
        drain = true
        tier = 1
        ignore_errors = true
        """
    ).balancer("web")
    assert balancer == Balancer(
        name="web",
        method="hash",
        hash_key="cookie:session",
        max_attempts=2,
        fail_on_status=(503, 502),
        retry=15.0,
        sticky=Sticky(name="JSESSIONID", insert=True, failover=False),
        health=HealthCheck(
            method="HEAD",
            uri="/health?full=1",
            interval=10.0,
            timeout=2.5,
            passes=1,
            fails=4,
            expect_status=("2xx", "301", "418"),
            expect_body="^ok$",
        ),
        members=(
            Member(
                url="http://127.0.0.1:9001",
                scheme="http",
                host="127.0.0.1",
                port=9001,
                route="a",
                max_connections=100,
                drain=True,
                tier=1,
                ignore_errors=True,
            ),
        ),
    )
    assert isinstance(balancer.retry, float)
    assert balancer.health is not None
    assert isinstance(balancer.health.interval, float)


def test_balancerNewKeyDefaults() -> None:
    """Without the optional keys a balancer has no sticky or health table."""
    config = loadString('[[balancer.web.member]]\nurl = "http://h"\n')
    balancer = config.balancer("web")
    assert (
        balancer.hash_key,
        balancer.max_attempts,
        balancer.fail_on_status,
        balancer.retry,
        balancer.sticky,
        balancer.health,
    ) == ("ip", None, (), 60.0, None, None)
    (member,) = balancer.members
    assert (
        member.max_connections,
        member.drain,
        member.tier,
        member.ignore_errors,
    ) == (0, False, 0, False)


def test_hashWithoutKeyHashesTheClientAddress() -> None:
    """method = "hash" without hash_key hashes the client address ("ip")."""
    text = (
        '[balancer.web]\nmethod = "hash"\n[[balancer.web.member]]\nurl = "http://h"\n'
    )
    assert loadString(text).balancer("web").hash_key == "ip"


def test_hashKeyWithAnotherMethod() -> None:
    """hash_key beside another method is accepted (and unused)."""
    text = (
        '[balancer.web]\nmethod = "byrequests"\nhash_key = "uri"\n'
        '[[balancer.web.member]]\nurl = "http://h"\n'
    )
    balancer = loadString(text).balancer("web")
    assert (balancer.method, balancer.hash_key) == ("byrequests", "uri")


@pytest.mark.parametrize(
    "key", ["ip", "uri", "header:X-Tenant", "cookie:session", "cookie:__Host-id"]
)
def test_hashKeys(key: str) -> None:
    """Each documented hash_key form is accepted as written."""
    text = (
        f'[balancer.web]\nmethod = "hash"\nhash_key = "{key}"\n'
        '[[balancer.web.member]]\nurl = "http://h"\n'
    )
    assert loadString(text).balancer("web").hash_key == key


def test_stickyDefaults() -> None:
    """An empty sticky table is Apache's ROUTEID, no insert, failover on."""
    text = '[balancer.web.sticky]\n[[balancer.web.member]]\nurl = "http://h"\n'
    assert loadString(text).balancer("web").sticky == Sticky(
        name="ROUTEID", insert=False, failover=True
    )


def test_stickyWithoutInsertAllowsMembersWithoutRoute() -> None:
    """Without insert, members without a route are simply never sticky targets."""
    text = (
        '[balancer.web.sticky]\nname = "JSESSIONID"\n'
        '[[balancer.web.member]]\nurl = "http://h:1"\nroute = "1"\n'
        '[[balancer.web.member]]\nurl = "http://h:2"\n'
    )
    assert [m.route for m in loadString(text).balancer("web").members] == ["1", None]


def test_stickyInsertNeedsEveryRoute() -> None:
    """With insert = true, every member without a route is named."""
    text = (
        "[balancer.web.sticky]\ninsert = true\n"
        '[[balancer.web.member]]\nurl = "http://h:1"\n'
        '[[balancer.web.member]]\nurl = "http://h:2"\nroute = "2"\n'
        '[[balancer.web.member]]\nurl = "http://h:3"\nstandby = true\n'
    )
    assert errorsOf(text) == [
        f"site.toml: balancer.web.member[{index}].route: missing, expected a route "
        "id for the sticky cookie ([balancer.web.sticky] has insert = true)"
        for index in (0, 2)
    ]


def test_healthDefaults() -> None:
    """An empty health table checks GET / every 30 s as documented."""
    text = '[balancer.web.health]\n[[balancer.web.member]]\nurl = "http://h"\n'
    assert loadString(text).balancer("web").health == HealthCheck(
        method="GET",
        uri="/",
        interval=30.0,
        timeout=5.0,
        passes=2,
        fails=3,
        expect_status=("2xx", "3xx"),
        expect_body=None,
    )


@pytest.mark.parametrize(
    ("written", "stored"),
    [("TCP", "TCP"), ("tcp", "TCP"), ("Options", "OPTIONS"), ("head", "HEAD")],
)
def test_healthMethodAnyCase(written: str, stored: str) -> None:
    """Health methods are accepted in any case and stored uppercase."""
    text = (
        f'[balancer.web.health]\nmethod = "{written}"\n'
        '[[balancer.web.member]]\nurl = "http://h"\n'
    )
    health = loadString(text).balancer("web").health
    assert health is not None
    assert health.method == stored


def test_allStandbyMembersAllowed() -> None:
    """A balancer whose members are all standby is valid."""
    text = (
        '[[balancer.web.member]]\nurl = "http://h:1"\nstandby = true\n'
        '[[balancer.web.member]]\nurl = "http://h:2"\nstandby = true\n'
    )
    members = loadString(text).balancer("web").members
    assert [m.standby for m in members] == [True, True]


def balancerErrors(table: str, line: str) -> list[str]:
    """The errors of a one-member balancer with C{line} in its C{table}."""
    header = "[balancer.web]" if not table else f"[balancer.web.{table}]"
    return errorsOf(f'{header}\n{line}\n[[balancer.web.member]]\nurl = "http://h"\n')


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("method = 1", "method: expected one of"),
        (
            'hash_key = "session"',
            'hash_key: expected one of "ip", "uri", "header:NAME", "cookie:NAME", '
            'got "session"',
        ),
        (
            'hash_key = "header:"',
            'hash_key: expected "header:NAME" with NAME a header name (an HTTP '
            'token), got "header:"',
        ),
        (
            'hash_key = "cookie:a b"',
            'hash_key: expected "cookie:NAME" with NAME a cookie name (an HTTP '
            'token), got "cookie:a b"',
        ),
        (
            'hash_key = "IP"',
            'hash_key: expected one of "ip", "uri", "header:NAME", "cookie:NAME", '
            'got "IP"',
        ),
        ("hash_key = 1", "hash_key: expected one of"),
        ("max_attempts = -1", "max_attempts: expected an integer >= 0, got -1"),
        ("max_attempts = 1.0", "max_attempts: expected an integer >= 0, got 1.0"),
        ("max_attempts = true", "max_attempts: expected an integer >= 0, got true"),
        (
            "fail_on_status = 503",
            "fail_on_status: expected an array of status codes, got 503",
        ),
        (
            "fail_on_status = [503, 600]",
            "fail_on_status[1]: expected a status code from 100 to 599, got 600",
        ),
        (
            'fail_on_status = ["503"]',
            'fail_on_status[0]: expected a status code from 100 to 599, got "503"',
        ),
        (
            "fail_on_status = [99]",
            "fail_on_status[0]: expected a status code from 100 to 599, got 99",
        ),
        (
            "fail_on_status = [503, 503]",
            "fail_on_status[1]: duplicate status 503",
        ),
        ("retry = 0", "retry: expected a positive number of seconds, got 0"),
        ("retry = -5.0", "retry: expected a positive number of seconds, got -5.0"),
        ('retry = "60"', 'retry: expected a positive number of seconds, got "60"'),
        ("sticky = true", "sticky: expected a table, got true"),
        ("health = []", "health: expected a table, got an array"),
        ("stickysession = 1", "stickysession: unknown key"),
    ],
)
def test_balancerNewValueErrors(line: str, message: str) -> None:
    """Each wrong balancer value is reported with its key path and expectation."""
    (error,) = balancerErrors("", line)
    assert error.startswith(f"site.toml: balancer.web.{message}")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('name = "a b"', 'name: expected a cookie name (an HTTP token), got "a b"'),
        ('name = "a=b"', 'name: expected a cookie name (an HTTP token), got "a=b"'),
        ('name = ""', 'name: expected a cookie name (an HTTP token), got ""'),
        ("name = 1", "name: expected a cookie name (an HTTP token), got 1"),
        ('insert = "yes"', 'insert: expected true or false, got "yes"'),
        ("failover = 0", "failover: expected true or false, got 0"),
        ("nofailover = true", "nofailover: unknown key"),
    ],
)
def test_stickyValueErrors(line: str, message: str) -> None:
    """Each wrong sticky value is reported under balancer.NAME.sticky."""
    assert balancerErrors("sticky", line) == [
        f"site.toml: balancer.web.sticky.{message}"
    ]


MEMBER_URL = "expected an http://, https://, ws://, wss://, ajp:// or tcp:// URL"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'method = "POST"',
            'method: expected one of "TCP", "CPING", "OPTIONS", "HEAD", "GET", '
            'got "POST"',
        ),
        (
            "method = 1",
            'method: expected one of "TCP", "CPING", "OPTIONS", "HEAD", "GET", got 1',
        ),
        ('uri = "health"', 'uri: expected a path starting with "/", got "health"'),
        ('uri = "/a b"', 'uri: expected a path starting with "/", got "/a b"'),
        ('uri = "/a#b"', 'uri: expected a path starting with "/", got "/a#b"'),
        ("uri = 1", 'uri: expected a path starting with "/", got 1'),
        ("interval = 0", "interval: expected a positive number of seconds, got 0"),
        (
            'timeout = "5"',
            'timeout: expected a positive number of seconds, got "5"',
        ),
        (
            "interval = 10\ntimeout = 10",
            "timeout: timeout must be shorter than interval, got timeout 10 and "
            "interval 10",
        ),
        (
            "interval = 0.1\ntimeout = 0.5",
            "timeout: timeout must be shorter than interval, got timeout 0.5 and "
            "interval 0.1",
        ),
        (
            "interval = 2",
            "timeout: timeout must be shorter than interval, got timeout 5 (the "
            "default) and interval 2",
        ),
        (
            "timeout = 45",
            "timeout: timeout must be shorter than interval, got timeout 45 and "
            "interval 30",
        ),
        ("passes = 0", "passes: expected a positive integer, got 0"),
        ("fails = 1.5", "fails: expected a positive integer, got 1.5"),
        (
            'expect_status = "2xx"',
            'expect_status: expected an array of statuses, got "2xx"',
        ),
        (
            "expect_status = []",
            "expect_status: expected at least one status class or code, "
            "got an empty array",
        ),
        (
            'expect_status = ["2xx", "6xx"]',
            'expect_status[1]: expected a status class like "2xx" or a code like '
            '"204", got "6xx"',
        ),
        (
            'expect_status = ["20"]',
            'expect_status[0]: expected a status class like "2xx" or a code like '
            '"204", got "20"',
        ),
        (
            "expect_status = [600]",
            'expect_status[0]: expected a status class like "2xx" or a code like '
            '"204", got 600',
        ),
        (
            'expect_status = ["2x"]',
            'expect_status[0]: expected a status class like "2xx" or a code like '
            '"204", got "2x"',
        ),
        (
            'expect_body = "("',
            'expect_body: expected a regular expression, got "(": missing ), '
            "unterminated subpattern at position 0",
        ),
        (
            'expect_body = "a{2,1}"',
            'expect_body: expected a regular expression, got "a{2,1}": min repeat '
            "greater than max repeat at position 2",
        ),
        ('expect_body = ""', 'expect_body: expected a non-empty string, got ""'),
        ("rise = 2", "rise: unknown key"),
    ],
)
def test_healthValueErrors(line: str, message: str) -> None:
    """Each wrong health value is reported under balancer.NAME.health."""
    assert balancerErrors("health", line) == [
        f"site.toml: balancer.web.health.{message}"
    ]


def test_healthTimeoutComparedOnlyWhenValid() -> None:
    """A wrong interval is reported alone, not also compared with the timeout."""
    assert balancerErrors("health", 'interval = "1"\ntimeout = 40') == [
        "site.toml: balancer.web.health.interval: expected a positive number of "
        'seconds, got "1"'
    ]


@pytest.mark.parametrize(
    ("lines", "fast"),
    [
        ("", None),
        ("fast_interval = 0.5\ntimeout = 0.25", 0.5),
        ("interval = 10\nfast_interval = 10\ntimeout = 1", 10.0),
        ("fast_interval = 6", 6.0),
    ],
)
def test_healthFastInterval(lines: str, fast: float | None) -> None:
    """fast_interval is read as seconds; absent, it is None (2 s or interval)."""
    text = (
        f'[balancer.web.health]\n{lines}\n[[balancer.web.member]]\nurl = "http://h"\n'
    )
    health = loadString(text).balancer("web").health
    assert health is not None
    assert health.fast_interval == fast


@pytest.mark.parametrize(
    ("lines", "messages"),
    [
        (
            "fast_interval = 0",
            ["fast_interval: expected a positive number of seconds, got 0"],
        ),
        (
            'fast_interval = "1"',
            ['fast_interval: expected a positive number of seconds, got "1"'],
        ),
        (
            "fast_interval = 45",
            [
                "fast_interval: fast_interval must not exceed interval, got "
                "fast_interval 45 and interval 30 (the default)"
            ],
        ),
        (
            "interval = 10\nfast_interval = 12\ntimeout = 1",
            [
                "fast_interval: fast_interval must not exceed interval, got "
                "fast_interval 12 and interval 10"
            ],
        ),
        (
            "fast_interval = 2",
            [
                "timeout: timeout must be shorter than fast_interval, got timeout 5 "
                "(the default) and fast_interval 2"
            ],
        ),
        (
            "fast_interval = 1\ntimeout = 1",
            [
                "timeout: timeout must be shorter than fast_interval, got timeout 1 "
                "and fast_interval 1"
            ],
        ),
        (
            "interval = 4\nfast_interval = 8\ntimeout = 6",
            [
                "timeout: timeout must be shorter than interval, got timeout 6 and "
                "interval 4",
                "fast_interval: fast_interval must not exceed interval, got "
                "fast_interval 8 and interval 4",
            ],
        ),
        (
            'interval = "x"\nfast_interval = 50\ntimeout = "y"',
            [
                'interval: expected a positive number of seconds, got "x"',
                'timeout: expected a positive number of seconds, got "y"',
            ],
        ),
    ],
)
def test_healthFastIntervalErrors(lines: str, messages: list[str]) -> None:
    """fast_interval is at most interval and longer than timeout, named by key."""
    assert balancerErrors("health", lines) == [
        f"site.toml: balancer.web.health.{message}" for message in messages
    ]


def test_balancerErrorsAllAtOnce() -> None:
    """Several wrong balancer, sticky, health and member values are all reported."""
    text = """
        [balancer.web]
        method = "hash"
        hash_key = "header:"
        max_attempts = -1
        fail_on_status = [503, 99]
        retry = 0
        [balancer.web.sticky]
        name = "a b"
        insert = true
        [balancer.web.health]
        method = "PING"
        interval = 5
        timeout = 6
        expect_body = "["
        [[balancer.web.member]]
        url = "http://127.0.0.1:9001"
        max_connections = -1
        tier = "1"
        [[balancer.web.member]]
        url = "http://127.0.0.1:9002"
        route = "2"
        drain = 1
        """
    assert errorsOf(text) == [
        'site.toml: balancer.web.hash_key: expected "header:NAME" with NAME a '
        'header name (an HTTP token), got "header:"',
        "site.toml: balancer.web.max_attempts: expected an integer >= 0, got -1",
        "site.toml: balancer.web.fail_on_status[1]: expected a status code from "
        "100 to 599, got 99",
        "site.toml: balancer.web.retry: expected a positive number of seconds, got 0",
        "site.toml: balancer.web.sticky.name: expected a cookie name (an HTTP "
        'token), got "a b"',
        "site.toml: balancer.web.health.method: expected one of "
        '"TCP", "CPING", "OPTIONS", "HEAD", "GET", got "PING"',
        "site.toml: balancer.web.health.expect_body: expected a regular expression, "
        'got "[": unterminated character set at position 0',
        "site.toml: balancer.web.health.timeout: timeout must be shorter than "
        "interval, got timeout 6 and interval 5",
        "site.toml: balancer.web.member[0].max_connections: expected an integer "
        ">= 0, got -1",
        'site.toml: balancer.web.member[0].tier: expected an integer >= 0, got "1"',
        "site.toml: balancer.web.member[1].drain: expected true or false, got 1",
        "site.toml: balancer.web.member[0].route: missing, expected a route id for "
        "the sticky cookie ([balancer.web.sticky] has insert = true)",
    ]


def test_balancerWithoutMembers() -> None:
    """A balancer with no members is an error."""
    assert errorsOf('[balancer.web]\nmethod = "byrequests"\n') == [
        "site.toml: balancer.web: expected at least one [[balancer.web.member]]"
    ]


def test_balancerWithEmptyMemberArray() -> None:
    """member = [] counts as no members."""
    assert errorsOf("[balancer.web]\nmember = []\n") == [
        "site.toml: balancer.web: expected at least one [[balancer.web.member]]"
    ]


def test_balancerNotATable() -> None:
    """balancer.NAME must be a table."""
    assert errorsOf("[balancer]\nweb = 1\n") == [
        "site.toml: balancer.web: expected a table, got 1"
    ]


def test_balancerBadName() -> None:
    """A balancer name must fit in a balancer:// URL."""
    text = '[[balancer."my web".member]]\nurl = "http://h"\n'
    assert errorsOf(text) == [
        'site.toml: balancer."my web": expected a balancer name of letters, '
        'digits, "-", "_" and "."'
    ]


def test_memberWeightExample() -> None:
    """The example from the brief: a non-integer weight on the third member."""
    text = (
        '[[balancer.web.member]]\nurl = "http://h:1"\n'
        '[[balancer.web.member]]\nurl = "http://h:2"\n'
        '[[balancer.web.member]]\nurl = "http://h:3"\nweight = "x"\n'
    )
    assert errorsOf(text) == [
        'site.toml: balancer.web.member[2].weight: expected a positive integer, got "x"'
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("weight = 0", "weight: expected a positive integer, got 0"),
        (
            "max_connections = -1",
            "max_connections: expected an integer >= 0, got -1",
        ),
        (
            "max_connections = 1.5",
            "max_connections: expected an integer >= 0, got 1.5",
        ),
        ('drain = "yes"', 'drain: expected true or false, got "yes"'),
        ("tier = -1", "tier: expected an integer >= 0, got -1"),
        ("tier = true", "tier: expected an integer >= 0, got true"),
        ("ignore_errors = 1", "ignore_errors: expected true or false, got 1"),
        ("weight = 1.5", "weight: expected a positive integer, got 1.5"),
        ("weight = true", "weight: expected a positive integer, got true"),
        ('standby = "yes"', 'standby: expected true or false, got "yes"'),
        ("disabled = 0", "disabled: expected true or false, got 0"),
        (
            'route = "a.b"',
            'route: expected a route id of letters, digits, "-" and "_", got "a.b"',
        ),
        (
            "route = 1",
            'route: expected a route id of letters, digits, "-" and "_", got 1',
        ),
        ("colour = 1", "colour: unknown key"),
    ],
)
def test_memberValueErrors(line: str, message: str) -> None:
    """Each wrong member value is reported with its key path and expectation."""
    text = f'[[balancer.web.member]]\nurl = "http://h"\n{line}\n'
    assert errorsOf(text) == [f"site.toml: balancer.web.member[0].{message}"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ('"tcp://127.0.0.1"', 'a tcp:// URL needs a port, got "tcp://127.0.0.1"'),
        (
            '"tcp://127.0.0.1:5432/db"',
            'expected a URL like "tcp://127.0.0.1:6379", got "tcp://127.0.0.1:5432/db"',
        ),
        ('"h2c://127.0.0.1:8081"', "h2c:// members are not supported yet"),
        ('"fcgi://127.0.0.1:9000"', "fcgi:// members are not supported yet"),
        ('"http://h/app/"', "a path on a member URL is not supported yet"),
        ('"ftp://h"', f'{MEMBER_URL}, got "ftp://h"'),
        ('"h:80"', f'{MEMBER_URL}, got "h:80"'),
        ("80", f"{MEMBER_URL}, got 80"),
    ],
)
def test_memberBadURL(url: str, message: str) -> None:
    """A member URL must be http(s) with a host and no path."""
    assert errorsOf(f"[[balancer.web.member]]\nurl = {url}\n") == [
        f"site.toml: balancer.web.member[0].url: {message}"
    ]


def test_memberMissingURL() -> None:
    """A member without a url is reported."""
    assert errorsOf('[[balancer.web.member]]\nroute = "1"\n') == [
        "site.toml: balancer.web.member[0].url: missing, expected a URL like "
        '"http://127.0.0.1:9001"'
    ]


def test_memberDuplicateRoute() -> None:
    """Two members of one balancer may not share a route id."""
    text = (
        '[[balancer.web.member]]\nurl = "http://h:1"\nroute = "1"\n'
        '[[balancer.web.member]]\nurl = "http://h:2"\nroute = "1"\n'
    )
    assert errorsOf(text) == [
        'site.toml: balancer.web.member[1].route: duplicate route "1" (also member[0])'
    ]


def test_memberDuplicateURL() -> None:
    """Two members of one balancer may not be the same worker."""
    text = (
        '[[balancer.web.member]]\nurl = "http://h"\n'
        '[[balancer.web.member]]\nurl = "http://h:80/"\n'
    )
    assert errorsOf(text) == [
        'site.toml: balancer.web.member[1].url: duplicate member "http://h:80" '
        "(also member[0])"
    ]


def test_sameRouteIdInTwoBalancers() -> None:
    """Route ids only need to be unique within one balancer."""
    config = loadString(
        '[[balancer.a.member]]\nurl = "http://h:1"\nroute = "1"\n'
        '[[balancer.b.member]]\nurl = "http://h:2"\nroute = "1"\n'
    )
    assert [b.members[0].route for _, b in config.balancers] == ["1", "1"]


# -- reporting ------------------------------------------------------------------


def test_allErrorsReportedAtOnce() -> None:
    """Validation goes on after the first error and reports every one."""
    text = """
        tls = true

        [proxy]
        tmeout = 3
        via = "maybe"
        max_body_bytes = -5

        [[listen]]
        endpoint = "8080"

        [[listen]]
        endpoint = "tcp:8443"
        tls = { certificate = "a.pem" }

        [[route]]
        path = "api"
        to = "balancer://nope/"

        [[route]]
        path = "/x"
        handler = "phpinfo"

        [balancer.web]
        method = "fast"
        [[balancer.web.member]]
        url = "http://127.0.0.1:9001"
        weight = "x"
        """
    errors = errorsOf(text)
    assert errors == [
        "site.toml: tls: unknown key",
        "site.toml: proxy.tmeout: unknown key",
        'site.toml: proxy.via: expected one of "off", "on", "full", "block", '
        'got "maybe"',
        "site.toml: proxy.max_body_bytes: expected an integer >= 0, got -5",
        "site.toml: listen[0].endpoint: expected a Twisted endpoint string like "
        '"tcp:8080:interface=127.0.0.1", got "8080"',
        "site.toml: listen[1].tls.key: missing, expected a PEM file path",
        'site.toml: route[0].path: expected a path starting with "/", got "api"',
        'site.toml: route[0].to: unknown balancer "nope"',
        'site.toml: route[1].handler: expected one of "balancer-manager", '
        '"status", "info", "metrics", got "phpinfo"',
        'site.toml: balancer.web.method: expected one of "byrequests", '
        '"bytraffic", "bybusyness", "roundrobin", "random2", "hash", got "fast"',
        "site.toml: balancer.web.member[0].weight: "
        'expected a positive integer, got "x"',
    ]


def test_configErrorStringListsErrors() -> None:
    """str(ConfigError) lists every error, one per line."""
    with pytest.raises(ConfigError) as info:
        loadString("[proxy]\na = 1\nb = 2\n", "site.toml")
    assert str(info.value) == (
        "site.toml: proxy.a: unknown key\nsite.toml: proxy.b: unknown key"
    )


def test_configErrorPickles() -> None:
    """A ConfigError survives pickling with its list of errors."""
    error = pickle.loads(pickle.dumps(ConfigError(["a: b: c", "d: e: f"])))
    assert error.errors == ["a: b: c", "d: e: f"]
    assert str(error) == "a: b: c\nd: e: f"


def test_defaultSourceNameInMessages() -> None:
    """Without a source, messages name <string>."""
    with pytest.raises(ConfigError) as info:
        loadString("bogus = 1\n")
    assert info.value.errors == ["<string>: bogus: unknown key"]


def test_tomlSyntaxErrorNamesFileAndLine() -> None:
    """A TOML syntax error becomes a ConfigError naming the file and line."""
    text = '[proxy]\ntimeout = 3\nvia "off"\n'
    assert errorsOf(text) == [
        "site.toml: line 3, column 5: invalid TOML: "
        "Expected '=' after a key in a key/value pair"
    ]


def test_tomlDuplicateTable() -> None:
    """A table declared twice is a syntax error with its line."""
    text = "[proxy]\ntimeout = 3\n[proxy]\n"
    (error,) = errorsOf(text)
    assert error.startswith("site.toml: line 3, column ")
    assert "invalid TOML" in error


def test_tomlErrorAtEndOfDocument() -> None:
    """A value cut off at the end of the file reports the last line."""
    assert errorsOf("[proxy]\ntimeout =") == [
        "site.toml: line 2 (end of file): invalid TOML: Invalid value"
    ]


# -- files ----------------------------------------------------------------------


def test_loadFile(tmp_path: Path) -> None:
    """load() reads the file, records it as source, resolves paths beside it."""
    path = tmp_path / "site.toml"
    path.write_text(
        '[proxy]\naccess_log = "logs/access.log"\n[[listen]]\nendpoint = "tcp:8080"\n',
        encoding="utf-8",
    )
    config = load(str(path))
    assert config.source == str(path)
    assert config.proxy.access_log == str(tmp_path / "logs" / "access.log")
    assert config.listen == (Listener("tcp:8080"),)


def test_loadFileErrorsNameTheFile(tmp_path: Path) -> None:
    """Errors from load() name the path it was given."""
    path = tmp_path / "site.toml"
    path.write_text("[proxy]\ntmeout = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [f"{path}: proxy.tmeout: unknown key"]


def test_loadMissingFile(tmp_path: Path) -> None:
    """A file that cannot be read is a ConfigError, not an OSError."""
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [
        f"{path}: cannot read the file: No such file or directory"
    ]


def test_loadNotUTF8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError naming it."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[proxy]\nserver_name = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [f"{path}: not UTF-8 text: invalid continuation byte"]


def test_loadCRLF(tmp_path: Path) -> None:
    """A file with Windows line endings loads."""
    path = tmp_path / "site.toml"
    path.write_bytes(b'[[listen]]\r\nendpoint = "tcp:8080"\r\n')
    assert load(str(path)).listen == (Listener("tcp:8080"),)


# -- the full vocabulary example -------------------------------------------------

FULL_EXAMPLE = """
[proxy]
server_name = "proxy.example.test"
server_tokens = "prod"
preserve_host = false
forwarded_headers = true
trusted_proxies = []
via = "off"
timeout = 60.0
connect_timeout = 5.0
header_timeout = 20.0
idle_timeout = 75.0
max_header_bytes = 65536
max_body_bytes = 0
access_log = "-"
access_log_format = "combined"
compress = ["text/html", "text/css", "application/json"]

[proxy.response_headers]
set = { "X-Content-Type-Options" = "nosniff" }
unset = ["X-Powered-By"]

[[listen]]
endpoint = "tcp:8080:interface=127.0.0.1"

[[route]]
host = "api.example.test"
path = "/api/users/"
to = "http://127.0.0.1:3000/"
reverse = ["http://users.internal/"]
cookie_domain = { "users.internal" = "api.example.test" }
cookie_path = { "/" = "/api/users/" }
preserve_host = true
timeout = 10.0
deny = ["192.0.2.0/24"]
[route.request_headers]
set = { "X-Forwarded-Proto" = "https" }
unset = ["X-Debug"]

[[route]]
path = "/ws/"
to = "ws://127.0.0.1:8081/ws/"

[[route]]
path = "/"
to = "balancer://web/"

[balancer.web]
method = "byrequests"
hash_key = "cookie:session"
max_attempts = 2
fail_on_status = [503]
retry = 60.0

[balancer.web.sticky]
name = "ROUTEID"
insert = true
failover = true

[balancer.web.health]
method = "GET"
uri = "/health"
interval = 30.0
timeout = 5.0
passes = 2
fails = 3
expect_status = ["2xx", "3xx"]
expect_body = "ok"

[[balancer.web.member]]
url = "http://127.0.0.1:9001"
route = "1"
weight = 1
[[balancer.web.member]]
url = "http://127.0.0.1:9002"
route = "2"
weight = 2
max_connections = 100
[[balancer.web.member]]
url = "http://127.0.0.1:9003"
route = "3"
standby = true
"""


def test_configExample() -> None:
    """The full vocabulary example, without the parts not built yet, loads whole."""
    config = loadString(FULL_EXAMPLE, "/etc/twisted-proxy/site.toml")
    assert config.source == "/etc/twisted-proxy/site.toml"
    assert config.proxy.server_name == "proxy.example.test"
    assert config.proxy.compress == ("text/html", "text/css", "application/json")
    assert config.proxy.response_headers == HeaderDirectives(
        set=(("X-Content-Type-Options", "nosniff"),), unset=("X-Powered-By",)
    )
    assert config.listen == (Listener("tcp:8080:interface=127.0.0.1"),)
    users, ws, root = config.routes
    assert users.host == "api.example.test"
    assert users.to == Target("http://127.0.0.1:3000/", "http", "127.0.0.1", 3000, "/")
    assert users.deny == (ipaddress.ip_network("192.0.2.0/24"),)
    assert users.request_headers.unset == ("X-Debug",)
    assert ws.to == Target("ws://127.0.0.1:8081/ws/", "ws", "127.0.0.1", 8081, "/ws/")
    assert root.to == Target("balancer://web/", "balancer", "web", 0, "/")
    assert [r.index for r in config.routes] == [0, 1, 2]
    web = config.balancer("web")
    assert [(m.port, m.route, m.weight, m.standby) for m in web.members] == [
        (9001, "1", 1, False),
        (9002, "2", 2, False),
        (9003, "3", 1, True),
    ]


def test_configExampleBalancer() -> None:
    """The example balancer, sticky and health tables load as written."""
    web = loadString(FULL_EXAMPLE).balancer("web")
    assert (web.hash_key, web.max_attempts, web.fail_on_status, web.retry) == (
        "cookie:session",
        2,
        (503,),
        60.0,
    )
    assert web.sticky == Sticky(name="ROUTEID", insert=True, failover=True)
    assert web.health == HealthCheck(
        method="GET",
        uri="/health",
        interval=30.0,
        timeout=5.0,
        passes=2,
        fails=3,
        expect_status=("2xx", "3xx"),
        expect_body="ok",
    )
    assert [m.max_connections for m in web.members] == [0, 100, 0]


def test_configExampleStreamBalancer() -> None:
    """The example's tcp:// balancer loads, checked by TCP connects."""
    text = FULL_EXAMPLE + (
        '[[route]]\npath = "/metrics"\nhandler = "metrics"\n'
        'allow = ["127.0.0.0/8", "::1/128"]\n'
        '[balancer.db]\nmethod = "bybusyness"\n'
        "[balancer.db.health]\ninterval = 10\n"
        '[[balancer.db.member]]\nurl = "tcp://127.0.0.1:5432"\n'
    )
    db = loadString(text).balancer("db")
    assert [(m.scheme, m.host, m.port) for m in db.members] == [
        ("tcp", "127.0.0.1", 5432)
    ]
    assert db.health is not None
    assert db.health.method == "TCP"


def test_websocketSettings() -> None:
    """[proxy.websocket] keys; defaults: no pings, 64 MiB messages, no idle limit."""
    assert loadString("").proxy.websocket == WebSocketSettings(0.0, 64 << 20, 0.0)
    config = loadString(
        "[proxy.websocket]\nping_interval = 20\nmax_message_bytes = 1048576\n"
        "idle_timeout = 300\n"
    )
    assert config.proxy.websocket == WebSocketSettings(20.0, 1048576, 300.0)
    assert errorsOf("[proxy.websocket]\nping_interval = -1\nmax_size = 3\n") == [
        "site.toml: proxy.websocket.max_size: unknown key",
        "site.toml: proxy.websocket.ping_interval: expected a number of seconds "
        "(0: off), got -1",
    ]


def test_websocketMembers() -> None:
    """ws:// and wss:// members are accepted; wss:// ones take tls_ca."""
    config = loadString(
        """
        [[balancer.chat.member]]
        url = "ws://127.0.0.1:8081"
        [[balancer.chat.member]]
        url = "wss://chat.internal:8443"
        tls_ca = "/etc/ca.pem"
        """
    )
    members = config.balancer("chat").members
    assert [(m.scheme, m.port, m.tls_ca) for m in members] == [
        ("ws", 8081, None),
        ("wss", 8443, "/etc/ca.pem"),
    ]


def test_workersCountsProcesses() -> None:
    """[proxy] workers: 1 by default, a number, or "auto": this process's CPUs."""
    assert loadString("").proxy.workers == 1
    assert loadString("[proxy]\nworkers = 3\n").proxy.workers == 3
    auto = loadString('[proxy]\nworkers = "auto"\n').proxy.workers
    assert auto == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "257", '"many"', "2.5", "true"])
def test_workersOutOfRangeIsRefused(value: str) -> None:
    """Anything but 1 to 256 or "auto" names the key and what it takes."""
    [error] = errorsOf(f"[proxy]\nworkers = {value}\n")
    assert error.startswith("site.toml: proxy.workers: expected an integer from 1")
    assert '256 or "auto"' in error


@pytest.mark.parametrize(
    ("endpoint", "refused"),
    [
        ("tcp:8080:interface=127.0.0.1", False),
        ("tcp6:8080:interface=\\\\:\\\\:1", False),
        ("unix:/tmp/twisted-proxy-test.sock", True),
    ],
)
def test_workersShareOnlyTCPListeners(endpoint: str, refused: bool) -> None:
    """With workers above 1, a listener must be one the processes can share."""
    from twisted_proxy.preflight import startupProblems

    text = f'[proxy]\nworkers = 2\n[[listen]]\nendpoint = "{endpoint}"\n'
    errors = startupProblems(loadString(text)).errors
    if refused:
        assert errors == [
            f"listen[0].endpoint: {endpoint!r}: with [proxy] workers above 1 a"
            " listener must be a tcp: or tcp6: endpoint (for TLS, add a"
            " [listen.tls] table)"
        ]
    else:
        assert errors == []
    single = text.replace("workers = 2", "workers = 1")
    assert startupProblems(loadString(single)).errors == []


STREAM = """
[[listen]]
endpoint = "tcp:6380:interface=127.0.0.1"
protocol = "tcp"
to = "balancer://redis"
[balancer.redis]
method = "bybusyness"
[[balancer.redis.member]]
url = "tcp://127.0.0.1:6379"
[[balancer.redis.member]]
url = "tcp://redis-2.internal:6379"
"""


def test_streamListener() -> None:
    """protocol = "tcp": its destination, a 300 s idle timeout, TCP health."""
    config = loadString(STREAM + "[balancer.redis.health]\ninterval = 10\n")
    [listener] = config.listen
    assert (listener.protocol, listener.idle_timeout) == ("tcp", 300.0)
    assert listener.to is not None
    assert (listener.to.scheme, listener.to.host) == ("balancer", "redis")
    redis = config.balancer("redis")
    assert [(m.scheme, m.host, m.port) for m in redis.members] == [
        ("tcp", "127.0.0.1", 6379),
        ("tcp", "redis-2.internal", 6379),
    ]
    assert redis.health is not None
    assert redis.health.method == "TCP"
    fixed = loadString(
        '[[listen]]\nendpoint = "tcp:6380"\nprotocol = "tcp"\n'
        'to = "tcp://127.0.0.1:6379"\nidle_timeout = 30\n'
    ).listen[0]
    assert fixed.to is not None
    assert (fixed.to.scheme, fixed.to.port, fixed.idle_timeout) == ("tcp", 6379, 30.0)


def test_streamListenerErrors() -> None:
    """What a tcp listener cannot have, and what an HTTP one cannot, by key."""
    text = (
        '[[listen]]\nendpoint = "tcp:1"\nprotocol = "tcp"\n'
        'redirect_https = "https://x"\n[listen.connect]\n'
        '[[listen]]\nendpoint = "tcp:2"\nprotocol = "udp"\n'
        '[[listen]]\nendpoint = "tcp:3"\nto = "tcp://127.0.0.1:1"\nidle_timeout = 5\n'
        '[[listen]]\nendpoint = "tcp:4"\nprotocol = "tcp"\nto = "http://h/"\n'
        '[[listen]]\nendpoint = "tcp:5"\nprotocol = "tcp"\nto = "tcp://h"\n'
    )
    assert errorsOf(text) == [
        "site.toml: listen[0].to: missing, expected where a tcp listener relays"
        ' to: "tcp://host:port" or "balancer://NAME"',
        'site.toml: listen[0].connect: not for protocol = "tcp"',
        'site.toml: listen[0].redirect_https: not for protocol = "tcp"',
        'site.toml: listen[1].protocol: expected one of "http", "tcp", got "udp"',
        'site.toml: listen[2].to: only for protocol = "tcp" (HTTP listeners send'
        " by route)",
        'site.toml: listen[2].idle_timeout: only for protocol = "tcp" (HTTP'
        " listeners send by route)",
        'site.toml: listen[3].to: expected a URL like "tcp://127.0.0.1:6379" or'
        ' "balancer://NAME", got "http://h/"',
        'site.toml: listen[4].to: a tcp:// URL needs a port, got "tcp://h"',
    ]


def test_streamBalancerErrors() -> None:
    """A stream balancer has nothing of HTTP; each side keeps to its kind."""
    text = STREAM + (
        '[balancer.redis.health]\nmethod = "GET"\ninterval = 10\n'
        '[balancer.redis.sticky]\nname = "ROUTEID"\n'
        "[balancer.mixed]\n"
        '[[balancer.mixed.member]]\nurl = "http://127.0.0.1:8080"\n'
        '[[balancer.mixed.member]]\nurl = "tcp://127.0.0.1:9000"\n'
        '[balancer.web]\n[[balancer.web.member]]\nurl = "http://127.0.0.1:8080"\n'
        '[[listen]]\nendpoint = "tcp:6381"\nprotocol = "tcp"\n'
        'to = "balancer://web"\n'
        '[[route]]\npath = "/"\nto = "balancer://redis/"\n'
    )
    assert errorsOf(text) == [
        "site.toml: balancer.redis.health.method: tcp:// members are checked by"
        ' TCP connects: "TCP" or leave it out',
        "site.toml: balancer.redis.sticky: not for tcp:// members: sticky sessions"
        " need HTTP cookies",
        "site.toml: balancer.mixed.member[1].url: tcp:// and HTTP members cannot"
        " share a balancer",
        "site.toml: listen[1].to: balancer 'web' has no tcp:// members",
        "site.toml: route[0].to: balancer 'redis' has tcp:// members: only a tcp"
        " listener relays to it",
    ]


def test_streamListenerTLS() -> None:
    """TLS on a tcp listener: any ALPN id, none by default; HTTP-only keys refused."""
    tls = '[listen.tls]\ncertificate = "c.pem"\nkey = "k.pem"\n'
    listener = loadString(STREAM + tls).listen[0]
    assert listener.tls is not None
    assert listener.tls.alpn == ()
    listener = loadString(STREAM + tls + 'alpn = ["redis", "imap"]\n').listen[0]
    assert listener.tls is not None
    assert listener.tls.alpn == ("redis", "imap")
    assert errorsOf(
        STREAM + tls + 'hsts = 100\nclient_cert_header = "X-Client"\n'
        'client_ca = "ca.pem"\n'
    ) == [
        'site.toml: listen[0].tls.hsts: HTTP only: not for protocol = "tcp"',
        "site.toml: listen[0].tls.client_cert_header: HTTP only: not for protocol"
        ' = "tcp"',
    ]


def test_streamProxyProtocol() -> None:
    """proxy_protocol and accept_proxy_protocol: tcp listeners only."""
    listener = loadString(
        STREAM.replace(
            'to = "balancer://redis"\n',
            'to = "balancer://redis"\nproxy_protocol = "v2"\n'
            'accept_proxy_protocol = ["198.51.100.0/24"]\n',
        )
    ).listen[0]
    assert listener.proxy_protocol == "v2"
    assert listener.accept_proxy_protocol == (ipaddress.ip_network("198.51.100.0/24"),)
    assert errorsOf(
        '[[listen]]\nendpoint = "tcp:1"\nproxy_protocol = "v1"\n'
        'accept_proxy_protocol = ["198.51.100.0/24"]\n'
        '[[listen]]\nendpoint = "tcp:2"\nprotocol = "tcp"\nto = "tcp://h:1"\n'
        'proxy_protocol = "v3"\n'
    ) == [
        'site.toml: listen[0].proxy_protocol: only for protocol = "tcp" (HTTP'
        " listeners send by route)",
        'site.toml: listen[0].accept_proxy_protocol: only for protocol = "tcp"'
        " (HTTP listeners send by route)",
        'site.toml: listen[1].proxy_protocol: expected one of "v1", "v2", got "v3"',
    ]


def test_streamMemberTLS() -> None:
    """tls = true on tcp:// members only; then tls_ca and tls_verify apply."""
    config = loadString(
        STREAM.replace(
            'url = "tcp://127.0.0.1:6379"\n',
            'url = "tcp://127.0.0.1:6379"\ntls = true\ntls_ca = "/etc/ca.pem"\n',
        )
    )
    first, second = config.balancer("redis").members
    assert (first.tls, first.tls_ca, second.tls) == (True, "/etc/ca.pem", False)
    assert errorsOf(
        '[[balancer.web.member]]\nurl = "https://h"\ntls = true\n'
        '[[balancer.db.member]]\nurl = "tcp://h:1"\ntls_ca = "ca.pem"\n'
    ) == [
        "site.toml: balancer.web.member[0].tls: only for tcp:// members (https://"
        " says by its scheme)",
        "site.toml: balancer.db.member[0].tls_ca: only with tls = true on a tcp://"
        " member, not tcp://",
    ]
