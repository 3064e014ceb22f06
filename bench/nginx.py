"""Nginx as the reference proxy of the TLS benchmark (L{bench.tls}).

Debian's C{nginx} runs in the foreground as one process (C{master_process off}:
the master's work and a single worker's in one, which the benchmark pins to the
proxy's CPU) with a configuration written into a folder of its own: every path it
writes (pid, temporary files) is in that folder, its errors go to its log, and it
listens on 127.0.0.1 only. It proxies to the same fast backend as twisted-proxy
with an upstream keep-alive pool, and terminates TLS with the same certificate
and Mozilla's "intermediate" settings, which twisted-proxy also uses: TLS 1.2
and 1.3, ECDHE with AES-GCM or ChaCha20, the X25519/P-256/P-384 groups, a
server-side session cache and no session tickets.

A second TLS server, the I{probe}, logs for each request whether its TLS session
was resumed (C{$ssl_session_reused}); the benchmark uses it to check that its
handshake load really makes full handshakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Mozilla's "intermediate" configuration, the same as twisted-proxy's defaults.
from twisted_proxy.tls.profile import INTERMEDIATE_CIPHERS, INTERMEDIATE_GROUPS

PROBE_BODY = b"probe\n"


@dataclass(frozen=True)
class NginxPorts:
    """Where one nginx listens: plaintext, TLS (HTTP/2 too) and the probe."""

    plain: int
    tls: int
    probe: int


def tempPaths(folder: Path) -> str:
    """The C{http} lines that keep nginx's temporary files under C{folder}."""
    return "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def proxyBlock(port: int, backendPort: int) -> str:
    """
    The C{http} block's rest for nginx as a plain reverse proxy on
    127.0.0.1:C{port}: C{/} to the backend through an upstream keep-alive
    pool (HTTP/1.1, no C{Connection} header passed on).
    """
    return (
        "    upstream backend {\n"
        f"        server 127.0.0.1:{backendPort};\n"
        "        keepalive 64;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        location / {\n"
        "            proxy_pass http://backend;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "        }\n"
        "    }\n"
    )


def oneProcessConfig(folder: Path, http: str) -> str:
    """
    nginx as one foreground process (the benchmark pins it), its pid and
    temporary files under C{folder}, no access log, keep-alive connections
    never closed for their count; C{http} is the rest of the C{http} block.
    """
    return processesConfig(folder, http, None)


def processesConfig(
    folder: Path, http: str, workers: int | None, user: str | None = None
) -> str:
    """
    L{oneProcessConfig}, or with C{workers}: a foreground master and that
    many worker processes (C{user}: the C{user} line, which only counts
    when nginx starts as root).
    """
    processes = (
        "master_process off;\nworker_processes 1;\n"
        if workers is None
        else f"master_process on;\nworker_processes {workers};\n"
        + (f"user {user};\n" if user else "")
    )
    return (
        "daemon off;\n" + processes + f"pid {folder / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        "\n"
        "events {\n"
        "    worker_connections 4096;\n"
        "}\n"
        "\n"
        "http {\n"
        "    access_log off;\n"
        + tempPaths(folder)
        + "    # Keep-alive rows stay keep-alive: no close after 1,000 requests.\n"
        "    keepalive_requests 1000000;\n" + http + "}\n"
    )


def nginxConfig(
    folder: Path,
    ports: NginxPorts,
    backendPort: int,
    certificate: Path,
    key: Path,
) -> str:
    """The configuration of the reference nginx; every path is under C{folder}."""
    tls = (
        f"        ssl_certificate {certificate};\n"
        f"        ssl_certificate_key {key};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        f"        ssl_ciphers {INTERMEDIATE_CIPHERS};\n"
        f"        ssl_ecdh_curve {INTERMEDIATE_GROUPS};\n"
        "        ssl_prefer_server_ciphers off;\n"
        "        ssl_session_timeout 1d;\n"
        "        ssl_session_cache shared:bench:10m;\n"
        "        ssl_session_tickets off;\n"
    )
    return oneProcessConfig(
        folder,
        "    log_format probe '$ssl_session_reused $ssl_protocol $ssl_cipher';\n"
        "\n"
        "    upstream backend {\n"
        f"        server 127.0.0.1:{backendPort};\n"
        "        keepalive 64;\n"
        "    }\n"
        "\n"
        "    server {\n"
        f"        listen 127.0.0.1:{ports.plain};\n"
        f"        listen 127.0.0.1:{ports.tls} ssl http2;\n"
        + tls
        + "        location / {\n"
        "            proxy_pass http://backend;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "        }\n"
        "    }\n"
        "\n"
        "    server {\n"
        f"        listen 127.0.0.1:{ports.probe} ssl;\n"
        + tls
        + f"        access_log {folder / 'probe.log'} probe;\n"
        "        location / {\n"
        f'            return 200 "{PROBE_BODY.decode().strip()}\\n";\n'
        "        }\n"
        "    }\n",
    )


def nginxCommand(nginx: str, folder: Path, config: Path) -> list[str]:
    """The command that runs nginx in the foreground with C{config}."""
    # -e: the error log before the configuration is read (Debian's default is
    # a file under /var/log, which need not be writable).
    return [nginx, "-p", str(folder), "-c", str(config), "-e", "stderr"]


@dataclass(frozen=True)
class ProbeCounts:
    """What the probe's log says about the handshakes it saw."""

    requests: int
    resumed: int
    protocols: dict[str, int]


def parseProbeLog(text: str) -> ProbeCounts:
    """Count the probe's log lines (C{r} or C{.}, protocol, cipher)."""
    requests = resumed = 0
    protocols: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        requests += 1
        if fields[0] == "r":
            resumed += 1
        protocols[fields[1]] = protocols.get(fields[1], 0) + 1
    return ProbeCounts(requests, resumed, protocols)
