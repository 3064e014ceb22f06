"""The compression part of ``python -m bench``: gzip MiB/s against mod_deflate and zlib.

One fixed corpus (L{corpus}: 100 MiB of generated HTML and JSON, 32 MiB with
C{--quick}), gzipped at levels 1, 6 and 9 (and at the default
C{compress_level}, if that is another) three ways, back to back for each level:

- the proxy's L{GzipStream}, in this process pinned to the proxy's CPU, fed in
  64 KiB pieces as the proxy feeds it (one backend read each, each flushed);
- zlib alone, the same level, window and memLevel, over the whole corpus in
  one call: what the stream would cost without flushing or Python around it;
- Debian's Apache (C{apache2}, installed with apt-get if missing) with
  mod_deflate at the same level, one process (C{-X}) pinned to the proxy's CPU,
  serving the corpus as a static file to C{curl} on the load CPU. Its rate is
  given per CPU-second of the httpd process and per second of curl's transfer.

Each rate is MiB of corpus per second. Ratios: GzipStream over Apache (CPU
against CPU: the steadier one on a busy machine; and wall against wall) and
over zlib. Two rows more at the default level: GzipStream fed 4 KiB pieces (a
chunked backend writing small chunks, each flushed on its own), and zlib at
mod_deflate's memLevel 9. Every output is checked to decode to the corpus.

Run as part of ``python -m bench`` or alone with C{--compress-only}; the figures
also go to C{bench/results/compress.json}.
"""

from __future__ import annotations

import http.client
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
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
from bench.picks import noGC, pinnedTo
from bench.tls import ToolError, ensureTool
from twisted_proxy.config.model import ProxySettings
from twisted_proxy.core.compress import GZIP_WBITS, MEM_LEVEL, GzipStream

MIB = 1 << 20
CORPUS_SEED = 7
# Generated once and repeated: far longer than deflate's 32 KiB window, so the
# repeats find nothing to refer back to.
CORPUS_BLOCK = 8 * MIB
DEFAULT_LEVEL = ProxySettings().compress_level
LEVELS = tuple(sorted({1, 6, 9, DEFAULT_LEVEL}))
# What the proxy hands GzipStream: one read of a backend's socket (Twisted
# reads up to 64 KiB at a time) ...
READ_PIECE = 65536
# ... or, from a chunked backend writing small chunks, one chunk.
SMALL_PIECE = 4096
# mod_deflate's own defaults, written out.
APACHE_MEM_LEVEL = 9
APACHE_WINDOW = 15
APACHE_BUFFER = 8096
APACHE_MODULES = Path("/usr/lib/apache2/modules")
TARGET = 0.8
# Share of the measured CPU taken by other processes above which a row is suspect.
CONTENTION = 0.05

# Words for text, names and links; split once below.
_VOCABULARY = (
    "account active address admin alpha amount answer archive article author "
    "backend balance banner basket before billing block border branch browser "
    "buffer button cache calendar caption card cart catalog category center "
    "chapter checkout client column comment config content context country "
    "coupon created customer dashboard default delivery detail device display "
    "document domain draft editor email entry event export feature filter "
    "footer format gallery gateway header health history image index invoice "
    "item label language layout level link list locale login manager media "
    "member message method module notice number option order owner page panel "
    "payment period picture player policy price product profile project proxy "
    "query quote record region release report request result review route "
    "sales schedule search section server service session setting shipping "
    "status stock store stream summary support table target theme ticket title "
    "total track update upload user value vendor version video warehouse widget"
)
_WORDS = tuple(_VOCABULARY.split())
_FIRST = (
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Ken",
    "Linus",
    "Margaret",
)
_LAST = (
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Knuth",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Thompson",
)


def _below(rng: random.Random, n: int) -> int:
    """An int in [0, n) from C{random()} alone: the one method whose sequence
    Python promises to keep for a seed, so the corpus stays the same."""
    return int(rng.random() * n)


def _words(rng: random.Random, count: int) -> str:
    """C{count} words, picked at random."""
    return " ".join(_WORDS[_below(rng, len(_WORDS))] for _ in range(count))


