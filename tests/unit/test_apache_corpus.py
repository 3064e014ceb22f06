"""
Real-world Apache files imported: Debian's own configuration (apache2.conf
with its ports, modules, sites and conf snippets, as the apache2 package
ships them, plus the proxy and TLS modules enabled), a typical front for
Tomcat over AJP, and a main file reading the rest through Include,
<IfModule> and <IfDefine>. None crashes the importer; each line it cannot
express is an error naming file, line and directive; and no line is dropped
in silence: taking any one line out changes the TOML or what is said.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from twisted_proxy.apache.convert import convert
from twisted_proxy.apache.emit import toml
from twisted_proxy.apache.importer import DISK, importFile, knownModule
from twisted_proxy.apache.parse import Directive, Section, parse
from twisted_proxy.config.loader import loadString

CORPUS = Path(__file__).resolve().parents[1] / "apache_corpus"
DEBIAN = CORPUS / "debian" / "apache2.conf"
TOMCAT = CORPUS / "tomcat" / "tomcat-front.conf"
INCLUDES = CORPUS / "includes" / "httpd.conf"

# What Debian's /etc/apache2/envvars exports before httpd reads its files.
ENVVARS = {
    "APACHE_RUN_USER": "www-data",
    "APACHE_RUN_GROUP": "www-data",
    "APACHE_PID_FILE": "/var/run/apache2/apache2.pid",
    "APACHE_RUN_DIR": "/var/run/apache2",
    "APACHE_LOCK_DIR": "/var/lock/apache2",
    "APACHE_LOG_DIR": "/var/log/apache2",
}


def tree(path: Path, variables: dict[str, str]) -> tuple[Directive, ...]:
    return parse(
        path.read_text(), str(path), DISK, knownModule, str(path.parent), variables
    )


def outcome(directives: tuple[Directive, ...], source: str) -> tuple[object, ...]:
    """Everything an import says: its TOML, its notices and its errors."""
    out = convert(directives)
    return (
        toml(out, source),
        [str(m) for m in out.notices],
        [str(m) for m in out.errors],
    )


def without(
    directives: tuple[Directive, ...], refused: frozenset[str]
) -> Iterator[tuple[Directive, tuple[Directive, ...]]]:
    """
    Each directive (at any depth) and the tree without it; not inside a
    section refused whole (C{refused}: where the errors are).
    """
    for index, d in enumerate(directives):
        yield d, directives[:index] + directives[index + 1 :]
        if isinstance(d, Section) and d.where not in refused:
            for inner, children in without(d.children, refused):
                rest = replace(d, children=children)
                yield inner, (*directives[:index], rest, *directives[index + 1 :])


def relative(message: str) -> str:
    return message.replace(str(CORPUS) + "/", "")


@pytest.mark.parametrize(
    ("path", "variables"),
    [(DEBIAN, ENVVARS), (TOMCAT, {}), (INCLUDES, {})],
    ids=["debian", "tomcat", "includes"],
)
def test_noLineIsDroppedInSilence(path: Path, variables: dict[str, str]) -> None:
    """Taking any one line out changes the TOML, the notices or the errors."""
    directives = tree(path, variables)
    whole = outcome(directives, str(path))
    errors = convert(directives).errors
    refused = frozenset(f"{e.file}:{e.line}" for e in errors)
    silent = [
        f"{d.where} {d.name}"
        for d, rest in without(directives, refused)
        if outcome(rest, str(path)) == whole
    ]
    assert silent == []


def test_debiansDefaultsAreAWebServersNotAProxys() -> None:
    """Serving files is an error that says so; the rest is read or noticed."""
    result = importFile(str(DEBIAN), variables=ENVVARS)
    assert result.text is None
    assert [relative(e) for e in result.errors] == [
        f"debian/{where}: this is a proxy, not a web server: nothing serves files"
        for where in (
            "apache2.conf:159: Directory",
            "apache2.conf:165: Directory",
            "apache2.conf:170: Directory",
            "apache2.conf:195: FilesMatch",
            "mods-enabled/alias.conf:13: Alias",
            "mods-enabled/alias.conf:15: Directory",
            "sites-enabled/000-default.conf:12: DocumentRoot",
            "sites-enabled/default-ssl.conf:4: DocumentRoot",
            "sites-enabled/default-ssl.conf:95: FilesMatch",
            "sites-enabled/default-ssl.conf:98: Directory",
        )
    ]
    notices = [relative(n) for n in result.notices]
    assert (
        "debian/mods-enabled/mpm_event.conf:13: MaxRequestWorkers: how httpd runs"
        " its processes: no meaning here, skipped" in notices
    )
    assert (
        "debian/ports.conf:11: IfModule: mod_gnutls.c is not a module understood"
        " here: the lines inside are skipped, as in an httpd without it" in notices
    )
    assert (
        "debian/sites-enabled/default-ssl.conf:13: CustomLog: the same log as an"
        " earlier CustomLog: one log here" in notices
    )


def test_debiansDefaultsWithoutTheirFilesServedRun(tmp_path: Path) -> None:
    """
    With the file-serving lines taken out, Debian's configuration loads:
    the listeners of ports.conf, TLS on 443 with ssl.conf's ciphers, the
    status page for this machine, compression and the access log.
    """
    serving = {"documentroot", "directory", "filesmatch", "alias"}

    def kept(directives: tuple[Directive, ...]) -> tuple[Directive, ...]:
        return tuple(
            replace(d, children=kept(d.children)) if isinstance(d, Section) else d
            for d in directives
            if d.key not in serving
        )

    out = convert(kept(tree(DEBIAN, ENVVARS)))
    assert [str(e) for e in out.errors] == []
    document = out.document()
    assert [listener["endpoint"] for listener in document["listen"]] == [
        "tcp:80",
        "tcp:443",
    ]
    assert document["listen"][1]["tls"] == {
        "certificate": "/etc/ssl/certs/ssl-cert-snakeoil.pem",
        "key": "/etc/ssl/private/ssl-cert-snakeoil.key",
        "ciphers": "HIGH:!aNULL",
        "min_version": "1.2",
    }
    assert document["proxy"]["access_log"] == "/var/log/apache2/access.log"
    assert document["proxy"]["access_log_format"] == (
        '%h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"'
    )
    assert "text/css" in document["proxy"]["compress"]
    assert document["proxy"]["header_timeout"] == 40.0
    assert document["proxy"]["idle_timeout"] == 5.0
    assert document["proxy"]["timeout"] == 300.0
    assert document["proxy"]["connect_timeout"] == 300.0
    assert [(r["path"], r["handler"], r["allow"]) for r in document["route"]] == [
        ("/server-status", "status", ["127.0.0.0/8", "::1/128"])
    ]


def test_anUndefinedVariableIsAnErrorNamingItsLine() -> None:
    """Without envvars' exports, ${APACHE_LOG_DIR} is named, line by line."""
    result = importFile(str(DEBIAN), variables={})
    assert (
        "debian/sites-enabled/000-default.conf:21: CustomLog: ${APACHE_LOG_DIR}"
        "/access.log holds a variable that is not defined: Define it, or export"
        " it as httpd's envvars file does"
    ) in [relative(e) for e in result.errors]


