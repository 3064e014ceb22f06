"""
Apache directives turned into this proxy's configuration: the tables made,
Apache's defaults written out, the notices and the errors (each naming file,
line and directive), the TOML text and that it loads; and the import command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from twisted_proxy.apache.convert import convert
from twisted_proxy.apache.emit import toml
from twisted_proxy.apache.importer import importFile, knownModule
from twisted_proxy.apache.lines import Imported
from twisted_proxy.apache.parse import parse
from twisted_proxy.cli import main
from twisted_proxy.config.loader import loadString


def imported(text: str, listen: str | None = None) -> Imported:
    return convert(parse(text, "site.conf"), listen)


def said(messages: list[Any]) -> list[str]:
    return [str(m) for m in messages]


BALANCED = """\
LoadModule proxy_module modules/mod_proxy.so
<VirtualHost *:8080>
ServerName app.example.test
ProxyPreserveHost On
<Proxy balancer://cluster>
BalancerMember http://127.0.0.1:9001 route=one loadfactor=2
BalancerMember http://127.0.0.1:9002 route=two lbset=1 status=+H
BalancerMember http://127.0.0.1:9003 status=+D-H+N
ProxySet lbmethod=bybusyness stickysession=ROUTEID|routeid nofailover=On
ProxySet maxattempts=2 failonstatus=500,503
</Proxy>
ProxyPass /balancer-manager !
ProxyPass / balancer://cluster/ timeout=30
ProxyPassReverse / balancer://cluster/
<Location "/balancer-manager">
SetHandler balancer-manager
Require local
</Location>
</VirtualHost>
"""


def test_aBalancedVirtualHost() -> None:
    """Every parameter lands on its key; Apache's retry of 60 s is written out."""
    out = imported(BALANCED)
    assert said(out.errors) == []
    assert out.document() == {
        # Apache's connect timeout: the timeout, 60 s unless set.
        "proxy": {"connect_timeout": 60.0},
        "listen": [{"endpoint": "tcp:8080"}],
        "route": [
            {
                "path": "/",
                "to": "balancer://cluster/",
                "timeout": 30.0,
                "connect_timeout": 30.0,
                "host": "app.example.test",
                "preserve_host": True,
            },
            {
                "path": "/balancer-manager",
                "handler": "balancer-manager",
                "allow": ["127.0.0.0/8", "::1/128"],
                "host": "app.example.test",
            },
        ],
        "balancer": {
            "cluster": {
                "retry": 60.0,
                "member": [
                    {"url": "http://127.0.0.1:9001", "route": "one", "weight": 2},
                    {
                        "url": "http://127.0.0.1:9002",
                        "route": "two",
                        "tier": 1,
                        "standby": True,
                    },
                    {
                        "url": "http://127.0.0.1:9003",
                        "disabled": True,
                        "standby": False,
                        "drain": True,
                    },
                ],
                "method": "bybusyness",
                "sticky": {"name": "ROUTEID", "failover": False},
                "max_attempts": 2,
                "fail_on_status": [500, 503],
            }
        },
    }
    assert said(out.notices) == [
        "site.conf:1: LoadModule: how httpd runs its processes: no meaning here,"
        " skipped",
        "site.conf:9: ProxySet: the route is read from the ROUTEID cookie; the"
        " URL's ;routeid= is not read here",
        "site.conf:14: ProxyPassReverse: the route's own target: rewritten unasked"
        " here",
        "site.conf:12: ProxyPass: /balancer-manager is not proxied: its handler"
        " route serves it",
    ]


def test_theTOMLNamesItsLinesAndLoads() -> None:
    out = imported(BALANCED)
    text = toml(out, "site.conf")
    assert (
        "# site.conf:13 ProxyPass / balancer://cluster/ timeout=30\n[[route]]" in text
    )
    assert (
        "# site.conf:7 BalancerMember http://127.0.0.1:9002 route=two lbset=1"
        " status=+H\n[[balancer.cluster.member]]" in text
    )
    assert "# notice: site.conf:1: LoadModule:" in text
    config = loadString(text, "imported.toml")
    [(name, cluster)] = config.balancers
    assert [m.standby for m in cluster.members] == [False, True, False]
    assert cluster.sticky is not None
    assert not cluster.sticky.failover


