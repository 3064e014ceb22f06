"""Big responses in the throughput part of ``python -m bench``: MiB/s of 10 MiB bodies.

Debian's nginx serves one 10 MiB file (sendfile) on the load CPU as the
backend; each proxy in turn (twisted-proxy, Twisted's byte relay, nginx,
HAProxy), pinned to the proxy CPU like the small-response rows, relays it to
C{wrk -c4} asking for it again and again. Reported: MiB/s, the proxy's CPU
seconds per GiB, and twisted-proxy's MiB/s over HAProxy's and nginx's.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

from bench.nginx import oneProcessConfig

SIZE = 10 * 1024 * 1024
PATH = "/10m.bin"
CONNECTIONS = 4
MIB = 1024 * 1024


def staticConfig(folder: Path, port: int, root: Path) -> str:
    """nginx serving the files under C{root} on 127.0.0.1:C{port}, one process."""
    return oneProcessConfig(
        folder,
        "    sendfile on;\n"
        "    default_type application/octet-stream;\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        root {root};\n"
        "    }\n",
    )


def writeBody(root: Path) -> Path:
    """The 10 MiB file the backend serves (not all zeros, not compressible)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / PATH.lstrip("/")
    block = bytes(range(256)) * 4096
    with path.open("wb") as f:
        for i in range(SIZE // len(block)):
            f.write(block[i % 256 :] + block[: i % 256])
    return path


def fetchSize(port: int) -> int | None:
    """The length of the body a proxy on C{port} answers C{PATH} with."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        size = len(response.read())
        return size if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def ratios(rows: dict[str, Any], ours: str) -> dict[str, float]:
    """twisted-proxy's MiB/s over each other row's."""
    mine = rows.get(ours, {}).get("mib_per_s")
    if not mine:
        return {}
    return {
        name: mine / row["mib_per_s"]
        for name, row in rows.items()
        if name != ours and row.get("mib_per_s")
    }


def summarise(part: dict[str, Any], ours: str, target: str) -> list[str]:
    """The lines the summary prints for this part."""
    lines = [
        "",
        f"Big responses: {SIZE // MIB} MiB bodies from a static nginx backend, "
        f"wrk -c{CONNECTIONS}",
        "",
        f"  {'':<20}{'MiB/s':>10}{'CPU s/GiB':>11}{'peak RSS':>11}",
    ]
    for name, row in part["rows"].items():
        if "error" in row:
            first = row["error"].splitlines()[0] if row["error"] else "error"
            lines.append(f"  {name:<20}failed: {first[:60]}")
            continue
        cpu = row.get("cpu_s_per_gib")
        peak = row.get("rss_peak_mb")
        lines.append(
            f"  {name:<20}{row['mib_per_s']:>10,.0f}"
            f"{'-' if cpu is None else f'{cpu:.2f}':>11}"
            f"{'-' if peak is None else f'{peak:.1f} MB':>11}"
        )
    for name, ratio in part.get("ratios", {}).items():
        lines.append(f"  ratio tp/{name:<14}{ratio:>7.2f}x")
    versus = part.get("ratios", {}).get(target)
    if versus is not None:
        verdict = "PASS" if versus >= 1.0 else "FAIL"
        lines.append(f"  MiB/s target >= {target}'s: {verdict}")
    return lines
