"""
Coverage-guided fuzzing with atheris: each target runs for a few seconds in a
process of its own (libFuzzer exits on the first crash), from the seed corpus.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.corpus import TARGETS, dictionary, seeds

# atheris publishes wheels for x86-64 Linux only (pyproject.toml installs it
# only there); elsewhere the hypothesis tests fuzz the same targets alone.
pytest.importorskip("atheris")

_ROOT = Path(__file__).resolve().parents[2]
_RUNS = {"request": 150_000, "chunked": 28_000, "response": 12_000, "config": 12_000}
"""
Inputs per target, about 7 s of fuzzing each where they were measured: a fixed
count and seed make a run repeat itself, and L{_SECONDS} bounds it where the
machine is slower.
"""
_SECONDS = 12
_SHOWN = 2000
"""Bytes of a crashing input shown in the failure."""


def _fuzz(target: str, workdir: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the harness on C{target} with its seeds and dictionary in C{workdir}."""
    corpus = workdir / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(seeds(target)):
        (corpus / f"seed-{index:03d}").write_bytes(seed)
    tokens = workdir / "tokens.dict"
    tokens.write_text(dictionary(target))
    artifacts = workdir / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_targets",
        target,
        f"-runs={_RUNS[target]}",
        f"-max_total_time={_SECONDS}",
        # Inputs up to 4 KiB: the size limits have tests of their own
        # (test_fuzz_parsers), and longer inputs bring slow-input false alarms.
        "-max_len=4096",
        "-timeout=5",
        "-rss_limit_mb=2048",
        "-seed=1",
        f"-dict={tokens}",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    result = subprocess.run(
        command,
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        # atheris writes the traceback to stdout, libFuzzer its report to stderr.
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=_SECONDS + 40,
        check=False,
    )
    return result, artifacts


@pytest.mark.timeout(_SECONDS + 50)
@pytest.mark.parametrize("target", TARGETS)
def test_atherisFindsNothing(target: str, tmp_path: Path) -> None:
    """libFuzzer, run on a target for a few seconds, finds no crash or hang."""
    result, artifacts = _fuzz(target, tmp_path)
    found = sorted(artifacts.iterdir())
    if result.returncode == 0 and not found:
        return
    report = [f"atheris {target}: exit status {result.returncode}"]
    for path in found:
        data = path.read_bytes()
        shown = repr(data[:_SHOWN]) + ("..." if len(data) > _SHOWN else "")
        report.append(f"{path.name} ({len(data)} bytes): {shown}")
    report.append("--- harness output (end) ---")
    report.extend(result.stdout.splitlines()[-60:])
    pytest.fail("\n".join(report), pytrace=False)