def _record(rng: random.Random, i: int) -> str:
    """One piece of a page or an API answer: a JSON object, a table row, a
    paragraph, a list item, now and then a page's head or foot."""
    kind = _below(rng, 20)
    first = _FIRST[_below(rng, len(_FIRST))]
    last = _LAST[_below(rng, len(_LAST))]
    word = _WORDS[_below(rng, len(_WORDS))]
    if kind < 6:
        return (
            f'{{"id": {i}, "user": "{first} {last}", '
            f'"email": "{first.lower()}.{last.lower()}{_below(rng, 1000)}'
            '@example.org", '
            f'"{word}": {rng.random() * 1000:.2f}, "active": '
            f"{'true' if _below(rng, 2) else 'false'}, "
            f'"tags": ["{_words(rng, 1 + _below(rng, 3))}"], '
            f'"updated": "2024-{1 + _below(rng, 12):02d}-{1 + _below(rng, 28):02d}'
            f'T{_below(rng, 24):02d}:{_below(rng, 60):02d}:00Z"}},\n'
        )
    if kind < 11:
        return (
            f'<tr class="{"odd" if i % 2 else "even"}"><td>{i}</td>'
            f'<td><a href="/{word}/{_below(rng, 100000)}">{first} {last}</a></td>'
            f"<td>{_words(rng, 1 + _below(rng, 4))}</td>"
            f'<td class="num">{_below(rng, 10000)}.{_below(rng, 100):02d}</td></tr>\n'
        )
    if kind < 15:
        return f"<p>{_words(rng, 9 + _below(rng, 40)).capitalize()}.</p>\n"
    if kind < 19:
        return (
            f'<li id="{word}-{i}"><a href="https://www.example.org/{word}?page='
            f'{_below(rng, 50)}&amp;sort={_WORDS[_below(rng, len(_WORDS))]}">'
            f"{_words(rng, 2 + _below(rng, 5))}</a></li>\n"
        )
    return (
        f"</ul></main><footer>{_words(rng, 7)}</footer></body></html>\n"
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{first} {last}: {word}</title>"
        f'<link rel="stylesheet" href="/static/site.css?v={_below(rng, 999)}">'
        f"</head><body><header><nav>{_words(rng, 6)}</nav></header><main><ul>\n"
    )


def corpus(size: int, seed: int = CORPUS_SEED) -> bytes:
    """
    C{size} bytes of generated HTML and JSON, the same for the same seed on
    every run (a shorter one is the start of a longer one). About 8 MiB are
    generated and repeated.
    """
    rng = random.Random(seed)
    want = min(size, CORPUS_BLOCK)
    parts: list[bytes] = []
    length = i = 0
    while length < want:
        part = _record(rng, i).encode()
        parts.append(part)
        length += len(part)
        i += 1
    block = b"".join(parts)[:want]
    return (block * math.ceil(size / len(block)))[:size] if block else b""


# -- measuring ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One gzip of the corpus: what went in and out, and the time it took."""

    inBytes: int
    outBytes: int
    cpuSeconds: float | None
    wallSeconds: float | None
    otherShare: float | None = None  # of the measured CPU, by other processes
    ok: bool = True  # the output decodes to the corpus

    def asDict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the rates."""
        return {
            **asdict(self),
            "mib_per_cpu_second": rate(self.inBytes, self.cpuSeconds),
            "mib_per_second": rate(self.inBytes, self.wallSeconds),
            "out_share": self.outBytes / self.inBytes if self.inBytes else None,
        }


def rate(size: int, seconds: float | None) -> float | None:
    """MiB per second, if the time is known."""
    return size / MIB / seconds if seconds else None


def pieces(data: bytes, size: int) -> Iterable[bytes]:
    """C{data} in pieces of C{size} bytes, as reads would hand it over."""
    return (data[at : at + size] for at in range(0, len(data), size))


def _otherShare(
    before: dict[int, tuple[float, float]],
    after: dict[int, tuple[float, float]],
    cpu: int,
    ownSeconds: float,
    elapsed: float,
) -> float | None:
    """How much of C{cpu} went to other processes while one of ours ran on it."""
    busy = busyShares(before, after).get(cpu)
    if busy is None or elapsed <= 0:
        return None
    return max(0.0, busy - ownSeconds / elapsed)


def gzipStreamRun(data: bytes, level: int, piece: int, cpu: int | None = None) -> Run:
    """The proxy's L{GzipStream} over C{data} in C{piece}-byte pieces."""
    stream = GzipStream(level)
    out: list[bytes] = []
    system, clock, wall = cpuTimes(), time.process_time(), time.perf_counter()
    for chunk in pieces(data, piece):
        out.append(stream.compress(chunk))
    out.append(stream.finish())
    spent, elapsed = time.process_time() - clock, time.perf_counter() - wall
    other = (
        None if cpu is None else _otherShare(system, cpuTimes(), cpu, spent, elapsed)
    )
    body = b"".join(out)
    return Run(
        len(data),
        len(body),
        spent,
        elapsed,
        other,
        zlib.decompress(body, GZIP_WBITS) == data,
    )


