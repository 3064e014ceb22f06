"""
The WebSocket conformance run (C{make conformance}): Autobahn|Testsuite's
fuzzingclient against the echo backend (L{tests.conformance.echo}) directly,
then against twisted-proxy in front of the same backend, and a comparison.

Everything listens on 127.0.0.1. The proxy runs as C{twistd -n proxy} with a
generated configuration: one listener on a port of its choosing (read back
from its log) and one route C{/} to C{ws://127.0.0.1:ECHOPORT/} (or
C{http://}, with C{--scheme http}). Reports, the spec files, the proxy's
configuration and every process's output go to C{--outdir}
(C{build/conformance/}); the HTML reports there show each case in detail.

Prints the summary table and the cases that do worse through the proxy,
with Autobahn's reasons. Exits 1 when a case passes directly but not through
the proxy (see L{tests.conformance.report}), 2 when the run itself could not
be made; 0 otherwise. Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from tests.conformance.report import (
    CaseResult,
    compare,
    formatSummary,
    formatWorse,
    gating,
    parseIndex,
    reasonFor,
)

REPO = Path(__file__).resolve().parents[2]

# Autobahn's groups: 1 framing, 2 pings/pongs, 3 reserved bits, 4 opcodes,
# 5 fragmentation, 6 UTF-8, 7 closing, 9 limits/performance (messages up to
# 16 MiB; some ten seconds each way), 10 auto-fragmentation. 12 and 13
# (permessage-deflate) take over ten minutes even directly, so they are left
# to --cases.
DEFAULT_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")

_ECHO_READY = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)/")
_PROXY_READY = re.compile(r"listening on IPv4Address\(.*port=(\d+)\)")


class HarnessError(Exception):
    """The run could not be made (a process did not start, a report is missing)."""


class Child:
    """
    A long-running process whose output is copied, line by line, to a log
    file by a thread, which also watches for the line saying it is ready.
    """

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, ready: re.Pattern[str]
    ):
        self.name = name
        self.log = log
        self._ready = ready
        self._found: queue.Queue[re.Match[str] | None] = queue.Queue()
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as e:
            raise HarnessError(f"{name} did not start: {e}") from e
        assert self.process.stdout is not None
        self._copier = threading.Thread(
            target=self._copy, args=(self.process.stdout,), daemon=True
        )
        self._copier.start()

    def _copy(self, stream: IO[str]) -> None:
        matched = False
        with self.log.open("w") as log:
            for line in stream:
                log.write(line)
                log.flush()
                if not matched:
                    match = self._ready.search(line)
                    if match is not None:
                        matched = True
                        self._found.put(match)
        if not matched:
            self._found.put(None)

    def waitReady(self, timeout: float) -> re.Match[str]:
        """The ready line's match; L{HarnessError} if it exits or times out first."""
        try:
            match = self._found.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(
                f"{self.name} not ready after {timeout:g} s; its output:\n{self.tail()}"
            ) from None
        if match is None:
            code = self.process.wait()
            raise HarnessError(
                f"{self.name} exited with {code} before it was ready; its output:\n"
                f"{self.tail()}"
            )
        return match

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; the exit code (None: was running)."""
        code = self.process.poll()
        if code is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._copier.join(timeout=5)
        return code

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def fuzzingSpec(agent: str, url: str, outdir: Path, cases: Sequence[str]) -> Any:
    """A fuzzingclient spec: one server, the given cases, reports in C{outdir}."""
    return {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": list(cases),
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }


def proxyConfig(backendPort: int, scheme: str) -> str:
    """The proxy's TOML: a listener on a free loopback port, / to the backend."""
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        'endpoint = "tcp:0:interface=127.0.0.1"\n'
        "\n"
        "[[route]]\n"
        'path = "/"\n'
        f'to = "{scheme}://127.0.0.1:{backendPort}/"\n'
    )


