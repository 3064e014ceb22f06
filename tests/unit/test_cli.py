"""
Tests for the C{twisted-proxy} command line: check, routes and run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.tlsfiles import TestCA
from twisted_proxy import __version__
from twisted_proxy.cli import main
from twisted_proxy.preflight import NO_LISTENER

VALID = """
[proxy]
timeout = 30

[[listen]]
endpoint = "tcp:8080:interface=127.0.0.1"

[[route]]
path = "/"
to = "balancer://web/"

[[route]]
host = "api.example.test"
path = "/api/users/"
to = "http://127.0.0.1:3000/"
preserve_host = true
timeout = 10.5
deny = ["192.0.2.0/24"]
reverse = ["http://users.internal/"]

[[route]]
path = "/api/"
to = "http://[::1]:3001/"
allow = ["127.0.0.0/8", "::1"]
websocket = false

[[route]]
host = "*.example.test"
path = "/api/users/"
to = "http://127.0.0.1:3002/"

[balancer.web]
[[balancer.web.member]]
url = "http://127.0.0.1:9001"
"""

INVALID = """
[proxy]
tmeout = 3

[[route]]
path = "/"
to = "balancer://nope/"
"""


def writeConfig(tmp_path: Path, text: str) -> str:
    """Write C{text} as a config file and return its path."""
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_checkValid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check prints "FILE: ok" and exits 0 for a valid file."""
    path = writeConfig(tmp_path, VALID)
    assert main(["check", path]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{path}: ok\n"
    assert captured.err == ""


def test_checkInvalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check prints every error, one per line, and exits 1."""
    path = writeConfig(tmp_path, INVALID)
    assert main(["check", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: proxy.tmeout: unknown key",
        f'{path}: route[0].to: unknown balancer "nope"',
    ]


TLS_LISTENER = """
[[listen]]
endpoint = "tcp:8443:interface=127.0.0.1"
[listen.tls]
certificate = "tls/proxy.pem"
key = "tls/proxy.key"
"""


def test_checkNamesBadCertificateFiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check names a missing certificate and a key of another certificate."""
    (tmp_path / "tls").mkdir()
    ca = TestCA(tmp_path / "tls")
    other = ca.issue("localhost")
    os.replace(other.key, tmp_path / "tls" / "proxy.key")
    path = writeConfig(tmp_path, TLS_LISTENER)
    assert main(["check", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: listen[0].tls.certificate: {tmp_path}/tls/proxy.pem: no such file",
    ]
    ca.issue("localhost", stem="proxy")
    os.replace(other.certificate, tmp_path / "tls" / "proxy.pem")
    other2 = ca.issue("localhost")
    os.replace(other2.key, tmp_path / "tls" / "proxy.key")
    assert main(["check", path]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: listen[0].tls.key: {tmp_path}/tls/proxy.key: this key does not "
        f"match the certificate in {tmp_path}/tls/proxy.pem",
    ]


def test_checkWarnsAboutExpiredAndReadableKey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired certificate and a world-readable key are warnings: exit 0."""
    (tmp_path / "tls").mkdir()
    TestCA(tmp_path / "tls").issue("localhost", expired=True, stem="proxy")
    (tmp_path / "tls" / "proxy.key").chmod(0o644)
    path = writeConfig(tmp_path, TLS_LISTENER)
    assert main(["check", path]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{path}: ok (2 warnings)\n"
    lines = captured.err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        f"{path}: warning: listen[0].tls.certificate: {tmp_path}/tls/proxy.pem: "
        "the certificate expired on "
    )
    assert lines[1] == (
        f"{path}: warning: listen[0].tls.key: {tmp_path}/tls/proxy.key: the "
        "private key is readable by everyone (mode 0644); chmod 600 it"
    )


def test_checkNamesBackendCAAndUncheckedBackends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tls_ca that is no CA file is an error; tls_verify = false a warning."""
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    path = writeConfig(
        tmp_path,
        """
[[listen]]
endpoint = "tcp:8080"
[[route]]
path = "/a/"
to = "https://a.internal/"
tls_ca = "ca.pem"
[[route]]
path = "/b/"
to = "https://127.0.0.1:9443/"
tls_verify = false
""",
    )
    assert main(["check", path]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: route[0].tls_ca: {tmp_path}/ca.pem: ")
    assert lines[1] == (
        f"{path}: warning: TLS verification is off for https://127.0.0.1:9443 "
        "(route[1].tls_verify = false): its certificate is not checked"
    )
    TestCA(tmp_path)  # writes a real ca.pem
    assert main(["check", path]) == 0
    assert capsys.readouterr().out == f"{path}: ok (1 warning)\n"


def test_checkWarnsAboutWeakerTLSAndSaysOk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """min_version "1.0" and extra ciphers are warnings on stderr; check exits 0."""
    (tmp_path / "tls").mkdir()
    TestCA(tmp_path / "tls").issue("localhost", stem="proxy")
    path = writeConfig(
        tmp_path,
        TLS_LISTENER + 'min_version = "1.0"\nciphers = "ECDHE-ECDSA-AES128-SHA"\n',
    )
    assert main(["check", path]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{path}: ok (2 warnings)\n"
    assert captured.err.splitlines() == [
        f'{path}: warning: listen[0].tls.min_version: "1.0" is weaker than the'
        ' default "1.2": TLS 1.0 and 1.1 are let in (deprecated by RFC 8996), at'
        " OpenSSL security level 0",
        f"{path}: warning: listen[0].tls.ciphers: enables ciphers outside the"
        " default list: ECDHE-ECDSA-AES128-SHA",
    ]


def test_checkNamesBadChainAndCipherString(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing chain file and a cipher string OpenSSL refuses are errors."""
    (tmp_path / "tls").mkdir()
    TestCA(tmp_path / "tls").issue("localhost", stem="proxy")
    path = writeConfig(
        tmp_path, TLS_LISTENER + 'chain = "tls/chain.pem"\nciphers = "NOPE"\n'
    )
    assert main(["check", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: listen[0].tls.chain: {tmp_path}/tls/chain.pem: no such file",
        f'{path}: listen[0].tls.ciphers: "NOPE": OpenSSL enables no cipher suite'
        " with this string (no cipher match)",
    ]


def test_checkSyntaxError(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check reports a TOML syntax error with its line and exits 1."""
    path = writeConfig(tmp_path, "[proxy\n")
    assert main(["check", path]) == 1
    assert capsys.readouterr().err.startswith(f"{path}: line 1, column ")


def test_checkMissingFile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check on a missing file reports it and exits 1."""
    path = str(tmp_path / "nope.toml")
    assert main(["check", path]) == 1
    assert capsys.readouterr().err == (
        f"{path}: cannot read the file: No such file or directory\n"
    )


def test_routesTable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    routes prints aligned columns in the order matching tries the routes
    (host first, then the longest path), with effective options.
    """
    path = writeConfig(tmp_path, VALID)
    assert main(["routes", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "HOST              PATH         TARGET                  OPTIONS",
        "api.example.test  /api/users/  http://127.0.0.1:3000/  preserve_host=true "
        "timeout=10.5 deny=192.0.2.0/24 reverse=http://users.internal/",
        "*.example.test    /api/users/  http://127.0.0.1:3002/  preserve_host=false "
        "timeout=30",
        "*                 /api/        http://[::1]:3001/      preserve_host=false "
        "timeout=30 websocket=false allow=127.0.0.0/8,::1/128",
        "*                 /            balancer://web/         preserve_host=false "
        "timeout=30",
    ]


def test_routesProxyDefaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """routes shows the [proxy] preserve_host and timeout a route inherits."""
    path = writeConfig(
        tmp_path,
        '[proxy]\npreserve_host = true\n[[route]]\npath = "/"\nto = "http://h/"\n'
        '[route.request_headers]\nset = { X-A = "1" }\nunset = ["X-B"]\n',
    )
    assert main(["routes", path]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "*     /     http://h/  preserve_host=true timeout=60 set=X-A unset=X-B"
    )


def test_routesHostBeforePath(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host's short route is listed (and tried) before a longer host-less one."""
    path = writeConfig(
        tmp_path,
        '[[route]]\npath = "/api/v1/"\nto = "http://h/"\ntrace = true\n'
        '[[route]]\nhost = "www.example.test"\npath = "/"\nto = "http://w/"\n',
    )
    assert main(["routes", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [
        ["www.example.test", "/"],
        ["*", "/api/v1/"],
    ]
    assert lines[2].endswith("trace=true")


def test_routesAliasesMatchExclude(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A route is listed once per name (aliases where matching tries them), a
    match route by ~PATTERN before the prefixes, an exclude route as such,
    and a route's own connect_timeout.
    """
    path = writeConfig(
        tmp_path,
        '[[route]]\npath = "/"\nto = "http://h/"\n'
        '[[route]]\nhost = "a.test"\naliases = ["*.a.org", "www.a.test"]\n'
        'path = "/"\nto = "http://a/"\nconnect_timeout = 2.5\n'
        '[[route]]\nmatch = "\\\\.gif$"\nto = "http://img/$0"\n'
        '[[route]]\npath = "/static/"\nexclude = true\n',
    )
    assert main(["routes", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "HOST        PATH      TARGET         OPTIONS",
        "www.a.test  /         http://a/      preserve_host=false timeout=60"
        " connect_timeout=2.5 alias_of=a.test",
        "a.test      /         http://a/      preserve_host=false timeout=60"
        " connect_timeout=2.5 aliases=*.a.org,www.a.test",
        "*.a.org     /         http://a/      preserve_host=false timeout=60"
        " connect_timeout=2.5 alias_of=a.test",
        "*           ~\\.gif$   http://img/$0  preserve_host=false timeout=60",
        "*           /static/  exclude",
        "*           /         http://h/      preserve_host=false timeout=60",
    ]


def test_routesEmpty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """routes on a file without routes prints only the header."""
    path = writeConfig(tmp_path, "")
    assert main(["routes", path]) == 0
    assert capsys.readouterr().out == "HOST  PATH  TARGET  OPTIONS\n"


def test_routesInvalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """routes on an invalid file prints the errors and exits 1."""
    path = writeConfig(tmp_path, INVALID)
    assert main(["routes", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 2


def test_runInvokesTwistd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run hands over to twistd -n proxy --config FILE, then restores sys.argv."""
    from twisted.scripts import twistd

    seen: list[list[str]] = []
    monkeypatch.setattr(twistd, "run", lambda: seen.append(list(sys.argv)))
    before = list(sys.argv)
    path = writeConfig(tmp_path, VALID)
    assert main(["run", "--config", path]) == 0
    assert seen == [["twistd", "-n", "--pidfile=", "proxy", "--config", path]]
    assert sys.argv == before


def test_runExitCode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run returns the exit code twistd exits with."""
    from twisted.scripts import twistd

    def exit() -> None:
        raise SystemExit(3)

    monkeypatch.setattr(twistd, "run", exit)
    assert main(["run", "--config", writeConfig(tmp_path, VALID)]) == 3


def test_runInvalidConfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run refuses an invalid file with its errors and never starts twistd."""
    from twisted.scripts import twistd

    seen: list[list[str]] = []
    monkeypatch.setattr(twistd, "run", lambda: seen.append(list(sys.argv)))
    path = writeConfig(tmp_path, INVALID)
    assert main(["run", "--config", path]) == 1
    assert seen == []
    assert f"{path}: proxy.tmeout: unknown key" in capsys.readouterr().err


def test_runNeedsConfig(capsys: pytest.CaptureFixture[str]) -> None:
    """run without a file is a usage error (exit 2)."""
    assert main(["run"]) == 2
    assert "the configuration FILE is required" in capsys.readouterr().err


def test_runFileTwice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """run FILE --config OTHER is a usage error, not a guess."""
    path = writeConfig(tmp_path, VALID)
    assert main(["run", path, "--config", path + ".other"]) == 2
    assert "give the configuration file once" in capsys.readouterr().err


def test_runFileAsArgument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run FILE works as check FILE does; --log-level goes on to twistd."""
    from twisted.scripts import twistd

    seen: list[list[str]] = []
    monkeypatch.setattr(twistd, "run", lambda: seen.append(list(sys.argv)))
    path = writeConfig(tmp_path, VALID)
    assert main(["run", path]) == 0
    assert main(["run", path, "--log-level", "debug"]) == 0
    base = ["twistd", "-n", "--pidfile=", "proxy", "--config", path]
    assert seen == [base, [*base, "--log-level", "debug"]]


def test_runPrintsTwistdExitMessage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A start-up failure twistd exits with is printed, with exit status 1."""
    from twisted.scripts import twistd

    def exit() -> None:
        raise SystemExit("site.toml: listen[0].endpoint: cannot listen on tcp:8080")

    monkeypatch.setattr(twistd, "run", exit)
    assert main(["run", writeConfig(tmp_path, VALID)]) == 1
    assert capsys.readouterr().err == (
        "site.toml: listen[0].endpoint: cannot listen on tcp:8080\n"
    )


LISTEN = '[[listen]]\nendpoint = "tcp:8080:interface=127.0.0.1"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[proxy]\naccess_log = "{tmp}/no/such/folder/access.log"\n' + LISTEN,
            "proxy.access_log: the folder {tmp}/no/such/folder does not exist;"
            " create it or log elsewhere",
        ),
        (
            '[proxy]\naccess_log = "{tmp}"\n' + LISTEN,
            "proxy.access_log: {tmp} is a directory; name a file in it",
        ),
        (
            '[[listen]]\nendpoint = "tcp:notaport"\n',
            "listen[0].endpoint: 'tcp:notaport' is not an endpoint string Twisted"
            " can listen on (invalid literal for int() with base 10: 'notaport');"
            ' expected one like "tcp:8080:interface=127.0.0.1"',
        ),
        (
            '[[listen]]\nendpoint = "tcp:70000"\n',
            "listen[0].endpoint: cannot listen on 'tcp:70000': port 70000 is not"
            " between 0 and 65535",
        ),
        (
            '[[listen]]\nendpoint = "unix:{tmp}/gone/proxy.sock"\n',
            "listen[0].endpoint: cannot listen on 'unix:{tmp}/gone/proxy.sock':"
            " the folder {tmp}/gone does not exist",
        ),
        (
            '[proxy]\naccess_log_format = "%h %p"\n' + LISTEN,
            "proxy.access_log_format: unknown log format directive %p",
        ),
        ("", NO_LISTENER),
        ('[[route]]\npath = "/"\nto = "http://127.0.0.1:9001"\n', NO_LISTENER),
    ],
    ids=[
        "log-folder-missing",
        "log-is-folder",
        "endpoint-syntax",
        "endpoint-port",
        "unix-folder-missing",
        "log-format",
        "empty-file",
        "no-listen",
    ],
)
def test_checkCatchesWhatWouldStopRun(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    message: str,
) -> None:
    """
    What start-up would die of is a one-line error from check (and from run,
    before twistd starts), not ok.
    """
    from twisted.scripts import twistd

    path = writeConfig(tmp_path, text.replace("{tmp}", str(tmp_path)))
    expected = f"{path}: {message.replace('{tmp}', str(tmp_path))}\n"
    assert main(["check", path]) == 1
    assert capsys.readouterr() == ("", expected)
    started: list[str] = []
    monkeypatch.setattr(twistd, "run", lambda: started.append("twistd"))
    assert main(["run", path]) == 1
    assert capsys.readouterr() == ("", expected)
    assert started == []


def test_noCommand(capsys: pytest.CaptureFixture[str]) -> None:
    """No subcommand is a usage error (exit 2)."""
    assert main([]) == 2
    assert "usage: twisted-proxy" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"twisted-proxy {__version__}\n"
