"""The TLS part of ``python -m bench``: twisted-proxy and nginx over HTTPS and h2.

One fast backend (L{bench.backend}) on the load CPU; each proxy in turn alone on
the proxy CPU, listening on 127.0.0.1 both in plaintext and with TLS (one ECDSA
P-256 certificate made here for the run, ALPN C{h2} and C{http/1.1}). For each
proxy, five figures, each after a warm-up with the same tool:

- plaintext keep-alive requests/s (C{wrk}), the reference for C{https};
- HTTPS keep-alive requests/s (C{wrk} over C{https://});
- plaintext connections/s, one request per new TCP connection (C{ab});
- full TLS handshakes/s, one request per new connection and a full handshake on
  every one of them (C{ab} over C{https://});
- HTTP/2 requests/s over TLS (C{h2load}), after C{curl --http2} has fetched C{/}.

Full handshakes: C{ab} (Debian's C{apache2-utils}) gives each connection a new
TLS session and never offers an old one, while C{wrk} and C{h2load} keep the
session a server hands out and resume it on their next connection (a resumed
handshake skips the certificate and its signature: much cheaper). Both proxies
resume a session offered to them (twisted-proxy keeps a server-side cache, and
nginx is set up like it), so that is checked on every run with nginx among
the targets: nginx's I{probe} server logs C{$ssl_session_reused} for each
request; C{ab}'s handshake load must show no resumed session there, and
C{h2load}'s, as the control, must.

Ratios: each proxy's HTTPS figure over its plaintext one (keep-alive requests,
and new connections), and twisted-proxy's figures over nginx's, each from
requests/s and from the proxy's CPU time per request. The second is the one to
compare when the proxy was not saturated: with one CPU for the load tools and
the backend, nginx can be faster than they are, and a full TLS 1.3 handshake
costs the client more CPU than the server (it verifies the server's signature).
Each row says how busy the proxy was. A proxy that is not saturated handles
fewer events per wake-up, so its CPU per request is if anything too high: a
ratio to an unsaturated nginx errs in twisted-proxy's favour.

Tools missing here are installed with apt-get (C{nginx}, C{apache2-utils},
C{nghttp2-client}). Run as part of ``python -m bench`` or alone with
C{--tls-only}; the figures also go to C{bench/results/tls.json}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench import backend
from bench._procs import (
    ROOT,
    Child,
    ChildError,
    Children,
    busyShares,
    cpuSeconds,
    cpuTimes,
    freePort,
    waitForListener,
    waitForPortFile,
)
from bench.nginx import (
    NginxPorts,
    nginxCommand,
    nginxConfig,
    parseProbeLog,
)
from bench.wrk import WrkError, ensureWrk, parseWrk, wrkCommand

TWISTED_PROXY = "twisted-proxy"
NGINX = "nginx"
TLS_TARGETS = (TWISTED_PROXY, NGINX)
# The figures measured for each proxy, in the order they are run and shown.
PLAIN_KEEPALIVE = "plain_keepalive"
HTTPS_KEEPALIVE = "https_keepalive"
PLAIN_CLOSE = "plain_close"
HTTPS_HANDSHAKE = "https_handshake"
H2 = "h2"
FIGURES = {
    PLAIN_KEEPALIVE: "plain keep-alive",
    HTTPS_KEEPALIVE: "HTTPS keep-alive",
    PLAIN_CLOSE: "plain conn/request",
    HTTPS_HANDSHAKE: "TLS full handshake",
    H2: "h2 (h2load)",
}
# (HTTPS figure, its plaintext reference) for each proxy's own ratios.
TLS_OVER_PLAIN = {
    "https_keepalive_over_plain": (HTTPS_KEEPALIVE, PLAIN_KEEPALIVE),
    "handshakes_over_plain_connections": (HTTPS_HANDSHAKE, PLAIN_CLOSE),
    "h2_over_plain_keepalive": (H2, PLAIN_KEEPALIVE),
}
# A row whose proxy was less busy than this was limited by the load generator.
SATURATED = 0.9
# Share of the proxy's CPU taken by other processes above which a row is suspect.
CONTENTION = 0.05
H2_CLIENTS = 10
PROBE_CONNECTIONS = 300
CONTROL_REQUESTS = 20
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


class ToolError(Exception):
    """A load tool or nginx is missing and could not be installed."""


def ensureTool(command: str, package: str) -> str:
    """The path of C{command}, installing Debian's C{package} first if missing."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise ToolError(f"{command} is missing and only root can install {package}")
    print(f"bench: {command} not found; installing {package} with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    env = dict(os.environ, **_APT_ENV)
    done = subprocess.run(install, env=env, capture_output=True, timeout=300)
    if done.returncode != 0:
        update = ["apt-get", "update", "-q"]
        subprocess.run(update, env=env, capture_output=True, timeout=300, check=False)
        done = subprocess.run(install, env=env, capture_output=True, timeout=300)
    found = shutil.which(command)
    if done.returncode != 0 or not found:
        tail = done.stderr.decode(errors="replace")[-800:]
        raise ToolError(f"apt-get install {package} failed:\n{tail}")
    return found


# -- the certificate ------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """The files of a CA and of the leaf both proxies serve."""

    ca: Path
    certificate: Path
    key: Path


def writeCertificates(folder: Path) -> Certificates:
    """A CA and a leaf for C{localhost} and C{127.0.0.1}: ECDSA P-256, SHA-256."""
    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    caCert = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(names, critical=False)
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = Certificates(
        folder / "bench-ca.pem", folder / "bench-leaf.pem", folder / "bench-leaf.key"
    )
    files.ca.write_bytes(caCert.public_bytes(pem))
    # Leaf then chain, as [listen.tls] and nginx both take it.
    files.certificate.write_bytes(leaf.public_bytes(pem) + caCert.public_bytes(pem))
    files.key.write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key.chmod(0o600)
    return files


# -- twisted-proxy --------------------------------------------------------------


def twistedProxyTLSConfig(
    plainPort: int, tlsPort: int, backendPort: int, certificates: Certificates
) -> str:
    """twisted-proxy with a plaintext and a TLS listener in front of one backend."""
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{plainPort}:interface=127.0.0.1"\n'
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{tlsPort}:interface=127.0.0.1"\n'
        "[listen.tls]\n"
        f'certificate = "{certificates.certificate}"\n'
        f'key = "{certificates.key}"\n'
        'alpn = ["h2", "http/1.1"]\n'
        "\n"
        "[[route]]\n"
        'path = "/"\n'
        f'to = "http://127.0.0.1:{backendPort}/"\n'
    )