def test_healthOnProxySetIsTakenWithANotice() -> None:
    """Apache refuses hcmethod/hcuri on ProxySet; the guide means a health check."""
    out = imported(
        "<Proxy balancer://b>\nBalancerMember http://127.0.0.1:9001\n"
        "ProxySet hcmethod=GET\nProxySet hcuri=/health\n</Proxy>\n"
        "ProxyPass / balancer://b/\n",
        listen="tcp:8000:interface=127.0.0.1",
    )
    assert said(out.errors) == []
    assert out.balancers["b"]["health"] == {
        "passes": 1,
        "fails": 1,
        "method": "GET",
        "uri": "/health",
    }
    assert said(out.notices)[:2] == [
        "site.conf:3: ProxySet: hcmethod belongs on BalancerMember (Apache refuses"
        " it on ProxySet): taken as the balancer's health check",
        "site.conf:4: ProxySet: hcuri belongs on BalancerMember (Apache refuses it"
        " on ProxySet): taken as the balancer's health check",
    ]
    assert out.listen == [{"endpoint": "tcp:8000:interface=127.0.0.1"}]


def test_noListenMeansApachesPort80WithANotice() -> None:
    out = imported("ProxyPass / http://127.0.0.1:9001/\n")
    assert out.listen == [{"endpoint": "tcp:80"}]
    assert said(out.notices) == [
        "site.conf:1: Listen: no Listen or VirtualHost: listening on port 80,"
        " Apache's default (import --listen ENDPOINT chooses another)"
    ]


@pytest.mark.parametrize(
    ("line", "endpoint"),
    [
        ("Listen 8080", "tcp:8080"),
        ("Listen 127.0.0.1:8080", "tcp:8080:interface=127.0.0.1"),
        ("Listen [::1]:8080", "tcp6:8080:interface=::1"),
        ("<VirtualHost 127.0.0.1:81>\n</VirtualHost>", "tcp:81:interface=127.0.0.1"),
    ],
)
def test_listeners(line: str, endpoint: str) -> None:
    assert imported(line).listen == [{"endpoint": endpoint}]