def zlibRun(data: bytes, level: int, memLevel: int, cpu: int | None = None) -> Run:
    """zlib over all of C{data} in one call, with the stream's window."""
    system, clock, wall = cpuTimes(), time.process_time(), time.perf_counter()
    z = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS, memLevel)
    body = z.compress(data) + z.flush()
    spent, elapsed = time.process_time() - clock, time.perf_counter() - wall
    other = (
        None if cpu is None else _otherShare(system, cpuTimes(), cpu, spent, elapsed)
    )
    return Run(len(data), len(body), spent, elapsed, other)


# -- Apache ---------------------------------------------------------------------


def apacheConfig(
    folder: Path,
    documents: Path,
    ports: dict[int, int],
    user: tuple[str, str] | None = None,
    modules: Path = APACHE_MODULES,
) -> str:
    """
    Apache with mod_deflate serving C{documents} on 127.0.0.1: one port for
    each level (C{ports}: level to port); its other files in C{folder}.
    C{user} (user, group) is who it serves as when started by root.
    """
    load = "".join(
        f"LoadModule {name}_module {modules / ('mod_' + name + '.so')}\n"
        for name in ("mpm_prefork", "authz_core", "mime", "filter", "deflate")
    )
    who = f"User {user[0]}\nGroup {user[1]}\n" if user else ""
    hosts = "".join(
        f"Listen 127.0.0.1:{port}\n"
        f"<VirtualHost 127.0.0.1:{port}>\n"
        f"    DeflateCompressionLevel {level}\n"
        "</VirtualHost>\n"
        for level, port in sorted(ports.items())
    )
    return (
        f'ServerRoot "{folder}"\n'
        "ServerName 127.0.0.1\n"
        f"PidFile {folder / 'httpd.pid'}\n"
        f"DefaultRuntimeDir {folder}\n"
        f"Mutex file:{folder} default\n"
        f"ErrorLog {folder / 'error.log'}\n"
        "LogLevel warn\n" + load + who + "TypesConfig /dev/null\n"
        "AddType text/html .html\n"
        f"DocumentRoot {documents}\n"
        f"<Directory {documents}>\n"
        "    Require all granted\n"
        "</Directory>\n"
        "AddOutputFilterByType DEFLATE text/html\n"
        f"DeflateMemLevel {APACHE_MEM_LEVEL}\n"
        f"DeflateWindowSize {APACHE_WINDOW}\n"
        f"DeflateBufferSize {APACHE_BUFFER}\n" + hosts
    )


def apacheCommand(apache: str, folder: Path, config: Path) -> list[str]:
    """One Apache process in the foreground (C{-X}: no children) with C{config}."""
    return [apache, "-X", "-d", str(folder), "-f", str(config)]


def curlCommand(curl: str, url: str) -> list[str]:
    """C{curl} asking for gzip and throwing the body away: its size and time."""
    return [
        curl,
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "600",
        "-H",
        "Accept-Encoding: gzip",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code} %{size_download} %{time_total}\n",
        url,
    ]


