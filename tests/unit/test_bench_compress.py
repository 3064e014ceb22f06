"""
Tests for the compression benchmark's pure parts: its corpus, the Apache it
configures, what it reads from curl, and how it works out and shows ratios.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import pytest

from bench.compress import (
    APACHE_MODULES,
    MIB,
    Run,
    apacheCommand,
    apacheConfig,
    compressRatios,
    corpus,
    curlCommand,
    gzipStreamRun,
    parseCurl,
    pieces,
    rate,
    summariseCompress,
    verdict,
    zlibRun,
)

SMALL = 200_000


def test_corpusIsTheSameOnEveryRun() -> None:
    """The corpus depends on its seed alone: the figures of two runs compare."""
    assert corpus(SMALL) == corpus(SMALL)
    # Pinned: a change to the generator changes every figure after it.
    assert zlib.crc32(corpus(65536)) == 1714076179
    assert corpus(SMALL, seed=8) != corpus(SMALL)


def test_shorterCorpusIsTheStartOfALongerOne() -> None:
    """A quick run compresses the first part of what a full run compresses."""
    longer = corpus(3 * SMALL)
    assert len(longer) == 3 * SMALL
    assert longer[:SMALL] == corpus(SMALL)


def test_corpusIsTextThatCompressesLikePages() -> None:
    """HTML and JSON of some variety: neither one repeated line nor noise."""
    text = corpus(SMALL)
    assert b"<tr " in text
    assert b'{"id": ' in text
    assert b"<!DOCTYPE html>" in text
    lines = text.splitlines()
    assert len(set(lines)) > 0.9 * len(lines)
    share = len(gzip.compress(text, 6)) / len(text)
    assert 0.1 < share < 0.4


def test_piecesCoverTheBodyInReadSizes() -> None:
    """The stream gets the corpus in order, in pieces no bigger than a read."""
    data = bytes(range(256)) * 10
    cut = list(pieces(data, 1000))
    assert [len(p) for p in cut] == [1000, 1000, 560]
    assert b"".join(cut) == data


def test_runsCheckTheirOutput() -> None:
    """The GzipStream run decodes its output back; both count bytes in and out."""
    data = corpus(SMALL)
    stream = gzipStreamRun(data, 6, 65536)
    alone = zlibRun(data, 6, 8)
    assert stream.ok
    assert stream.inBytes == alone.inBytes == SMALL
    # Four pieces, each flushed: a few bytes more than one call.
    assert alone.outBytes < stream.outBytes < alone.outBytes + 100
    assert stream.cpuSeconds is not None
    assert stream.cpuSeconds >= 0


def test_rateAndRunFigures() -> None:
    """Rates are MiB of input per second; an unknown time gives no rate."""
    assert rate(10 * MIB, 2.0) == 5.0
    assert rate(MIB, None) is None
    assert rate(MIB, 0.0) is None
    figures = Run(4 * MIB, MIB, 2.0, 4.0).asDict()
    assert figures["mib_per_cpu_second"] == 2.0
    assert figures["mib_per_second"] == 1.0
    assert figures["out_share"] == 0.25


def test_apacheConfig(tmp_path: Path) -> None:
    """One port per level on 127.0.0.1, mod_deflate on HTML, files in its folder."""
    documents = tmp_path / "htdocs"
    config = apacheConfig(tmp_path, documents, {6: 18006, 1: 18001})
    listens = [line for line in config.splitlines() if line.startswith("Listen")]
    assert listens == ["Listen 127.0.0.1:18001", "Listen 127.0.0.1:18006"]
    first = config.index("<VirtualHost 127.0.0.1:18001>")
    sixth = config.index("<VirtualHost 127.0.0.1:18006>")
    assert config.index("DeflateCompressionLevel 1", first) < sixth
    assert "DeflateCompressionLevel 6" in config[sixth:]
    assert f"LoadModule deflate_module {APACHE_MODULES}/mod_deflate.so\n" in config
    assert "AddOutputFilterByType DEFLATE text/html\n" in config
    assert "DeflateMemLevel 9\n" in config
    assert f"DocumentRoot {documents}\n" in config
    for line in config.splitlines():
        if line.startswith(("PidFile", "ErrorLog", "DefaultRuntimeDir")):
            assert str(tmp_path) in line
    assert "User " not in config
    asRoot = apacheConfig(tmp_path, documents, {6: 18006}, ("nobody", "nogroup"))
    assert "User nobody\nGroup nogroup\n" in asRoot


def test_apacheAndCurlCommands(tmp_path: Path) -> None:
    """Apache runs as one foreground process; curl asks for gzip and drops it."""
    config = tmp_path / "httpd.conf"
    argv = apacheCommand("/usr/sbin/apache2", tmp_path, config)
    assert argv[:2] == ["/usr/sbin/apache2", "-X"]
    assert argv[-2:] == ["-f", str(config)]
    curl = curlCommand("curl", "http://127.0.0.1:1/corpus.html")
    assert "Accept-Encoding: gzip" in curl
    assert curl[curl.index("--output") + 1] == "/dev/null"
    assert curl[-1] == "http://127.0.0.1:1/corpus.html"


def test_parseCurl() -> None:
    """Status, gzip bytes and seconds come from curl's --write-out line."""
    assert parseCurl("200 18638476 5.562409\n") == (200, 18638476, 5.562409)
    with pytest.raises(ValueError, match="curl"):
        parseCurl("curl: (7) Failed to connect\n")
    with pytest.raises(ValueError, match="curl"):
        parseCurl("")