def test_serverWideSettings() -> None:
    out = imported(
        "Listen 80\nProxyTimeout 30\nProxyVia Off\nServerTokens Prod\n"
        "LogLevel warn proxy:trace2\nHeader always set X-Frame-Options DENY\n"
        "Header unset X-Powered-By\nProxyPass / http://b:8080/ ttl=60 max=20\n"
        "ProxyPassReverse / http://elsewhere.example.test/\n"
        "<Location />\nSetOutputFilter DEFLATE\n</Location>\n"
    )
    assert said(out.errors) == []
    assert out.proxy == {
        "timeout": 30.0,
        "connect_timeout": 30.0,
        "via": "off",
        "server_tokens": "prod",
        "log_level": "debug",
        "response_headers": {
            "set": {"X-Frame-Options": "DENY"},
            "unset": ["X-Powered-By"],
        },
        "pool_ttl": 60.0,
        "pool_size": 20,
        "compress": [
            "text/html",
            "text/plain",
            "text/css",
            "text/xml",
            "application/javascript",
            "application/json",
            "application/xml",
        ],
    }
    assert out.routes == [
        {
            "path": "/",
            "to": "http://b:8080/",
            "reverse": ["http://elsewhere.example.test/"],
        }
    ]
    loadString(toml(out, "site.conf"), "imported.toml")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "ProxyPass / http://a/\nProxyPass / http://b/ keepalive=On\n",
            "site.conf:2: ProxyPass: a second ProxyPass for / (site.conf:1 has it;"
            " Apache ignores this one silently)",
        ),
        (
            "ProxyPass / http://a/\nProxyPass /private !\n",
            "site.conf:2: ProxyPass: never reached in Apache: ProxyPass / at"
            " site.conf:1 matches these URLs first (put the longer path first, as"
            " Apache's manual says)",
        ),
        (
            "ProxyPass /api http://a/\nProxyPassMatch ^/api/(.*)$ http://b/$1\n",
            "site.conf:2: ProxyPassMatch: never reached in Apache: ProxyPass /api at"
            " site.conf:1 matches these URLs first (put the longer path first, as"
            " Apache's manual says)",
        ),
        (
            "ProxyPassMatch ^/(.*)\\.gif$ http://a/$1\n"
            "ProxyPassMatch ^/(.*)\\.gif$ http://b/$1\n",
            "site.conf:2: ProxyPassMatch: a second ProxyPassMatch for ^/(.*)\\.gif$"
            " (site.conf:1 has it; Apache ignores this one silently)",
        ),
        (
            "ProxyPassMatch ^/(unclosed http://a/\n",
            "site.conf:1: ProxyPassMatch: the regex '^/(unclosed' cannot be read"
            " here: missing ), unterminated subpattern at position 2",
        ),
        (
            "ProxyErrorOverride On\n",
            "site.conf:1: ProxyErrorOverride: the proxy's own error pages for a"
            " backend's errors: not supported",
        ),
        (
            "Header merge Cache-Control no-cache\n",
            "site.conf:1: Header: only set, add, append, unset, edit and edit* here",
        ),
        (
            "Header set X-A 1 env=HTTPS\n",
            "site.conf:1: Header: a condition (env=HTTPS) cannot be expressed",
        ),
        (
            "JkMount /app/* worker1\n",
            "site.conf:1: JkMount: mod_jk: write ProxyPass PATH ajp://HOST:8009/PATH"
            " instead",
        ),
        (
            "ProxyPass / http://a/\n<Location /api>\nRequestHeader set X 1\n"
            "</Location>\n",
            "site.conf:2: Location: RequestHeader here applies to a path that is not"
            " a whole ProxyPass route: give the path a ProxyPass of its own",
        ),
        (
            "CustomLog ${LOGS}/access.log combined\n",
            "site.conf:1: CustomLog: ${LOGS}/access.log holds a variable that is not"
            " defined: Define it, or export it as httpd's envvars file does",
        ),
        (
            "DocumentRoot /var/www/html\n",
            "site.conf:1: DocumentRoot: this is a proxy, not a web server: nothing"
            " serves files",
        ),
        (
            '<Directory "/var/www">\n</Directory>\n',
            "site.conf:1: Directory: this is a proxy, not a web server: nothing"
            " serves files",
        ),
        (
            "RewriteEngine On\n",
            "site.conf:1: RewriteEngine: cannot be expressed in twisted-proxy's"
            " configuration",
        ),
        (
            "<Proxy balancer://b>\nBalancerMember http://a status=+Z\n</Proxy>\n",
            "site.conf:2: BalancerMember: status flag 'Z' cannot be expressed",
        ),
        (
            "<Proxy balancer://b>\nProxySet lbmethod=heartbeat\n</Proxy>\n",
            "site.conf:2: ProxySet: lbmethod=heartbeat cannot be expressed",
        ),
        (
            "<Location /x>\nRequire valid-user\n</Location>\n",
            "site.conf:2: Require: only Require local, ip, all granted or all denied",
        ),
        (
            "ProxyRequests On\n",
            "site.conf:1: ProxyRequests: a forward proxy is [listen.connect] here,"
            " not this",
        ),
    ],
)
def test_whatCannotBeExpressedIsAnErrorNamingTheLine(text: str, error: str) -> None:
    assert error in said(imported(text).errors)


def test_processModelLinesAreNotices() -> None:
    out = imported(
        "ServerLimit 16\nMaxRequestWorkers 400\nThreadsPerChild 25\n"
        "a2enmod proxy proxy_http\n"
    )
    assert said(out.errors) == []
    assert [n.directive for n in out.notices][:4] == [
        "ServerLimit",
        "MaxRequestWorkers",
        "ThreadsPerChild",
        "a2enmod",
    ]


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("mod_proxy.c", True),
        ("proxy_module", True),
        ("mod_headers.c", True),
        ("ssl_module", True),
        ("mod_php.c", False),
        ("rewrite_module", False),
    ],
)
def test_knownModules(name: str, known: bool) -> None:
    assert knownModule(name) is known