def parseCurl(text: str) -> tuple[int, int, float]:
    """Status, bytes received and seconds from L{curlCommand}'s last line."""
    lines = text.strip().splitlines()
    fields = lines[-1].split() if lines else []
    try:
        status, size, seconds = int(fields[0]), int(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        raise ValueError(f"cannot read curl's output: {text[-300:]!r}") from None
    return status, size, seconds


def fetchGunzipped(port: int, path: str) -> tuple[int, int, str | None]:
    """GET C{path} asking for gzip: its gzip size, the crc32 of the decoded
    body and what is wrong with the answer, if anything."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    decoder = zlib.decompressobj(GZIP_WBITS)
    crc = size = 0
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        encoding = response.getheader("content-encoding")
        if response.status != 200 or encoding != "gzip":
            return 0, 0, f"answered {response.status} with encoding {encoding}"
        while chunk := response.read(1 << 20):
            size += len(chunk)
            crc = zlib.crc32(decoder.decompress(chunk), crc)
        crc = zlib.crc32(decoder.flush(), crc)
    except (OSError, http.client.HTTPException, zlib.error) as e:
        return 0, 0, f"GET {path} failed: {e!r}"
    finally:
        connection.close()
    return size, crc, None if decoder.eof else "the gzip stream did not end"


# -- ratios and the summary -------------------------------------------------------


def _figure(row: dict[str, Any] | None, key: str) -> float | None:
    if not row or row.get("error"):
        return None
    value = row.get(key)
    return float(value) if value is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compressRatios(levels: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each level: GzipStream over Apache (per CPU-second and per second)
    and over zlib in one call (per CPU-second)."""
    ratios: dict[str, dict[str, Any]] = {}
    for level, row in levels.items():
        ours, apache, alone = row.get("gzipstream"), row.get("apache"), row.get("zlib")
        cpu = "mib_per_cpu_second"
        ratios[level] = {
            "proxy_over_apache": _ratio(_figure(ours, cpu), _figure(apache, cpu)),
            "proxy_over_apache_wall": _ratio(
                _figure(ours, "mib_per_second"), _figure(apache, "mib_per_second")
            ),
            "proxy_over_zlib": _ratio(_figure(ours, cpu), _figure(alone, cpu)),
        }
    return ratios


def verdict(report: dict[str, Any]) -> bool | None:
    """Whether GzipStream reached L{TARGET} of Apache's rate at Apache's
    default level (6); C{None} if either was not measured."""
    ratio = (report.get("ratios") or {}).get("6", {}).get("proxy_over_apache")
    return None if ratio is None else ratio >= TARGET


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _size(row: dict[str, Any] | None) -> str:
    share = _figure(row, "out_share")
    return _fmt(None if share is None else share * 100, ".1f", "%")


def summariseCompress(report: dict[str, Any]) -> str:
    """The human-readable summary of the compression part."""
    s = report["settings"]
    levels: dict[str, Any] = report.get("levels") or {}
    ratios: dict[str, Any] = report.get("ratios") or {}
    apache = report.get("apache") or {}
    cpu = "mib_per_cpu_second"
    lines = [
        "",
        f"Compression: gzip of {s['corpus_mib']} MiB of generated HTML and JSON "
        f"(seed {s['seed']}), MiB/s",
        f"  GzipStream: in-process on {s['pinning']}, fed {s['piece'] // 1024} KiB "
        "pieces (a backend read each),",
        "  each flushed; zlib: the same level, window and memLevel "
        f"{s['mem_level']}, in one call;",
        f"  Apache: {apache.get('version') or 'apache2'} mod_deflate, one process "
        "(-X) on the same CPU,",
        "  a static file to curl on the other. MiB/s per CPU-second; Apache's also per",
        "  second of curl's transfer (wall)",
        "",
        f"  {'level':<6}{'GzipStream':>10}{'zlib':>7}{'Apache':>7}{'wall':>7}"
        f"{'proxy/Apache':>13}{'wall':>6}{'proxy/zlib':>11}"
        f"{'size: proxy':>12}{'Apache':>7}",
    ]
    for level, row in levels.items():
        r = ratios.get(level) or {}
        mark = "*" if int(level) == s["default_level"] else " "
        lines.append(
            f"  {mark}{level:<5}"
            f"{_fmt(_figure(row.get('gzipstream'), cpu), '.1f'):>10}"
            f"{_fmt(_figure(row.get('zlib'), cpu), '.1f'):>7}"
            f"{_fmt(_figure(row.get('apache'), cpu), '.1f'):>7}"
            f"{_fmt(_figure(row.get('apache'), 'mib_per_second'), '.1f'):>7}"
            f"{_fmt(r.get('proxy_over_apache'), '.2f', 'x'):>13}"
            f"{_fmt(r.get('proxy_over_apache_wall'), '.2f', 'x'):>6}"
            f"{_fmt(r.get('proxy_over_zlib'), '.2f', 'x'):>11}"
            f"{_size(row.get('gzipstream')):>12}{_size(row.get('apache')):>7}"
        )
    lines.append(
        "  (* the default compress_level; proxy/Apache wall: GzipStream's MiB/s"
        "\n   per second over curl's; size: gzip output / input)"
    )
    ok = verdict(report)
    if ok is not None:
        lines.append(
            f"  GzipStream / Apache at level 6 (mod_deflate's default) >= "
            f"{TARGET:.1f}x: {'PASS' if ok else 'FAIL'}"
        )
    extra = report.get("extra") or {}
    default = str(s["default_level"])
    base = _figure((levels.get(default) or {}).get("gzipstream"), cpu)
    small = extra.get("gzipstream_small_pieces")
    if small:
        value = _figure(small, cpu)
        lines.append(
            f"  level {default}, GzipStream in {s['small_piece'] // 1024} KiB pieces "
            f"(small chunks, each flushed): {_fmt(value, '.1f')} MiB/s,\n"
            f"    {_fmt(_ratio(value, base), '.2f', 'x')} of its rate in "
            f"{s['piece'] // 1024} KiB pieces; size {_size(small)}"
        )
    mem9 = extra.get("zlib_mem_level_9")
    if mem9:
        value = _figure(mem9, cpu)
        alone = _figure((levels.get(default) or {}).get("zlib"), cpu)
        lines.append(
            f"  level {default}, zlib at memLevel {APACHE_MEM_LEVEL} (mod_deflate's): "
            f"{_fmt(value, '.1f')} MiB/s,\n"
            f"    {_fmt(_ratio(value, alone), '.2f', 'x')} of its rate at memLevel "
            f"{s['mem_level']}; size {_size(mem9)}"
        )
    if apache.get("error"):
        first = str(apache["error"]).splitlines()[0]
        lines.append(f"  Apache: not measured: {first[:90]}")
    for level, row in levels.items():
        for name, label in (
            ("gzipstream", "GzipStream"),
            ("zlib", "zlib"),
            ("apache", "Apache"),
        ):
            part = row.get(name) or {}
            if part.get("error"):
                first = str(part["error"]).splitlines()[0]
                lines.append(f"  level {level} {label}: failed: {first[:80]}")
            elif part and not part.get("ok", True):
                lines.append(f"  level {level} {label}: OUTPUT WRONG")
            elif (part.get("otherShare") or 0.0) > CONTENTION:
                lines.append(
                    f"  WARNING: level {level} {label}: other processes took "
                    f"{part['otherShare']:.0%} of its CPU: unreliable"
                )
    return "\n".join(lines)


# -- running it -------------------------------------------------------------------


@dataclass(frozen=True)
class CompressSettings:
    """How much to compress, at which levels."""

    corpusBytes: int
    levels: tuple[int, ...] = LEVELS
    defaultLevel: int = DEFAULT_LEVEL


@dataclass
class _Apache:
    child: Child
    ports: dict[int, int]
    version: str | None


class CompressBench:
    """Runs the compression part: every level three ways, then the ratios."""

    def __init__(
        self,
        settings: CompressSettings,
        children: Children,
        proxyCPU: int,
        loadCPU: int,
        log: Callable[[str], None],
    ) -> None:
        self._s = settings
        self._children = children
        self._proxyCPU = proxyCPU
        self._loadCPU = loadCPU
        self._log = log
        self._curl = "curl"

    def run(self) -> dict[str, Any]:
        """Measure every level; the compression report."""
        s = self._s
        self._log(f"compress: generating the {s.corpusBytes // MIB} MiB corpus")
        data = corpus(s.corpusBytes)
        report: dict[str, Any] = {
            "settings": {
                "corpus_mib": s.corpusBytes // MIB,
                "seed": CORPUS_SEED,
                "piece": READ_PIECE,
                "small_piece": SMALL_PIECE,
                "mem_level": MEM_LEVEL,
                "wbits": GZIP_WBITS,
                "levels": list(s.levels),
                "default_level": s.defaultLevel,
                "pinning": f"CPU {self._proxyCPU}",
                "target": TARGET,
            },
            "corpus_crc32": zlib.crc32(data),
        }
        levels: dict[str, Any] = {}
        folder = Path(tempfile.mkdtemp(prefix="twisted-proxy-bench-apache-"))
        try:
            apache = self._startApache(folder, data)
            report["apache"] = (
                {"version": apache.version, "ports": apache.ports}
                if isinstance(apache, _Apache)
                else {"error": apache}
            )
            try:
                for level in s.levels:
                    levels[str(level)] = self._level(data, level, apache)
                report["extra"] = self._extra(data)
            finally:
                if isinstance(apache, _Apache):
                    self._children.stop(apache.child)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        report["levels"] = levels
        report["ratios"] = compressRatios(levels)
        report["target_met"] = verdict(report)
        return report

    def _inProcess(self, measure: Callable[[int | None], Run]) -> dict[str, Any]:
        with pinnedTo(self._proxyCPU) as where, noGC():
            cpu = self._proxyCPU if where.startswith("CPU") else None
            return measure(cpu).asDict()

    def _level(self, data: bytes, level: int, apache: _Apache | str) -> dict[str, Any]:
        """GzipStream, zlib and Apache at one level."""
        self._log(f"compress: level {level}: GzipStream, zlib, Apache")
        row = {
            "gzipstream": self._inProcess(
                lambda cpu: gzipStreamRun(data, level, READ_PIECE, cpu)
            ),
            "zlib": self._inProcess(lambda cpu: zlibRun(data, level, MEM_LEVEL, cpu)),
        }
        if isinstance(apache, _Apache):
            row["apache"] = self._apacheRun(apache, level, data)
        return row

    def _extra(self, data: bytes) -> dict[str, Any]:
        """Small pieces and mod_deflate's memLevel, at the default level."""
        level = self._s.defaultLevel
        self._log(f"compress: level {level}: small pieces, memLevel 9")
        return {
            "gzipstream_small_pieces": self._inProcess(
                lambda cpu: gzipStreamRun(data, level, SMALL_PIECE, cpu)
            ),
            "zlib_mem_level_9": self._inProcess(
                lambda cpu: zlibRun(data, level, APACHE_MEM_LEVEL, cpu)
            ),
        }

    def _startApache(self, folder: Path, data: bytes) -> _Apache | str:
        """Apache serving the corpus, or why it could not be started."""
        try:
            apache = ensureTool("apache2", "apache2")
            self._curl = ensureTool("curl", "curl")
        except ToolError as e:
            self._log(f"compress: no Apache; its column is skipped ({e})")
            return str(e)
        if not (APACHE_MODULES / "mod_deflate.so").exists():
            return f"no mod_deflate in {APACHE_MODULES}"
        # Started by root, Apache serves as nobody: it must be able to read
        # the corpus.
        folder.chmod(0o755)
        documents = folder / "htdocs"
        documents.mkdir(mode=0o755)
        page = documents / "corpus.html"
        page.write_bytes(data)
        page.chmod(0o644)
        ports = {level: freePort() for level in self._s.levels}
        user = ("nobody", "nogroup") if os.geteuid() == 0 else None
        config = folder / "httpd.conf"
        config.write_text(apacheConfig(folder, documents, ports, user))
        child = self._children.start(
            "compress-apache",
            apacheCommand(apache, folder, config),
            cpu=self._proxyCPU,
            cwd=folder,
        )
        try:
            for port in ports.values():
                waitForListener(child, port)
        except ChildError as e:
            self._children.stop(child)
            errors = folder / "error.log"
            tail = errors.read_text(errors="replace")[-500:] if errors.exists() else ""
            return f"{e}\n{tail}".strip()
        return _Apache(child, ports, _version(apache))

    def _apacheRun(self, apache: _Apache, level: int, data: bytes) -> dict[str, Any]:
        """Check Apache's gzip once (and warm up), then time curl fetching it."""
        port = apache.ports[level]
        size, crc, problem = fetchGunzipped(port, "/corpus.html")
        if problem:
            return {"error": problem, "log": apache.child.tail()}
        url = f"http://127.0.0.1:{port}/corpus.html"
        system, before = cpuTimes(), cpuSeconds(apache.child.pid)
        began = time.perf_counter()
        try:
            code, output = self._children.run(
                f"compress-curl-{level}",
                curlCommand(self._curl, url),
                self._loadCPU,
                timeout=660,
            )
            status, received, seconds = parseCurl(output)
        except (ChildError, ValueError) as e:
            return {"error": str(e)}
        elapsed = time.perf_counter() - began
        after = cpuSeconds(apache.child.pid)
        spent = after - before if after is not None and before is not None else None
        if code != 0 or status != 200:
            return {"error": f"curl exited with {code}, HTTP {status}: {output[-300:]}"}
        other = (
            _otherShare(system, cpuTimes(), self._proxyCPU, spent, elapsed)
            if spent is not None and self._children.pinned
            else None
        )
        run = Run(
            len(data),
            received,
            spent,
            seconds,
            other,
            ok=size == received and crc == zlib.crc32(data),
        )
        return run.asDict()


def _version(apache: str) -> str | None:
    """C{Apache/2.4.x (Debian)}, from C{apache2 -v}."""
    try:
        done = subprocess.run(
            [apache, "-v"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in done.stdout.splitlines():
        if line.startswith("Server version:"):
            return line.partition(":")[2].strip()
    return None
