"""The AJP part of ``python -m bench``: one Tomcat, reached over AJP and over HTTP.

One Tomcat (Debian's tomcat10, started from C{/usr/share/tomcat10} in a
CATALINA_BASE of its own under the work folder) with two connectors on
127.0.0.1, each on a free port: AJP/1.3 with a C{secret} (and
C{secretRequired}), and HTTP/1.1 with unlimited keep-alive requests (Tomcat's
default of 100 would make every HTTP row reconnect where AJP does not). Both
have room (L{MAX_THREADS}, L{MAX_CONNECTIONS}) so the connector is not what
limits. It serves one static file of L{BODY} (100 bytes) through its
C{DefaultServlet}, the same answer for every row.

Tomcat and wrk share the load CPU; twisted-proxy runs alone on the proxy CPU
with two routes, C{/ajp/} to C{ajp://127.0.0.1:AJP/} and C{/http/} to
C{http://127.0.0.1:HTTP/} (a route's path is replaced by its target's, so
C{/ajp/x} reaches Tomcat as C{/x}). Every path gets a wrk warm-up first, for
Tomcat's JIT, then each row its own short warm-up and C{wrk -t1 -c50
--latency}:

1. Tomcat's HTTP connector directly: the ceiling.
2. twisted-proxy to the HTTP connector.
3. twisted-proxy to the AJP connector.

For each: requests/s, latency, and the CPU time per request of the proxy and
of Tomcat. With more than one round (two unless C{--quick} or C{--rounds}
says otherwise) the rows are measured again in the reverse order, and each
keeps its best quiet round. The AJP row over the HTTP one says what
speaking AJP gains or costs. Without Tomcat installed the part says so and
is skipped (C{make system-tools} installs it). Run with ``python -m bench``
or alone with C{--ajp-only}; the figures also go to
C{bench/results/ajp.json}.
"""

from __future__ import annotations

import http.client
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._procs import (
    Child,
    ChildError,
    Children,
    busyShares,
    cpuSeconds,
    cpuTimes,
    freePort,
    waitForListener,
)
from bench.tls import twistd
from bench.wrk import WrkError, WrkResult, ensureWrk, parseWrk, wrkCommand

CATALINA_HOME = Path("/usr/share/tomcat10")
TOMCAT_CONF = Path("/etc/tomcat10")
SECRET = "bench-ajp-secret"
FILE_NAME = "small.txt"
BODY = (b"twisted-proxy bench: one small fixed answer from Tomcat, " * 2)[:99] + b"\n"
MAX_THREADS = 400
MAX_CONNECTIONS = 10000
# The JVM's heap, fixed so a run does not depend on the machine's memory.
JAVA_OPTIONS = "-Xms256m -Xmx256m"
DIRECT = "tomcat direct (HTTP)"
VIA_HTTP = "twisted-proxy -> HTTP"
VIA_AJP = "twisted-proxy -> AJP"
ROWS = (DIRECT, VIA_HTTP, VIA_AJP)
# Share of the proxy's CPU taken by other processes above which a row is suspect.
CONTENTION = 0.05
_START_SECONDS = 120.0


def _pause(seconds: float) -> None:
    """Sleep between polls of another process, which has no Deferred to wait on."""
    time.sleep(seconds)  # noqa: TID251


@dataclass(frozen=True)
class AJPSettings:
    """How long and how hard to run each row."""

    seconds: float = 10.0
    warmup: float = 2.0
    # wrk on each path once, before any row is measured, for Tomcat's JIT.
    jitWarmup: float = 5.0
    connections: int = 50
    # Each row measured this many times, the order reversed every other round.
    rounds: int = 2


def tomcatMissing() -> str | None:
    """Why Tomcat cannot be started here, or C{None} when it can."""
    catalina = CATALINA_HOME / "bin" / "catalina.sh"
    if not catalina.is_file():
        return (
            f"Tomcat is not installed (no {catalina}); `make system-tools` installs "
            "Debian's tomcat10"
        )
    for name in ("web.xml", "catalina.properties"):
        if not (TOMCAT_CONF / name).is_file():
            return f"Tomcat's {TOMCAT_CONF / name} is missing (reinstall tomcat10)"
    if shutil.which("java") is None:
        return "Tomcat is installed but there is no java on PATH"
    return None