def test_theImportCommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TOML on standard output, notices on standard error; errors: exit 1."""
    site = tmp_path / "site.conf"
    site.write_text(BALANCED)
    assert main(["import", str(site)]) == 0
    out, err = capsys.readouterr()
    loadString(out, "imported.toml")
    assert f"notice: {site}:1: LoadModule:" in err
    site.write_text(BALANCED + "DocumentRoot /var/www\n")
    assert main(["import", str(site)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{site}:20: DocumentRoot: this is a proxy, not a web server" in err


def test_includedFilesAreNamedInMessages(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "proxy.conf").write_text("ProxyPass / http://a/\nFoo bar\n")
    (tmp_path / "main.conf").write_text(
        "<IfModule mod_proxy.c>\nInclude conf.d/*.conf\n</IfModule>\n"
    )
    result = importFile(str(tmp_path / "main.conf"))
    assert result.text is None
    assert result.errors == [
        f"{tmp_path}/conf.d/proxy.conf:2: Foo: cannot be expressed in"
        " twisted-proxy's configuration"
    ]
    missing = importFile(str(tmp_path / "nothere.conf"))
    assert missing.errors == [f"{tmp_path}/nothere.conf: No such file or directory"]


TLS = """\
<VirtualHost 127.0.0.1:8443>
ServerName secure.example.test
SSLEngine on
SSLCertificateFile tls/proxy.pem
SSLCertificateKeyFile tls/proxy.key
SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1 -TLSv1.2
SSLCipherSuite HIGH:!aNULL
ProxyPass / http://127.0.0.1:9001/
RequestHeader set X-Forwarded-Proto "https"
RequestHeader unset X-Debug
</VirtualHost>
"""


def test_tlsAndRequestHeadersOfAVirtualHost() -> None:
    """SSL* lines make the host's listener TLS; RequestHeader goes on its routes."""
    out = imported(TLS)
    assert said(out.errors) == []
    assert out.listen == [
        {
            "endpoint": "tcp:8443:interface=127.0.0.1",
            "tls": {
                "certificate": "tls/proxy.pem",
                "key": "tls/proxy.key",
                "min_version": "1.3",
                "ciphers": "HIGH:!aNULL",
            },
        }
    ]
    assert out.routes[0]["request_headers"] == {
        "set": {"X-Forwarded-Proto": "https"},
        "unset": ["X-Debug"],
    }
    text = toml(out, "site.conf")
    assert "[listen.tls]" in text
    assert "[route.request_headers]" in text
    loadString(text, "imported.toml")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "SSLProtocol +TLSv1 +TLSv1.2",
            "only a lowest version and everything above it here",
        ),
        (
            "SSLProtocol all -QUIC",
            "only +/- with all, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 here",
        ),
        ("SSLProtocol +SSLv3", "SSLv3 cannot be offered here"),
        ("SSLProtocol -all", "leaves no TLS version on"),
    ],
)
def test_weakOrUnknownProtocols(line: str, error: str) -> None:
    text = TLS.replace("SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1 -TLSv1.2", line)
    assert any(error in e for e in said(imported(text).errors))


def test_tlsWithoutItsFiles() -> None:
    out = imported("<VirtualHost *:443>\nSSLEngine on\n</VirtualHost>\n")
    assert said(out.errors) == [
        "site.conf:2: SSLEngine: SSLEngine on needs SSLCertificateFile and"
        " SSLCertificateKeyFile"
    ]


