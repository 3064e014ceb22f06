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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bench.nginx import oneProcessConfig
from bench.tls import ensureTool

NGINX = "nginx"
HAPROXY = "haproxy"
APACHE = "apache"
PEERS = (NGINX, HAPROXY, APACHE)

APACHE_MODULES = Path("/usr/lib/apache2/modules")


def nginxConfig(folder: Path, port: int, backendPort: int) -> str:
    """A plain reverse proxy with an upstream keep-alive pool."""
    return oneProcessConfig(
        folder,
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
        "    }\n",
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
    raise ValueError(f"no peer named {name!r}")