def twistd() -> Path:
    """The twistd of the environment the benchmark runs in."""
    beside = Path(sys.executable).with_name("twistd")
    return beside if beside.exists() else ROOT / ".venv" / "bin" / "twistd"


# -- ab -------------------------------------------------------------------------


@dataclass
class AbResult:
    """What one C{ab} run measured."""

    requestsPerSecond: float
    requests: int
    failed: int
    non2xx: int
    seconds: float
    tls: str | None  # "TLSv1.3,TLS_AES_256_GCM_SHA384,256,256"
    serverKey: str | None  # "X25519 253 bits"

    @property
    def errors(self) -> int:
        """Failed requests and answers other than 2xx."""
        return self.failed + self.non2xx

    def asDict(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures."""
        return {**asdict(self), "errors": self.errors}


def _field(text: str, label: str) -> str | None:
    """The value after C{label:} on its own line of C{ab}'s report."""
    found = re.search(rf"^{re.escape(label)}:\s+(.+?)\s*$", text, re.MULTILINE)
    return found.group(1) if found else None


def parseAb(text: str) -> AbResult:
    """Read the report of C{ab}."""
    rps = _field(text, "Requests per second")
    complete = _field(text, "Complete requests")
    taken = _field(text, "Time taken for tests")
    if rps is None or complete is None or taken is None:
        raise WrkError(f"cannot read ab output:\n{text[-1500:]}")
    failed = _field(text, "Failed requests") or "0"
    non2xx = _field(text, "Non-2xx responses") or "0"
    return AbResult(
        requestsPerSecond=float(rps.split()[0]),
        requests=int(complete),
        failed=int(failed.split()[0]),
        non2xx=int(non2xx.split()[0]),
        seconds=float(taken.split()[0]),
        tls=_field(text, "SSL/TLS Protocol"),
        serverKey=_field(text, "Server Temp Key"),
    )


def abCommand(
    ab: str, url: str, seconds: float, concurrency: int, requests: int | None = None
) -> list[str]:
    """C{ab}: one request per new connection, for C{seconds} or C{requests}."""
    # Without -k, ab speaks HTTP/1.0 and opens a connection for each request;
    # -n after -t lifts the 50,000-request cap -t sets; -r keeps going on errors.
    limit = (
        ["-n", str(requests)]
        if requests is not None
        else ["-t", str(max(1, round(seconds))), "-n", "100000000"]
    )
    return [ab, "-q", "-r", "-s", "10", "-c", str(concurrency), *limit, url]


# -- h2load ---------------------------------------------------------------------


@dataclass
class H2loadResult:
    """What one C{h2load} run measured."""

    requestsPerSecond: float
    requests: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status2xx: int
    status4xx5xx: int
    protocol: str | None  # the ALPN result: "h2"
    tls: str | None  # "TLSv1.3"
    cipher: str | None

    @property
    def errors(self) -> int:
        """Requests that failed: h2load counts errors, timeouts and answers
        other than 2xx and 3xx among them."""
        # Not from the 2xx count: answers that came after the measured time
        # are in it but not in the requests.
        return self.failed

    def asDict(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures."""
        return {**asdict(self), "errors": self.errors}


def parseH2load(text: str) -> H2loadResult:
    """Read the report of C{h2load}."""
    finished = re.search(
        r"^finished in [0-9.]+\w*s, ([0-9.]+) req/s", text, re.MULTILINE
    )
    counts = re.search(
        r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
        re.MULTILINE,
    )
    if finished is None or counts is None:
        raise WrkError(f"cannot read h2load output:\n{text[-1500:]}")
    status = re.search(
        r"^status codes: (\d+) 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text, re.MULTILINE
    )
    total, succeeded, failed, errored, timeout = (int(g) for g in counts.groups())
    return H2loadResult(
        requestsPerSecond=float(finished.group(1)),
        requests=total,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status2xx=int(status.group(1)) if status else 0,
        status4xx5xx=int(status.group(2)) + int(status.group(3)) if status else 0,
        protocol=_h2loadField(text, "Application protocol"),
        tls=_h2loadField(text, "TLS Protocol"),
        cipher=_h2loadField(text, "Cipher"),
    )


def _h2loadField(text: str, label: str) -> str | None:
    found = re.search(rf"^{re.escape(label)}: (.+?)\s*$", text, re.MULTILINE)
    return found.group(1) if found else None


def h2loadCommand(
    h2load: str, url: str, seconds: float, clients: int, streams: int
) -> list[str]:
    """C{h2load} over HTTP/2: C{clients} connections, C{streams} requests each."""
    return [
        h2load,
        "-t1",
        f"-c{clients}",
        f"-m{streams}",
        f"--duration={max(1, round(seconds))}",
        url,
    ]


def h2loadControlCommand(h2load: str, url: str, requests: int) -> list[str]:
    """One h2load client making C{requests} HTTP/1.1 connections, one by one."""
    return [
        h2load,
        "--h1",
        "-c1",
        f"-n{requests}",
        "-H",
        "Connection: close",
        url,
    ]


# -- checks ---------------------------------------------------------------------


def _clientContext() -> ssl.SSLContext:
    """A client context that trusts anything: only the proxy's cost matters here."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def sessionResumed(port: int, timeout: float = 5.0) -> bool:
    """Whether 127.0.0.1:C{port} resumes the TLS session a client offers it."""
    context = _clientContext()
    session: ssl.SSLSession | None = None
    for _ in range(2):
        with (
            socket.create_connection(("127.0.0.1", port), timeout) as raw,
            context.wrap_socket(raw, session=session) as tls,
        ):
            tls.sendall(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            # Reading the answer also reads the TLS 1.3 session tickets.
            while tls.recv(65536):
                pass
            if session is not None:
                return bool(tls.session_reused)
            session = tls.session
    return False


def fetchHTTPS(port: int, timeout: float = 5.0) -> str | None:
    """Fetch C{/} over TLS once; C{None} if the backend's answer came back."""
    context = _clientContext()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    except OSError as e:
        return f"GET / over TLS failed: {e!r}"
    if not answer.startswith(b"HTTP/1.1 200") or not answer.endswith(backend.BODY):
        return f"GET / over TLS answered {answer[:100]!r}"
    return None


def curlHTTP2(curl: str, port: int, ca: Path) -> dict[str, Any]:
    """C{curl --http2} against C{https://localhost:port/}: version and status."""
    argv = [
        curl,
        "--http2",
        "--silent",
        "--show-error",
        "--max-time",
        "10",
        "--cacert",
        str(ca),
        "--resolve",
        f"localhost:{port}:127.0.0.1",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_version} %{http_code}",
        f"https://localhost:{port}/",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"curl failed: {e!r}"}
    version, _, status = done.stdout.strip().partition(" ")
    result: dict[str, Any] = {
        "http_version": version or None,
        "status": int(status) if status.isdigit() else None,
        "exit_code": done.returncode,
    }
    if done.returncode != 0 or version != "2" or status != "200":
        result["error"] = (
            done.stderr.strip()[-300:] or f"answered HTTP/{version} {status}"
        )
    return result


# -- running it -----------------------------------------------------------------


@dataclass(frozen=True)
class TLSSettings:
    """How long and how hard to run each row."""

    seconds: float
    warmup: float
    connections: int
    targets: list[str]
    rounds: int = 1


@dataclass(frozen=True)
class _Listening:
    """One running proxy and where it listens."""

    child: Child
    plain: int
    tls: int


@dataclass(frozen=True)
class _Tools:
    wrk: str
    ab: str
    h2load: str | None
    curl: str | None
    nginx: str | None


class TLSBench:
    """Runs the TLS part: every target's five figures, then the ratios."""

    def __init__(
        self,
        settings: TLSSettings,
        children: Children,
        workDir: Path,
        proxyCPU: int,
        loadCPU: int,
        log: Callable[[str], None],
    ) -> None:
        self._s = settings
        self._children = children
        self._workDir = workDir
        self._proxyCPU = proxyCPU
        self._loadCPU = loadCPU
        self._log = log
        self._tag = ""

    def run(self) -> dict[str, Any]:
        """Measure every target in front of one backend; the TLS report."""
        s = self._s
        tools = self._tools()
        certificates = writeCertificates(self._workDir)
        report: dict[str, Any] = {
            "settings": {
                "seconds": s.seconds,
                "warmup": s.warmup,
                "connections": s.connections,
                "h2_clients": H2_CLIENTS,
                "h2_streams": self._h2Streams(),
                "targets": s.targets,
                "rounds": s.rounds,
            },
            "tools": {**asdict(tools), "versions": _versions(tools)},
            "certificate": "ECDSA P-256 leaf signed by a P-256 CA, SHA-256",
        }
        backendChild, backendPort = self._startBackend()
        rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in s.targets}
        checks: dict[str, Any] = {}
        try:
            for r in range(s.rounds):
                self._tag = f"-round{r + 1}" if s.rounds > 1 else ""
                for name in s.targets:
                    row = self._target(
                        name, tools, certificates, backendPort, probe=r == 0
                    )
                    checks.update(row.pop("_checks", {}))
                    rounds[name].append(row)
        finally:
            self._children.stop(backendChild)
        rows = {name: bestRounds(results) for name, results in rounds.items()}
        report["rows"] = rows
        report["full_handshakes"] = {
            "tool": "ab",
            "how": "ab gives every connection a new TLS session and offers none; "
            "checked on nginx's probe server ($ssl_session_reused), against "
            "h2load, which resumes, as the control",
            **checks,
        }
        report["ratios"] = tlsRatios(rows)
        return report

    def _tools(self) -> _Tools:
        """Every tool, installed if missing; only the h2 ones may be absent."""
        wants = self._s.targets
        return _Tools(
            wrk=ensureWrk(),
            ab=ensureTool("ab", "apache2-utils"),
            h2load=self._optional("h2load", "nghttp2-client"),
            curl=self._optional("curl", "curl"),
            nginx=ensureTool("nginx", "nginx") if NGINX in wants else None,
        )

    def _optional(self, command: str, package: str) -> str | None:
        try:
            return ensureTool(command, package)
        except ToolError as e:
            self._log(f"no {command}; its h2 check is skipped ({e})")
            return None

    def _h2Streams(self) -> int:
        """Streams per h2load connection: as many requests in flight as wrk's."""
        return max(1, self._s.connections // H2_CLIENTS)

    def _startBackend(self) -> tuple[Child, int]:
        portFile = self._workDir / "tls-backend.port"
        portFile.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "bench.backend", "--lifetime", "1800"]
        child = self._children.start(
            "tls-backend", [*argv, "--port-file", str(portFile)], cpu=self._loadCPU
        )
        return child, waitForPortFile(child, portFile)

    def _start(
        self, name: str, tools: _Tools, certificates: Certificates, backendPort: int
    ) -> tuple[_Listening, int | None]:
        """Start one proxy on the proxy CPU; it and nginx's probe port."""
        plain, tls = freePort(), freePort()
        if name == NGINX:
            assert tools.nginx is not None
            folder = self._workDir / "nginx"
            folder.mkdir(exist_ok=True)
            ports = NginxPorts(plain, tls, freePort())
            config = folder / "nginx.conf"
            config.write_text(
                nginxConfig(
                    folder,
                    ports,
                    backendPort,
                    certificates.certificate,
                    certificates.key,
                )
            )
            argv = nginxCommand(tools.nginx, folder, config)
            probe: int | None = ports.probe
        else:
            config = self._workDir / "twisted-proxy-tls.toml"
            config.write_text(
                twistedProxyTLSConfig(plain, tls, backendPort, certificates)
            )
            argv = [str(twistd()), "-n", "--pidfile=", "proxy", "--config", str(config)]
            probe = None
        child = self._children.start(
            f"tls-{name}{self._tag}", argv, cpu=self._proxyCPU, cwd=self._workDir
        )
        for port in (plain, tls, *([probe] if probe else [])):
            waitForListener(child, port)
        return _Listening(child, plain, tls), probe

    def _target(
        self,
        name: str,
        tools: _Tools,
        certificates: Certificates,
        backendPort: int,
        probe: bool,
    ) -> dict[str, Any]:
        """The five figures of one proxy, and (with C{probe}) its checks."""
        self._log(f"TLS: {name}: starting {self._tag.lstrip('-')}".rstrip())
        try:
            proxy, probePort = self._start(name, tools, certificates, backendPort)
        except ChildError as e:
            self._log(f"TLS: {name}: did not start; skipped")
            return {"error": str(e)}
        row: dict[str, Any] = {}
        try:
            problem = fetchHTTPS(proxy.tls)
            if problem:
                self._log(f"TLS: {name}: wrong answer; skipped ({problem})")
                return {"error": problem, "log": proxy.child.tail()}
            try:
                row["resumes_offered_session"] = sessionResumed(proxy.tls)
            except OSError as e:  # ssl.SSLError is one
                row["resumes_offered_session"] = None
                row["resumes_offered_session_error"] = repr(e)
            if probe and probePort is not None:
                row["_checks"] = self._probe(tools, probePort)
            plainURL = f"http://127.0.0.1:{proxy.plain}/"
            tlsURL = f"https://127.0.0.1:{proxy.tls}/"
            wrk = tools.wrk
            row[PLAIN_KEEPALIVE] = self._wrk(
                proxy, name, PLAIN_KEEPALIVE, plainURL, wrk
            )
            row[HTTPS_KEEPALIVE] = self._wrk(proxy, name, HTTPS_KEEPALIVE, tlsURL, wrk)
            row[PLAIN_CLOSE] = self._ab(proxy, name, PLAIN_CLOSE, plainURL, tools.ab)
            row[HTTPS_HANDSHAKE] = self._ab(
                proxy, name, HTTPS_HANDSHAKE, tlsURL, tools.ab
            )
            row["curl_http2"] = (
                curlHTTP2(tools.curl, proxy.tls, certificates.ca)
                if tools.curl
                else {"error": "curl not found"}
            )
            row[H2] = (
                self._h2load(proxy, name, tlsURL, tools.h2load)
                if tools.h2load
                else {"error": "h2load not found"}
            )
            if not proxy.child.alive():
                row["error"] = f"{name} died:\n{proxy.child.tail()}"
        finally:
            self._children.stop(proxy.child)
        return row

    def _probe(self, tools: _Tools, port: int) -> dict[str, Any]:
        """Check on nginx's probe server that ab's handshakes are full ones."""
        log = self._workDir / "nginx" / "probe.log"
        url = f"https://127.0.0.1:{port}/"
        checks: dict[str, Any] = {}
        runs: list[tuple[str, list[str]]] = [
            (
                "probe",
                abCommand(tools.ab, url, 0, self._s.connections, PROBE_CONNECTIONS),
            )
        ]
        if tools.h2load:
            runs.append(
                ("control", h2loadControlCommand(tools.h2load, url, CONTROL_REQUESTS))
            )
        for key, argv in runs:
            log.write_text("")
            try:
                code, output = self._children.run(f"tls-{key}", argv, self._loadCPU, 60)
            except ChildError as e:
                code, output = -1, str(e)
            counts = parseProbeLog(log.read_text())
            checks[f"{key}_tool"] = Path(argv[0]).name
            checks[f"{key}_connections"] = counts.requests
            checks[f"{key}_resumed"] = counts.resumed
            checks[f"{key}_protocols"] = counts.protocols
            if code != 0:
                checks[f"{key}_error"] = output[-500:]
        resumed, seen = checks["probe_resumed"], checks["probe_connections"]
        # Every connection seen and none resumed: the handshake rows are full.
        checks["full_handshakes_ok"] = seen == PROBE_CONNECTIONS and resumed == 0
        self._log(
            f"TLS: ab on nginx's probe: {resumed} of {seen} sessions resumed"
            + (
                f"; h2load (the control): {checks['control_resumed']} of "
                f"{checks['control_connections']}"
                if "control_resumed" in checks
                else ""
            )
        )
        return checks

    def _measured(
        self,
        proxy: _Listening,
        logName: str,
        argv: list[str],
        warmupArgv: list[str],
        parse: Callable[[str], Any],
    ) -> dict[str, Any]:
        """Warm up, then run one load tool on the load CPU, with the proxy's CPU."""
        s = self._s
        timeout = s.seconds + s.warmup + 60
        pid = proxy.child.pid
        try:
            if warmupArgv:
                self._children.run(f"{logName}-warmup", warmupArgv, self._loadCPU, 60)
            cpuBefore, systemBefore = cpuSeconds(pid), cpuTimes()
            began = time.monotonic()
            code, output = self._children.run(logName, argv, self._loadCPU, timeout)
            elapsed = time.monotonic() - began
            cpuAfter, systemAfter = cpuSeconds(pid), cpuTimes()
            result = parse(output)
        except (ChildError, WrkError) as e:
            return {"error": str(e)}
        row: dict[str, Any] = result.asDict()
        if code != 0:
            row["error"] = f"{Path(argv[0]).name} exited with {code}:\n{output[-800:]}"
        busy = busyShares(systemBefore, systemAfter)
        row["cpu_busy"] = {str(cpu): share for cpu, share in busy.items()}
        if cpuBefore is not None and cpuAfter is not None and elapsed > 0:
            cpu = cpuAfter - cpuBefore
            row["proxy_cpu_share"] = cpu / elapsed
            if result.requests:
                row["proxy_cpu_us_per_request"] = cpu / result.requests * 1e6
            if self._children.pinned and self._proxyCPU in busy:
                row["proxy_cpu_other_share"] = max(
                    0.0, busy[self._proxyCPU] - row["proxy_cpu_share"]
                )
        if not row.get("error") and not result.requests:
            row["error"] = f"no request answered\n{output[-800:]}"
        return row

    def _wrk(
        self, proxy: _Listening, name: str, figure: str, url: str, wrk: str
    ) -> dict[str, Any]:
        s = self._s
        self._log(f"TLS: {name}: {FIGURES[figure]}: wrk {s.seconds:.0f} s")

        def argv(seconds: float) -> list[str]:
            # wrkCommand's own URL is plaintext: keep its options, give ours.
            return [*wrkCommand(wrk, 0, seconds, s.connections)[:-1], url]

        return self._measured(
            proxy,
            f"tls-wrk-{name}-{figure}{self._tag}",
            argv(s.seconds),
            argv(s.warmup),
            parseWrk,
        )

    def _ab(
        self, proxy: _Listening, name: str, figure: str, url: str, ab: str
    ) -> dict[str, Any]:
        s = self._s
        self._log(f"TLS: {name}: {FIGURES[figure]}: ab {s.seconds:.0f} s")
        return self._measured(
            proxy,
            f"tls-ab-{name}-{figure}{self._tag}",
            abCommand(ab, url, s.seconds, s.connections),
            abCommand(ab, url, s.warmup, s.connections),
            parseAb,
        )

    def _h2load(
        self, proxy: _Listening, name: str, url: str, h2load: str
    ) -> dict[str, Any]:
        s = self._s
        self._log(f"TLS: {name}: h2: h2load {s.seconds:.0f} s")
        streams = self._h2Streams()
        row = self._measured(
            proxy,
            f"tls-h2load-{name}{self._tag}",
            h2loadCommand(h2load, url, s.seconds, H2_CLIENTS, streams),
            h2loadCommand(h2load, url, s.warmup, H2_CLIENTS, streams),
            parseH2load,
        )
        if "error" not in row and row.get("protocol") != "h2":
            row["error"] = f"h2 not negotiated (ALPN gave {row.get('protocol')})"
        elif "error" not in row and row.get("errors"):
            row["error"] = f"{row['errors']} of {row['requests']} requests failed"
        return row


def _versions(tools: _Tools) -> dict[str, str]:
    """The first line each tool gives about its version."""
    versions: dict[str, str] = {}
    for name, argv in (
        ("nginx", [tools.nginx, "-v"]),
        ("h2load", [tools.h2load, "--version"]),
        ("ab", [tools.ab, "-V"]),
        ("wrk", [tools.wrk, "-v"]),
        ("openssl", ["openssl", "version"]),
    ):
        if argv[0] is None:
            continue
        try:
            done = subprocess.run(
                [str(a) for a in argv], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            continue
        text = (done.stdout + done.stderr).strip()
        if text:
            versions[name] = text.splitlines()[0]
    return versions


# -- ratios and the summary -----------------------------------------------------


def _quiet(row: dict[str, Any]) -> bool:
    """Whether nothing else took a noticeable share of the proxy's CPU."""
    return (row.get("proxy_cpu_other_share") or 0.0) <= CONTENTION


def bestRounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One proxy's rounds merged: each figure from its best quiet round.

    A figure's best round is the one with the most requests/s among those where
    no other process took the proxy's CPU (among all that worked, if none was
    quiet); the requests/s of every round are kept beside it.
    """
    good = [r for r in results if not r.get("error")]
    if not good:
        return results[-1]
    merged: dict[str, Any] = {k: v for k, v in good[0].items() if k not in FIGURES}
    for figure in FIGURES:
        rows = [r[figure] for r in good if figure in r]
        if not rows:
            continue
        working = [r for r in rows if not r.get("error")]
        if not working:
            merged[figure] = rows[-1]
            continue
        best = max(
            [r for r in working if _quiet(r)] or working,
            key=lambda r: float(r["requestsPerSecond"]),
        )
        merged[figure] = dict(best)
        if len(rows) > 1:
            merged[figure]["rounds_rps"] = [r.get("requestsPerSecond") for r in rows]
            merged[figure]["rounds_other_cpu"] = [
                r.get("proxy_cpu_other_share") for r in rows
            ]
    return merged


def _rps(row: dict[str, Any] | None) -> float | None:
    if not row or row.get("error"):
        return None
    value = row.get("requestsPerSecond")
    return float(value) if value is not None else None


def _cpu(row: dict[str, Any] | None) -> float | None:
    if not row or row.get("error"):
        return None
    value = row.get("proxy_cpu_us_per_request")
    return float(value) if value is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def tlsRatios(rows: dict[str, Any]) -> dict[str, Any]:
    """Each proxy's HTTPS figures over its plaintext ones; twisted-proxy over nginx.

    Every ratio is given twice: from requests/s, and from the proxy's CPU time
    per request (requests per CPU-second), which a busy load generator does not
    move.
    """
    ratios: dict[str, Any] = {}
    for name, row in rows.items():
        if row.get("error"):
            continue
        own: dict[str, float | None] = {}
        for key, (tls, plain) in TLS_OVER_PLAIN.items():
            own[key] = _ratio(_rps(row.get(tls)), _rps(row.get(plain)))
            own[f"{key}_per_cpu"] = _ratio(_cpu(row.get(plain)), _cpu(row.get(tls)))
        ratios[name] = own
    ours, theirs = rows.get(TWISTED_PROXY), rows.get(NGINX)
    if ours and theirs and not ours.get("error") and not theirs.get("error"):
        versus: dict[str, float | None] = {}
        for figure in FIGURES:
            versus[figure] = _ratio(_rps(ours.get(figure)), _rps(theirs.get(figure)))
            versus[f"{figure}_per_cpu"] = _ratio(
                _cpu(theirs.get(figure)), _cpu(ours.get(figure))
            )
        ratios[f"{TWISTED_PROXY}_over_{NGINX}"] = versus
    return ratios


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _cell(row: dict[str, Any] | None) -> str:
    """req/s, CPU/req, CPU share and errors of one figure, or why it is missing."""
    if not row:
        return f"{'-':>9}{'':>10}{'':>6}{'':>6}"
    if row.get("error"):
        first = str(row["error"]).splitlines()[0]
        return f"  {'failed: ' + first[:29]:<29}"
    return (
        f"{_fmt(row.get('requestsPerSecond'), ',.0f'):>9}"
        f"{_fmt(row.get('proxy_cpu_us_per_request'), '.0f', ' µs'):>10}"
        f"{_fmt(row.get('proxy_cpu_share'), '.0%'):>6}"
        f"{row.get('errors', 0):>6}"
    )


def summariseTLS(tls: dict[str, Any]) -> str:
    """The human-readable summary of the TLS part."""
    s = tls["settings"]
    rows: dict[str, Any] = tls.get("rows") or {}
    names = list(rows)
    lines = [
        "",
        f"TLS: each proxy alone on its CPU in front of one fast backend, "
        f"{s['seconds']:.0f} s per figure after a {s['warmup']:.0f} s warm-up",
        f"  keep-alive: wrk -t1 -c{s['connections']}; conn/request: ab "
        f"-c{s['connections']}, a new connection per request, and over TLS",
        f"  a full handshake for each; h2: h2load -c{s['h2_clients']} "
        f"-m{s['h2_streams']}. {tls.get('certificate', '')}",
        "",
    ]
    for name in names:
        if rows[name].get("error"):
            first = str(rows[name]["error"]).splitlines()[0]
            lines.append(f"  {name}: failed: {first[:70]}")
    shown = [n for n in names if not rows[n].get("error")]
    if shown:
        header = f"  {'':<20}" + "".join(f"{n:^31}" for n in shown)
        units = f"  {'':<20}" + "".join(
            f"{'req/s':>9}{'CPU/req':>10}{'CPU':>6}{'errs':>6}" for _ in shown
        )
        lines += [header, units]
        for figure, label in FIGURES.items():
            lines.append(
                f"  {label:<20}" + "".join(_cell(rows[n].get(figure)) for n in shown)
            )
    ratios = tls.get("ratios") or {}
    own = [n for n in shown if n in ratios]
    if own:
        lines += [
            "",
            f"  {'TLS / plaintext, each proxy':<32}" + "".join(f"{n:^20}" for n in own),
            f"  {'':<32}" + f"{'req/s':>9}{'per CPU-s':>11}" * len(own),
        ]
        for key, label in (
            ("https_keepalive_over_plain", "HTTPS / plain keep-alive"),
            ("handshakes_over_plain_connections", "full handshakes / plain conns"),
            ("h2_over_plain_keepalive", "h2 / plain keep-alive"),
        ):
            lines.append(
                f"  {label:<32}"
                + "".join(
                    f"{_fmt(ratios[n].get(key), '.2f', 'x'):>9}"
                    f"{_fmt(ratios[n].get(key + '_per_cpu'), '.2f', 'x'):>11}"
                    for n in own
                )
            )
    versus = ratios.get(f"{TWISTED_PROXY}_over_{NGINX}")
    if versus:
        lines += [
            "",
            f"  {TWISTED_PROXY + ' / ' + NGINX:<32}{'req/s':>9}{'per CPU-s':>11}",
        ]
        for figure, label in FIGURES.items():
            lines.append(
                f"  {label:<32}{_fmt(versus.get(figure), '.2f', 'x'):>9}"
                f"{_fmt(versus.get(figure + '_per_cpu'), '.2f', 'x'):>11}"
            )
    if s.get("rounds", 1) > 1:
        lines.append(
            f"  each figure: the best of {s['rounds']} rounds, quiet ones first "
            "(every round's req/s is in the JSON)"
        )
    lines += ["", *_notes(tls, shown)]
    return "\n".join(lines)


def _notes(tls: dict[str, Any], shown: list[str]) -> list[str]:
    """How full handshakes were checked, curl's HTTP/2, and rows to distrust."""
    rows: dict[str, Any] = tls.get("rows") or {}
    checks = tls.get("full_handshakes") or {}
    notes: list[str] = []
    if "probe_resumed" in checks:
        verdict = "OK" if checks.get("full_handshakes_ok") else "FAILED"
        control = (
            f"; h2load, which keeps sessions: {checks['control_resumed']} of "
            f"{checks['control_connections']} resumed"
            if "control_resumed" in checks
            else ""
        )
        notes.append(
            f"  full handshakes {verdict}: ab on nginx's probe: "
            f"{checks['probe_resumed']} of {checks['probe_connections']} sessions "
            f"resumed{control}"
        )
    resumes = [
        f"{n} {'yes' if rows[n].get('resumes_offered_session') else 'no'}"
        for n in shown
    ]
    if resumes:
        notes.append(f"  resumes a session a client offers: {', '.join(resumes)}")
    curl = []
    for n in shown:
        c = rows[n].get("curl_http2") or {}
        curl.append(
            f"{n} HTTP/{c.get('http_version')} {c.get('status')}"
            if not c.get("error")
            else f"{n} failed ({str(c['error']).splitlines()[0][:40]})"
        )
    if curl:
        notes.append(f"  curl --http2: {'; '.join(curl)}")
    for n in shown:
        negotiated = (rows[n].get(HTTPS_HANDSHAKE) or {}).get("tls")
        if negotiated:
            key = rows[n][HTTPS_HANDSHAKE].get("serverKey") or "?"
            suite = ", ".join(negotiated.split(",")[:2])
            notes.append(f"  {n} handshakes: {suite}, {key}")
    for n in shown:
        limited: list[str] = []
        for figure, label in FIGURES.items():
            row = rows[n].get(figure) or {}
            if row.get("error"):
                continue
            share = row.get("proxy_cpu_share")
            other = row.get("proxy_cpu_other_share") or 0.0
            if other > CONTENTION:
                notes.append(
                    f"  WARNING: {n} {label}: other processes took {other:.0%} "
                    "of the proxy's CPU: unreliable"
                )
            elif share is not None and share < SATURATED:
                limited.append(f"{label} {share:.0%}")
        if limited:
            notes.append(
                f"  {n} was less than {SATURATED:.0%} busy, so these req/s understate "
                f"it (compare CPU/req): {', '.join(limited)}"
            )
    notes.append("  (CPU/req: the proxy's CPU time per request; CPU: its share)")
    return notes