def test_proxyStarGuardsEveryProxiedRoute() -> None:
    """Apache 2.2's Order deny,allow + Allow from: an allow list, with a notice."""
    out = imported(
        "Listen 80\n<Proxy *>\nOrder deny,allow\nDeny from all\n"
        "Allow from 192.0.2.0/24 198.51.100.7\n</Proxy>\n"
        "ProxyPass / http://127.0.0.1:9001/\n"
        "<Location /server-status>\nSetHandler server-status\nRequire local\n"
        "</Location>\n"
    )
    assert said(out.errors) == []
    assert out.routes[0]["allow"] == ["192.0.2.0/24", "198.51.100.7"]
    assert out.routes[1]["allow"] == ["127.0.0.0/8", "::1/128"]
    assert (
        "site.conf:2: Proxy: Order deny,allow with Deny from all: only Allow from"
        " is let in" in said(out.notices)
    )
    reverse = imported(
        "Listen 80\n<Proxy *>\nOrder allow,deny\nAllow from all\n"
        "Deny from 203.0.113.0/24\n</Proxy>\nProxyPass / http://127.0.0.1:9001/\n"
    )
    assert reverse.routes[0]["deny"] == ["203.0.113.0/24"]
    alone = imported("<Proxy *>\nRequire ip 192.0.2.1\n</Proxy>\n")
    assert "site.conf:1: Proxy: no ProxyPass here for these rules to guard" in said(
        alone.notices
    )


def test_theRouteCookieHeaderIsStickyInsert() -> None:
    """Header add Set-Cookie ROUTEID=.%{BALANCER_WORKER_ROUTE}e: insert = true."""
    out = imported(
        'Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/"\n'
        "<Proxy balancer://b>\nBalancerMember http://127.0.0.1:9001 route=1\n"
        "ProxySet stickysession=ROUTEID\n</Proxy>\nProxyPass / balancer://b/\n"
    )
    assert said(out.errors) == []
    assert out.balancers["b"]["sticky"] == {"name": "ROUTEID", "insert": True}
    assert "response_headers" not in out.proxy
    orphan = imported('Header add Set-Cookie "X=.%{BALANCER_WORKER_ROUTE}e"\n')
    assert said(orphan.errors) == [
        "site.conf:1: Header: no balancer has stickysession=X for this cookie"
    ]


def test_logFormatsByNickname() -> None:
    out = imported(
        'LogFormat "%h %>s backend:%{BALANCER_WORKER_NAME}e %D" proxy\n'
        "CustomLog /var/log/proxy.log proxy\n"
    )
    assert out.proxy == {
        "access_log": "/var/log/proxy.log",
        "access_log_format": "%h %>s backend:%{BALANCER_WORKER_NAME}e %D",
        "connect_timeout": 60.0,
    }
    assert said(imported('CustomLog "|/usr/bin/rotatelogs x" common\n').errors) == [
        "site.conf:1: CustomLog: piped logs cannot be expressed: log to a file or to -"
    ]
    named = imported("CustomLog - combined\n")
    assert named.proxy == {
        "access_log": "-",
        "access_log_format": "combined",
        "connect_timeout": 60.0,
    }


@pytest.mark.parametrize(
    ("text", "source", "apache"),
    [
        ("ProxyPass / http://a/\n", "site.toml", True),
        ("# a comment\n\n<VirtualHost *:80>\n</VirtualHost>\n", "x", True),
        ("[proxy]\ntimeout = 5\n", "site.conf", True),
        ("[proxy]\ntimeout = 5\n", "site.toml", False),
        ("# only\nserver_name = 'x'\n", "site", False),
        ('"quoted key" = 1\n', "site", False),
        ("[[route]]\n", "site", False),
        ("", "site", False),
    ],
)
def test_apacheFilesAreToldApart(text: str, source: str, apache: bool) -> None:
    """By the .conf extension, else by the first line: a directive, not a key."""
    from twisted_proxy.apache.importer import isApache

    assert isApache(text, source) is apache