def fuzz(
    wstest: Path,
    agent: str,
    url: str,
    outdir: Path,
    cases: Sequence[str],
    timeout: float,
) -> tuple[dict[str, CaseResult], Path]:
    """
    Run the fuzzingclient as C{agent} against C{url}; its results by case id
    and the directory of its reports. A run that writes no report gives no
    results (every case then counts as missing).
    """
    reports = outdir / agent
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    spec = outdir / f"fuzzingclient-{agent}.json"
    spec.write_text(json.dumps(fuzzingSpec(agent, url, reports, cases), indent=2))
    log = outdir / f"wstest-{agent}.log"
    print(f"{agent}: wstest -m fuzzingclient against {url} (log: {_show(log)})")
    with log.open("w") as out:
        try:
            code = subprocess.run(
                [str(wstest), "-m", "fuzzingclient", "-s", str(spec)],
                cwd=outdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            print(f"{agent}: wstest still running after {timeout:g} s: stopped")
            code = None
    index = reports / "index.json"
    if not index.exists():
        print(f"{agent}: wstest (exit {code}) wrote no report")
        return {}, reports
    try:
        results = parseIndex(json.loads(index.read_text()), agent)
    except ValueError as e:
        raise HarnessError(f"{_show(index)}: {e}") from e
    if code != 0:
        print(f"{agent}: wstest exited with {code}")
    return results, reports


def reasons(
    reports: Path, proxied: dict[str, CaseResult], cases: Sequence[str]
) -> dict[str, str]:
    """Autobahn's explanation for each of C{cases}, from its detail report."""
    found = {}
    for case in cases:
        result = proxied.get(case)
        if result is None or not result.reportfile:
            continue
        try:
            found[case] = reasonFor(
                json.loads((reports / result.reportfile).read_text())
            )
        except (OSError, ValueError):
            continue
    return found


def run(args: argparse.Namespace) -> int:
    outdir: Path = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    wstest: Path = Path(args.wstest).resolve()
    if not wstest.exists():
        raise HarnessError(f"{wstest} not found: `make conformance` installs it")
    cases = args.cases or DEFAULT_CASES

    with ExitStack() as stack:
        echo = stack.enter_context(
            Child(
                "the echo backend",
                [sys.executable, "-m", "tests.conformance.echo"],
                outdir / "echo.log",
                _ECHO_READY,
            )
        )
        echoPort = int(echo.waitReady(args.start_timeout).group(1))
        print(f"echo backend on ws://127.0.0.1:{echoPort}/")
        direct, _ = fuzz(
            wstest,
            "direct",
            f"ws://127.0.0.1:{echoPort}/",
            outdir,
            cases,
            args.timeout,
        )
        if not direct:
            raise HarnessError(
                "the direct run has no results; see "
                f"{_show(outdir / 'wstest-direct.log')}"
            )

        config = outdir / "proxy.toml"
        config.write_text(proxyConfig(echoPort, args.scheme))
        proxy = stack.enter_context(
            Child(
                "twisted-proxy",
                [
                    str(args.twistd),
                    "-n",
                    "--pidfile=",
                    "proxy",
                    "--config",
                    str(config),
                ],
                outdir / "proxy.log",
                _PROXY_READY,
            )
        )
        proxyPort = int(proxy.waitReady(args.start_timeout).group(1))
        print(f"twisted-proxy on 127.0.0.1:{proxyPort}, route / to {args.scheme}://")
        proxied, proxiedReports = fuzz(
            wstest,
            "proxied",
            f"ws://127.0.0.1:{proxyPort}/",
            outdir,
            cases,
            args.timeout,
        )
        proxyExit = proxy.stop()
        if proxyExit is not None:
            print(f"twisted-proxy exited with {proxyExit} during the run")

    worse = compare(direct, proxied)
    failing = gating(worse, strictClose=args.strict_close)
    print()
    print(
        f"Autobahn|Testsuite fuzzingclient, cases {' '.join(cases)}: the echo"
        " backend directly and through twisted-proxy"
    )
    print(formatSummary(direct, proxied, worse))
    if worse:
        print()
        print(f"Worse through the proxy ({len(worse)}):")
        print(
            formatWorse(
                worse, reasons(proxiedReports, proxied, [w.case for w in worse])
            )
        )
    print()
    print(f"Reports: {_show(outdir)}/{{direct,proxied}}/index.html")
    gate = "a case fails when it passes directly but not through the proxy"
    if args.strict_close:
        gate += ", or closes worse"
    print(f"({gate})")
    print(f"conformance: {len(direct) - len(failing)} passed, {len(failing)} failed")
    return 1 if failing else 0


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _raiseOnTerm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the children are stopped on the way out.
    raise KeyboardInterrupt


def parseArgs(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.run",
        description="Autobahn fuzzingclient: the echo backend, direct vs proxied.",
    )
    parser.add_argument(
        "--wstest",
        type=Path,
        default=REPO / ".venv-autobahn" / "bin" / "wstest",
        help="wstest from autobahntestsuite (default: .venv-autobahn/bin/wstest)",
    )
    parser.add_argument(
        "--twistd",
        type=Path,
        default=Path(sys.executable).parent / "twistd",
        help="the twistd that has the proxy plugin (default: beside this python)",
    )
    parser.add_argument(
        "--outdir",
        type=Path,
        default=REPO / "build" / "conformance",
        help="reports, logs and generated files (default: build/conformance)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help=f"case patterns (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument(
        "--scheme",
        choices=("ws", "http"),
        default="ws",
        help="the route's backend scheme: ws://, or http:// carrying upgrades",
    )
    parser.add_argument(
        "--strict-close",
        action="store_true",
        help="also fail on a worse closing handshake through the proxy",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds each wstest run may take (default: 600)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=30,
        help="seconds the echo backend and the proxy may take to listen",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    # Progress lines show as they happen under make and CI too.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, _raiseOnTerm)
    try:
        return run(args)
    except HarnessError as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