def _row(ours: float, alone: float, apache: float | None) -> dict[str, Any]:
    """One level's figures (MiB/s per CPU-second; wall the same)."""

    def figures(value: float) -> dict[str, Any]:
        return Run(100 * MIB, 20 * MIB, 100 / value, 100 / value).asDict()

    row = {"gzipstream": figures(ours), "zlib": figures(alone)}
    if apache is not None:
        row["apache"] = figures(apache)
    return row


def test_ratios() -> None:
    """GzipStream over Apache and over zlib, each level; none without Apache."""
    ratios = compressRatios({"6": _row(16.0, 20.0, 20.0), "9": _row(9.0, 10.0, None)})
    assert ratios["6"]["proxy_over_apache"] == pytest.approx(0.8)
    assert ratios["6"]["proxy_over_apache_wall"] == pytest.approx(0.8)
    assert ratios["6"]["proxy_over_zlib"] == pytest.approx(0.8)
    assert ratios["9"]["proxy_over_apache"] is None
    assert ratios["9"]["proxy_over_zlib"] == pytest.approx(0.9)


def test_failedApacheRowHasNoRatio() -> None:
    """An Apache row that failed gives no figure to divide by."""
    row = _row(16.0, 20.0, None)
    row["apache"] = {"error": "curl exited with 7"}
    assert compressRatios({"6": row})["6"]["proxy_over_apache"] is None


@pytest.mark.parametrize(("apache", "met"), [(20.0, True), (21.0, False), (None, None)])
def test_verdictAtLevelSix(apache: float | None, met: bool | None) -> None:
    """The target is 0.8x Apache's rate at level 6; unknown without Apache."""
    report = {"ratios": compressRatios({"6": _row(16.5, 17.0, apache)})}
    assert verdict(report) is met


def _report(**changes: Any) -> dict[str, Any]:
    levels = {
        "1": _row(70.0, 72.0, 60.0),
        "6": _row(18.0, 19.0, 20.0),
        "9": _row(10.0, 11.0, 12.0),
    }
    report: dict[str, Any] = {
        "settings": {
            "corpus_mib": 100,
            "seed": 7,
            "piece": 65536,
            "small_piece": 4096,
            "mem_level": 8,
            "default_level": 6,
            "pinning": "CPU 0",
        },
        "apache": {"version": "Apache/2.4.68 (Debian)"},
        "levels": levels,
        "extra": {
            "gzipstream_small_pieces": Run(100 * MIB, 21 * MIB, 100 / 15.0, 1).asDict(),
            "zlib_mem_level_9": Run(100 * MIB, 20 * MIB, 100 / 19.0, 1).asDict(),
        },
    }
    report.update(changes)
    report["ratios"] = compressRatios(report["levels"])
    return report


def test_summary() -> None:
    """Each level's rates and ratios, the default marked, the verdict and notes."""
    text = summariseCompress(_report())
    rows = {
        line.split()[0]: line.split()[1:]
        for line in text.splitlines()
        if line.startswith(("   1 ", "  *6 ", "   9 "))
    }
    assert rows["1"] == [
        "70.0",
        "72.0",
        "60.0",
        "60.0",
        "1.17x",
        "1.17x",
        "0.97x",
        "20.0%",
        "20.0%",
    ]
    assert rows["*6"][4:7] == ["0.90x", "0.90x", "0.95x"]
    assert rows["9"][4] == "0.83x"
    assert "Apache/2.4.68 (Debian)" in text
    assert "at level 6 (mod_deflate's default) >= 0.8x: PASS" in text
    assert "4 KiB pieces (small chunks, each flushed): 15.0 MiB/s" in text
    assert "0.83x of its rate in 64 KiB pieces; size 21.0%" in text
    assert "zlib at memLevel 9 (mod_deflate's): 19.0 MiB/s" in text
    assert "WARNING" not in text


def test_summaryWithoutApache() -> None:
    """Without Apache its columns show '-', the reason is given, no verdict."""
    levels = {"6": _row(18.0, 19.0, None)}
    text = summariseCompress(_report(levels=levels, apache={"error": "no apache2"}))
    row = next(line for line in text.splitlines() if line.startswith("  *6"))
    assert row.split()[3:7] == ["-", "-", "-", "-"]
    assert "Apache: not measured: no apache2" in text
    assert "PASS" not in text
    assert "FAIL" not in text


def test_summaryFlagsBadRows() -> None:
    """A slow verdict, wrong output and a busy CPU are all said plainly."""
    levels = {"6": _row(10.0, 19.0, 20.0), "9": _row(10.0, 11.0, 12.0)}
    levels["6"]["gzipstream"]["ok"] = False
    levels["9"]["apache"]["otherShare"] = 0.3
    text = summariseCompress(_report(levels=levels))
    assert ">= 0.8x: FAIL" in text
    assert "level 6 GzipStream: OUTPUT WRONG" in text
    assert "WARNING: level 9 Apache: other processes took 30% of its CPU" in text