def test_checkAndRoutesReadAnApacheFile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.conf"
    site.write_text(
        "LoadModule proxy_module x.so\nListen 8080\nProxyPass / http://a:1/\n"
    )
    assert main(["check", str(site)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{site}: ok\n"
    assert err == (
        f"notice: {site}:1: LoadModule: how httpd runs its processes: no meaning"
        " here, skipped\n"
    )
    site.write_text("Listen 8080\nProxyPass / http://a:1/\nRewriteEngine On\n")
    assert main(["check", str(site)]) == 1
    out, err = capsys.readouterr()
    assert err == (
        f"{site}:3: RewriteEngine: cannot be expressed in twisted-proxy's"
        " configuration\n"
    )


def test_cookiesHeadersCompressionAndAjp() -> None:
    """ProxyPassReverseCookie*, ProxyAddHeaders, AddOutputFilterByType, AJP secrets."""
    out = imported(
        "Listen 80\nProxyAddHeaders Off\n"
        "AddOutputFilterByType DEFLATE text/html application/json\n"
        "ProxyPass /app/ http://127.0.0.1:9001/\n"
        "ProxyPassReverseCookieDomain backend.internal example.test\n"
        "ProxyPassReverseCookiePath / /app/\n"
        "ProxyPass /tc/ ajp://127.0.0.1:8009/ secret=s3cret\n"
        "<Proxy balancer://tomcats>\n"
        "BalancerMember ajp://127.0.0.1:8010 route=node1 secret=s3cret\n"
        "</Proxy>\nProxyPass / balancer://tomcats/\n"
    )
    assert said(out.errors) == []
    assert out.proxy == {
        "forwarded_headers": False,
        "compress": ["text/html", "application/json"],
        "connect_timeout": 60.0,
    }
    assert out.routes[0]["cookie_domain"] == {"backend.internal": "example.test"}
    assert out.routes[0]["cookie_path"] == {"/": "/app/"}
    assert out.routes[1] == {
        "path": "/tc/",
        "to": "ajp://127.0.0.1:8009/",
        "secret": "s3cret",
    }
    assert out.balancers["tomcats"]["member"] == [
        {"url": "ajp://127.0.0.1:8010", "route": "node1", "secret": "s3cret"}
    ]
    config = loadString(toml(out, "site.conf"), "imported.toml")
    assert config.routes[1].secret == "s3cret"
    lone = imported("ProxyPassReverseCookiePath / /app/\n")
    assert said(lone.errors) == [
        "site.conf:1: ProxyPassReverseCookiePath: no ProxyPass before it in this"
        " host to rewrite for"
    ]


def test_aliasesExclusionsAndRegexRoutes() -> None:
    """ServerAlias, ProxyPass PATH ! without a handler, and ProxyPassMatch."""
    out = imported(
        "<VirtualHost *:80>\nServerName a.example.test\n"
        "ServerAlias www.a.example.test *.a.example.org\n"
        "ProxyPass /static/ !\n"
        'ProxyPassMatch "^/(.*\\.gif)$" "http://127.0.0.1:9002/img/$1"\n'
        "ProxyPassMatch ^/private/ !\n"
        "ProxyPass / http://127.0.0.1:9001/ connectiontimeout=3 timeout=9\n"
        "</VirtualHost>\n"
    )
    assert said(out.errors) == []
    names = {
        "host": "a.example.test",
        "aliases": ["www.a.example.test", "*.a.example.org"],
    }
    assert out.routes == [
        {"match": "^/(.*\\.gif)$", "to": "http://127.0.0.1:9002/img/$1", **names},
        {"match": "^/private/", "exclude": True, **names},
        {
            "path": "/",
            "to": "http://127.0.0.1:9001/",
            "connect_timeout": 3.0,
            "timeout": 9.0,
            **names,
        },
        {"path": "/static/", "exclude": True, **names},
    ]
    config = loadString(toml(out, "site.conf"), "imported.toml")
    assert [r.exclude for r in config.routes] == [False, True, False, True]


def test_aLocationsProxyPassAndRequestHeaders() -> None:
    """ProxyPass's one-argument form and RequestHeader inside <Location>."""
    out = imported(
        "RequestHeader set X-Site main\n"
        "<Location /api/>\nProxyPass http://127.0.0.1:9001/v1/ timeout=5\n"
        "ProxyPassReverse http://127.0.0.1:9001/v1/\n"
        "RequestHeader set X-Api yes\nRequestHeader unset Cookie\n"
        "Require ip 127.0.0.1\n</Location>\n"
        "ProxyPass / http://127.0.0.1:9002/\n"
    )
    assert said(out.errors) == []
    api, rest = out.routes
    assert api == {
        "path": "/api/",
        "to": "http://127.0.0.1:9001/v1/",
        "timeout": 5.0,
        "connect_timeout": 5.0,
        "allow": ["127.0.0.1"],
        "request_headers": {
            "set": {"X-Site": "main", "X-Api": "yes"},
            "unset": ["Cookie"],
        },
    }
    assert rest["request_headers"] == {"set": {"X-Site": "main"}}


def test_headerAddAppendEdit() -> None:
    """Header add, append, edit and edit*, as the header tables' keys."""
    out = imported(
        "Header always add Link </style.css>;rel=preload\n"
        "Header append Cache-Control no-transform\n"
        'Header edit Set-Cookie "^(.*)$" "$1; Secure"\n'
        'Header edit* X-Trace "a" "b"\n'
        "RequestHeader append X-Chain proxy\n"
        "ProxyPass / http://127.0.0.1:9001/\n"
    )
    assert said(out.errors) == []
    assert out.proxy["response_headers"] == {
        "add": [["Link", "</style.css>;rel=preload"]],
        "append": [["Cache-Control", "no-transform"]],
        "edit": [["Set-Cookie", "^(.*)$", "$1; Secure"]],
        "edit_all": [["X-Trace", "a", "b"]],
    }
    assert out.routes[0]["request_headers"] == {"append": [["X-Chain", "proxy"]]}
    loadString(toml(out, "site.conf"), "imported.toml")


def test_healthExpressions() -> None:
    """ProxyHCExpr status tests become expect_status; body tests expect_body."""
    out = imported(
        "ProxyHCExpr ok234 {%{REQUEST_STATUS} =~ /^[234]/}\n"
        "ProxyHCExpr alive {hc('body') =~ /alive/ && %{REQUEST_STATUS} -lt 300}\n"
        "ProxyHCExpr gone {hc('body') !~ /Maintenance/}\n"
        "<Proxy balancer://a>\n"
        "BalancerMember http://127.0.0.1:9001 hcmethod=GET hcexpr=ok234\n</Proxy>\n"
        "<Proxy balancer://b>\n"
        "BalancerMember http://127.0.0.1:9002 hcexpr=alive hcuri=/up\n</Proxy>\n"
        "<Proxy balancer://c>\n"
        "BalancerMember http://127.0.0.1:9003 hcexpr=gone\n</Proxy>\n"
        "<Proxy balancer://d>\n"
        "BalancerMember http://127.0.0.1:9004 hcexpr=nowhere\n</Proxy>\n"
    )
    assert out.balancers["a"]["health"] == {
        "passes": 1,
        "fails": 1,
        "method": "GET",
        "expect_status": ["2xx", "3xx", "4xx"],
    }
    assert out.balancers["b"]["health"] == {
        "passes": 1,
        "fails": 1,
        "expect_status": ["1xx", "2xx"],
        "expect_body": "alive",
        "uri": "/up",
    }
    assert said(out.errors) == [
        "site.conf:11: BalancerMember: ProxyHCExpr gone (site.conf:3): of the"
        " body, only one hc('body') =~ /text/ can be expressed",
        "site.conf:14: BalancerMember: no ProxyHCExpr nowhere before it",
    ]


def test_membersTimeoutsBecomeTheirRoutes() -> None:
    """
    BalancerMember timeout= and connectiontimeout=: the routes' own;
    ProxySet timeout= (Apache's wait for a usable member): the balancer's wait.
    """
    out = imported(
        "<Proxy balancer://a>\n"
        "BalancerMember http://127.0.0.1:9001 timeout=20 connectiontimeout=2\n"
        "BalancerMember http://127.0.0.1:9002 timeout=20 connectiontimeout=2\n"
        "ProxySet timeout=15\n"
        "</Proxy>\nProxyPass /a/ balancer://a/\n"
        "<Proxy balancer://b>\n"
        "BalancerMember http://127.0.0.1:9003 timeout=5\n"
        "BalancerMember http://127.0.0.1:9004 timeout=6\n"
        "</Proxy>\nProxyPass /b/ balancer://b/\n"
    )
    assert out.routes[0] == {
        "path": "/a/",
        "to": "balancer://a/",
        "timeout": 20.0,
        "connect_timeout": 2.0,
    }
    assert out.balancers["a"]["wait"] == 15.0
    assert said(out.errors) == [
        "site.conf:8: BalancerMember: timeout= differs between members: one per"
        " balancer here"
    ]


def test_weakerTLSIsHonouredWithANotice() -> None:
    """An explicit +TLSv1.1 is kept, with a notice; the chain file too."""
    text = TLS.replace(
        "SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1 -TLSv1.2",
        "SSLProtocol -all +TLSv1.1 +TLSv1.2 +TLSv1.3\n"
        "SSLCertificateChainFile tls/chain.pem",
    )
    out = imported(text)
    assert said(out.errors) == []
    tls = out.listen[0]["tls"]
    assert (tls["min_version"], tls["chain"]) == ("1.1", "tls/chain.pem")
    assert (
        "site.conf:6: SSLProtocol: TLS 1.1 is weaker than the default 1.2: offered"
        " as asked, with a warning when the proxy starts"
    ) in said(out.notices)


def test_timeoutsAsApacheHasThem() -> None:
    """Timeout is the default of ProxyTimeout and of connecting; the rest mapped."""
    out = imported(
        "Timeout 300\nKeepAliveTimeout 5\nRequestReadTimeout header=20-40,minrate=500\n"
        "TraceEnable On\nProxyErrorOverride Off\nProxyPass / http://127.0.0.1:9001/\n"
    )
    assert said(out.errors) == []
    assert out.proxy == {
        "send_timeout": 300.0,
        "idle_timeout": 5.0,
        "header_timeout": 40.0,
        "timeout": 300.0,
        "connect_timeout": 300.0,
    }
    assert out.routes[0]["trace"] is True
    proxied = imported("Timeout 300\nProxyTimeout 30\n")
    assert (proxied.proxy["timeout"], proxied.proxy["connect_timeout"]) == (30.0, 30.0)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "ProxyPass / http://127.0.0.1:9001/ timeout=soon\n",
            "site.conf:1: ProxyPass: 'soon': expected a time like 30, 500ms or 2mi",
        ),
        (
            "ProxyTimeout 30x\n",
            "site.conf:1: ProxyTimeout: '30x': expected a time like 30, 500ms or 2mi",
        ),
        (
            "<Location /a/>\nProxyPass http://127.0.0.1:9001/ max=many\n</Location>\n",
            "site.conf:2: ProxyPass: 'many': expected a whole number",
        ),
        (
            "<Proxy balancer://b>\nProxySet failonstatus=500,5xx\n</Proxy>\n",
            "site.conf:2: ProxySet: '5xx': expected a whole number",
        ),
    ],
)
def test_aBadValueIsAnErrorNamingItsLine(text: str, error: str) -> None:
    """A value a directive cannot take is refused, never replaced by a default."""
    assert said(imported(text).errors) == [error]


def test_aBadMemberLeavesTheOthersRead() -> None:
    """One member's bad value is its line's error; the members after it are read."""
    out = imported(
        "<Proxy balancer://b>\n"
        "BalancerMember http://127.0.0.1:9001 loadfactor=heavy\n"
        "BalancerMember http://127.0.0.1:9002 loadfactor=2 hcinterval=1mi\n"
        "</Proxy>\nProxyPass / balancer://b/\n"
    )
    assert said(out.errors) == [
        "site.conf:2: BalancerMember: 'heavy': expected a whole number"
    ]
    assert out.balancers["b"]["member"] == [
        {"url": "http://127.0.0.1:9002", "weight": 2}
    ]
    assert out.balancers["b"]["health"]["interval"] == 60.0