def test_aTomcatFront(tmp_path: Path) -> None:
    """AJP members and secrets, aliases, an excluded path, a <Location> route."""
    result = importFile(str(TOMCAT), variables={})
    assert result.errors == []
    assert result.text is not None
    (tmp_path / "logs").mkdir()
    config = loadString(result.text, str(tmp_path / "imported.toml"))
    routes = {route.path: route for route in config.routes}
    assert set(routes) == {"/shop/", "/shop/manager", "/reports"}
    shop, manager, reports = (
        routes["/shop/"],
        routes["/shop/manager"],
        routes["/reports"],
    )
    assert (shop.host, shop.aliases) == (
        "shop.example.test",
        ("www.shop.example.test",),
    )
    assert manager.exclude
    assert manager.aliases == ("www.shop.example.test",)
    assert reports.to is not None
    assert (reports.to.scheme, reports.secret, reports.timeout) == (
        "ajp",
        "s3cret-for-ajp",
        600.0,
    )
    assert reports.request_headers.set == (("X-Reports", "yes"),)
    tomcats = config.balancer("tomcats")
    assert [(m.scheme, m.port, m.route, m.secret) for m in tomcats.members] == [
        ("ajp", 8009, "node1", "s3cret-for-ajp"),
        ("ajp", 8010, "node2", "s3cret-for-ajp"),
    ]
    assert tomcats.sticky is not None
    assert tomcats.sticky.name == "JSESSIONID"
    assert (
        "tomcat/tomcat-front.conf:18: ProxySet: the route is read from the"
        " JSESSIONID cookie; the URL's ;jsessionid= is not read here"
    ) in [relative(n) for n in result.notices]


def test_includesAndConditions() -> None:
    """Included files by name order; each skipped block said, with its reason."""
    result = importFile(str(INCLUDES), variables={})
    assert result.errors == []
    assert result.text is not None
    config = loadString(result.text, str(INCLUDES) + " (imported)")
    assert [
        (r.path or r.match, r.handler or (r.to and r.to.url)) for r in config.routes
    ] == [
        ("/server-status", "status"),
        ("/app/", "http://127.0.0.1:9001/app/"),
        ("^/images/(.*\\.(png|jpg))$", "http://127.0.0.1:9002/img/$1"),
    ]
    assert config.proxy.via == "off"
    assert [
        relative(n) for n in result.notices if "IfModule" in n or "IfDefine" in n
    ] == [
        "includes/httpd.conf:10: IfModule: mod_proxy.c is a module understood here:"
        " the lines inside are skipped",
        "includes/httpd.conf:13: IfModule: mod_rewrite.c is not a module understood"
        " here: the lines inside are skipped, as in an httpd without it",
        "includes/httpd.conf:23: IfDefine: WITH_INFO is not defined: the lines"
        " inside are skipped",
    ]