def serverXml(ajpPort: int, httpPort: int, secret: str = SECRET) -> str:
    """Tomcat's C{server.xml}: an AJP and an HTTP/1.1 connector on 127.0.0.1."""
    room = (
        f'maxThreads="{MAX_THREADS}" maxConnections="{MAX_CONNECTIONS}" '
        'acceptCount="1000"'
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.startup.VersionLoggerListener" />
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{ajpPort}"
               secret="{secret}" secretRequired="true"
               {room} />
    <Connector protocol="HTTP/1.1" address="127.0.0.1" port="{httpPort}"
               maxKeepAliveRequests="-1" connectionTimeout="60000"
               {room} />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false"
            autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""


def writeCatalinaBase(folder: Path, ajpPort: int, httpPort: int) -> None:
    """A CATALINA_BASE in C{folder}: configuration and the one static file."""
    for part in ("conf", "logs", "temp", "work", "webapps/ROOT"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    for name in ("web.xml", "catalina.properties"):
        shutil.copy(TOMCAT_CONF / name, folder / "conf" / name)
    (folder / "conf" / "server.xml").write_text(serverXml(ajpPort, httpPort))
    (folder / "webapps" / "ROOT" / FILE_NAME).write_bytes(BODY)


def twistedProxyAJPConfig(port: int, ajpPort: int, httpPort: int) -> str:
    """twisted-proxy with C{/ajp/} to Tomcat over AJP, C{/http/} over HTTP."""
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{port}:interface=127.0.0.1"\n'
        "\n"
        "[[route]]\n"
        'path = "/ajp/"\n'
        f'to = "ajp://127.0.0.1:{ajpPort}/"\n'
        f'secret = "{SECRET}"\n'
        "\n"
        "[[route]]\n"
        'path = "/http/"\n'
        f'to = "http://127.0.0.1:{httpPort}/"\n'
    )


def checkAnswer(port: int, path: str, timeout: float = 10.0) -> str | None:
    """What is wrong with the answer to C{GET path}, or C{None} if it is L{BODY}."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        status, body = response.status, response.read()
    except (OSError, http.client.HTTPException) as e:
        return f"GET {path}: {e!r}"
    finally:
        connection.close()
    if status != 200 or body != BODY:
        return f"GET {path}: {status}, {len(body)} bytes: {body[:80]!r}"
    return None


def tomcatVersion(log: str) -> str | None:
    """Tomcat's version as its C{VersionLoggerListener} logged it."""
    found = re.search(r"Server version name:\s*(.+)", log)
    return found.group(1).strip() if found else None


def _ratio(a: float | None, b: float | None) -> float | None:
    """C{a / b} when both are known."""
    return a / b if a is not None and b else None


def _figure(row: dict[str, Any] | None, *keys: str) -> float | None:
    """A figure of a row that worked (C{keys} lead into nested dicts), or C{None}."""
    if not row or row.get("error"):
        return None
    value: Any = row
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def ajpRatios(rows: dict[str, Any]) -> dict[str, float | None]:
    """AJP over HTTP through the proxy, and each over Tomcat directly."""
    ajp, viaHTTP, direct = rows.get(VIA_AJP), rows.get(VIA_HTTP), rows.get(DIRECT)
    rps = ("wrk", "requestsPerSecond")
    p99 = ("wrk", "p99Ms")
    return {
        "rps": _ratio(_figure(ajp, *rps), _figure(viaHTTP, *rps)),
        "p99": _ratio(_figure(ajp, *p99), _figure(viaHTTP, *p99)),
        "proxy_cpu_per_request": _ratio(
            _figure(ajp, "proxy_cpu_us_per_request"),
            _figure(viaHTTP, "proxy_cpu_us_per_request"),
        ),
        "tomcat_cpu_per_request": _ratio(
            _figure(ajp, "tomcat_cpu_us_per_request"),
            _figure(viaHTTP, "tomcat_cpu_us_per_request"),
        ),
        "ajp_over_direct_rps": _ratio(_figure(ajp, *rps), _figure(direct, *rps)),
        "http_over_direct_rps": _ratio(_figure(viaHTTP, *rps), _figure(direct, *rps)),
    }


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most requests/s among the least disturbed; lists all."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[-1]
    quiet = [r for r in good if (r.get("proxy_cpu_other_share") or 0) <= CONTENTION]
    best = max(quiet or good, key=lambda r: float(r["wrk"]["requestsPerSecond"]))
    if len(results) == 1:
        return best
    return {
        **best,
        "rounds_rps": [
            r["wrk"]["requestsPerSecond"] if "error" not in r else None for r in results
        ],
        "rounds_other_cpu": [r.get("proxy_cpu_other_share") for r in results],
    }


class AJPBench:
    """The AJP part: one Tomcat, twisted-proxy in front of it, wrk."""

    def __init__(
        self,
        settings: AJPSettings,
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
        self._wrk = ""

    def run(self) -> dict[str, Any]:
        """Every row, or why the part was skipped or failed."""
        report: dict[str, Any] = {
            "settings": {**asdict(self._s), "body_bytes": len(BODY)},
        }
        missing = tomcatMissing()
        if missing:
            self._log(f"ajp: skipped: {missing}")
            report["skipped"] = missing
            return report
        self._wrk = ensureWrk()
        ajpPort, httpPort = freePort(), freePort()
        report["settings"].update(
            max_threads=MAX_THREADS,
            max_connections=MAX_CONNECTIONS,
            java_options=JAVA_OPTIONS,
        )
        tomcat: Child | None = None
        proxy: Child | None = None
        try:
            self._log("ajp: starting Tomcat (AJP and HTTP connectors)")
            tomcat = self._startTomcat(ajpPort, httpPort)
            report["tomcat"] = tomcatVersion(tomcat.tail(200))
            proxy, port = self._startProxy(ajpPort, httpPort)
            paths = {
                DIRECT: (httpPort, f"/{FILE_NAME}"),
                VIA_HTTP: (port, f"/http/{FILE_NAME}"),
                VIA_AJP: (port, f"/ajp/{FILE_NAME}"),
            }
            problems = {
                name: checkAnswer(target, path)
                for name, (target, path) in paths.items()
            }
            for name, problem in problems.items():
                if problem:
                    self._log(f"ajp: {name}: wrong answer; skipped ({problem})")
            working = [name for name in ROWS if not problems[name]]
            for name in working:
                target, path = paths[name]
                self._log(f"ajp: JIT warm-up, {name}, {self._s.jitWarmup:.0f} s")
                self._runWrk(
                    f"ajp-wrk-jit-{_slug(name)}", target, path, self._s.jitWarmup
                )
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in working}
            for r in range(self._s.rounds):
                # Every other round backwards, so that a machine getting faster
                # or slower during the run favours no row.
                for name in working if r % 2 == 0 else working[::-1]:
                    target, path = paths[name]
                    rounds[name].append(
                        self._measure(name, target, path, proxy, tomcat, r)
                    )
            rows: dict[str, Any] = {}
            for name in ROWS:
                if problems[name]:
                    rows[name] = {"error": problems[name]}
                    if name != DIRECT:
                        rows[name]["log"] = proxy.tail()
                else:
                    rows[name] = _best(rounds[name])
            report["rows"] = rows
            report["ratios"] = ajpRatios(rows)
        except (ChildError, WrkError) as e:
            report["error"] = str(e)
            if tomcat is not None:
                report["tomcat_log"] = tomcat.tail(40)
        finally:
            if proxy is not None:
                self._children.stop(proxy)
            if tomcat is not None:
                self._children.stop(tomcat, grace=15.0)
        return report

    def _startTomcat(self, ajpPort: int, httpPort: int) -> Child:
        """Tomcat on the load CPU, once both connectors answer."""
        base = self._workDir / "tomcat"
        writeCatalinaBase(base, ajpPort, httpPort)
        child = self._children.start(
            "ajp-tomcat",
            [str(CATALINA_HOME / "bin" / "catalina.sh"), "run"],
            cpu=self._loadCPU,
            cwd=base,
            env={
                "CATALINA_HOME": str(CATALINA_HOME),
                "CATALINA_BASE": str(base),
                "CATALINA_TMPDIR": str(base / "temp"),
                "CATALINA_OPTS": JAVA_OPTIONS,
            },
        )
        waitForListener(child, ajpPort, timeout=_START_SECONDS)
        waitForListener(child, httpPort, timeout=_START_SECONDS)
        # The connectors bind before the web application is deployed; wait
        # (bounded) for the file itself.
        problem: str | None = "not asked yet"
        for _ in range(int(_START_SECONDS / 0.2)):
            problem = checkAnswer(httpPort, f"/{FILE_NAME}")
            if problem is None:
                return child
            if not child.alive():
                break
            _pause(0.2)
        raise ChildError(f"Tomcat does not serve /{FILE_NAME}: {problem}")

    def _startProxy(self, ajpPort: int, httpPort: int) -> tuple[Child, int]:
        """twisted-proxy alone on the proxy CPU, with both routes."""
        port = freePort()
        config = self._workDir / "twisted-proxy-ajp.toml"
        config.write_text(twistedProxyAJPConfig(port, ajpPort, httpPort))
        argv = [str(twistd()), "-n", "--pidfile=", "proxy", "--config", str(config)]
        child = self._children.start(
            "ajp-twisted-proxy", argv, cpu=self._proxyCPU, cwd=self._workDir
        )
        waitForListener(child, port)
        return child, port

    def _runWrk(self, name: str, port: int, path: str, seconds: float) -> WrkResult:
        """One wrk run against 127.0.0.1:C{port}C{path} from the load CPU."""
        argv = wrkCommand(self._wrk, port, seconds, self._s.connections, path=path)
        code, output = self._children.run(name, argv, self._loadCPU, seconds + 30)
        if code != 0:
            raise WrkError(f"wrk exited with {code}:\n{output[-1500:]}")
        return parseWrk(output)

    def _measure(
        self, name: str, port: int, path: str, proxy: Child, tomcat: Child, r: int
    ) -> dict[str, Any]:
        """Warm up and measure one row; the proxy's and Tomcat's CPU with it."""
        s = self._s
        tag = f"{_slug(name)}{f'-round{r + 1}' if s.rounds > 1 else ''}"
        self._log(f"ajp: {name}: warm-up {s.warmup:.0f} s, then wrk {s.seconds:.0f} s")
        try:
            self._runWrk(f"ajp-wrk-{tag}-warmup", port, path, s.warmup)
            proxyBefore, tomcatBefore = cpuSeconds(proxy.pid), cpuSeconds(tomcat.pid)
            systemBefore = cpuTimes()
            began = time.monotonic()
            result = self._runWrk(f"ajp-wrk-{tag}", port, path, s.seconds)
            elapsed = time.monotonic() - began
            proxyAfter, tomcatAfter = cpuSeconds(proxy.pid), cpuSeconds(tomcat.pid)
            systemAfter = cpuTimes()
        except (ChildError, WrkError) as e:
            return {"error": str(e), "log": proxy.tail()}
        for child in (proxy, tomcat):
            if not child.alive():
                return {"error": f"{child.name} died during the run:\n{child.tail()}"}
        row: dict[str, Any] = {"path": path, "wrk": result.asDict()}
        busy = busyShares(systemBefore, systemAfter)
        row["cpu_busy"] = {str(cpu): share for cpu, share in busy.items()}
        if tomcatBefore is not None and tomcatAfter is not None:
            row["tomcat_cpu_share"] = (tomcatAfter - tomcatBefore) / elapsed
            if result.requests:
                row["tomcat_cpu_us_per_request"] = (
                    (tomcatAfter - tomcatBefore) / result.requests * 1e6
                )
        if name != DIRECT and proxyBefore is not None and proxyAfter is not None:
            cpu = proxyAfter - proxyBefore
            row["proxy_cpu_share"] = cpu / elapsed
            if result.requests:
                row["proxy_cpu_us_per_request"] = cpu / result.requests * 1e6
            if self._children.pinned and self._proxyCPU in busy:
                row["proxy_cpu_other_share"] = max(
                    0.0, busy[self._proxyCPU] - row["proxy_cpu_share"]
                )
        return row


def _slug(name: str) -> str:
    """A row's name as it goes into log file names."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def summariseAJP(report: dict[str, Any]) -> str:
    """The human-readable summary of the AJP part."""
    if report.get("skipped"):
        return f"\nAJP: skipped: {report['skipped']}"
    if "rows" not in report:
        error = str(report.get("error") or "no figures").splitlines()
        return f"\nAJP: failed: {error[0] if error else 'error'}"
    s = report.get("settings") or {}
    lines = [
        "",
        f"AJP and HTTP to one Tomcat ({report.get('tomcat') or 'version unknown'}):"
        f" a {s.get('body_bytes')}-byte static file, Tomcat and wrk on the load CPU,"
        " twisted-proxy alone on the proxy CPU",
        f"wrk -t1 -c{s.get('connections')} --latency, {s.get('seconds', 0):.0f} s"
        f" after a {s.get('warmup', 0):.0f} s warm-up (and a first"
        f" {s.get('jitWarmup', 0):.0f} s one on each path for the JIT)",
        "",
        f"  {'':<24}{'req/s':>10}{'p50':>10}{'p99':>10}{'proxy CPU/req':>15}"
        f"{'Tomcat CPU/req':>16}{'proxy CPU':>11}{'errors':>8}",
    ]
    rows = report.get("rows") or {}
    for name, row in rows.items():
        if "error" in row:
            first = str(row["error"]).splitlines()[0] if row["error"] else "error"
            lines.append(f"  {name:<24}failed: {first[:64]}")
            continue
        w = row["wrk"]
        lines.append(
            f"  {name:<24}{w['requestsPerSecond']:>10,.0f}"
            f"{_fmt(w['p50Ms'], '.2f', ' ms'):>10}{_fmt(w['p99Ms'], '.2f', ' ms'):>10}"
            f"{_fmt(row.get('proxy_cpu_us_per_request'), '.0f', ' µs'):>15}"
            f"{_fmt(row.get('tomcat_cpu_us_per_request'), '.0f', ' µs'):>16}"
            f"{_fmt(row.get('proxy_cpu_share'), '.0%'):>11}{w['errors']:>8}"
        )
        if "rounds_rps" in row:
            taken = row.get("rounds_other_cpu") or [None] * len(row["rounds_rps"])
            each = ", ".join(
                _fmt(v, ",.0f")
                + (f" ({o:.0%} CPU taken)" if o is not None and o > CONTENTION else "")
                for v, o in zip(row["rounds_rps"], taken, strict=True)
            )
            lines.append(
                f"  {'':<24}req/s per round {each}; best shown, quiet rounds first"
            )
        other = row.get("proxy_cpu_other_share")
        if other is not None and other > CONTENTION:
            lines.append(
                f"  WARNING: other processes took {other:.0%} of the proxy's CPU"
                " meanwhile: unreliable"
            )
    ratios = report.get("ratios") or {}
    if rows:
        lines += [
            f"  AJP / HTTP through twisted-proxy: {_fmt(ratios.get('rps'), '.2f', 'x')}"
            f" req/s, {_fmt(ratios.get('p99'), '.2f', 'x')} p99,"
            f" {_fmt(ratios.get('proxy_cpu_per_request'), '.2f', 'x')} proxy CPU"
            f" per request, {_fmt(ratios.get('tomcat_cpu_per_request'), '.2f', 'x')}"
            " Tomcat CPU per request",
            "  through twisted-proxy / Tomcat direct:"
            f" HTTP {_fmt(ratios.get('http_over_direct_rps'), '.2f', 'x')},"
            f" AJP {_fmt(ratios.get('ajp_over_direct_rps'), '.2f', 'x')} req/s",
        ]
    return "\n".join(lines)
