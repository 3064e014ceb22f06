"""Tests for L{tests.conformance.report}: reading and comparing Autobahn reports."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.report import (
    CaseResult,
    Counts,
    caseGroup,
    caseKey,
    compare,
    formatSummary,
    formatWorse,
    gating,
    parseIndex,
    passes,
    reasonFor,
    summarize,
)


def entry(behavior: str = "OK", close: str = "OK", code: int | None = 1000) -> Any:
    """One case's line in index.json, as wstest writes it."""
    return {
        "behavior": behavior,
        "behaviorClose": close,
        "duration": 3,
        "remoteCloseCode": code,
        "reportfile": "agent_case.json",
    }


def results(agent: str = "a", **cases: Any) -> dict[str, CaseResult]:
    """Parse a one-agent index whose case ids are given as _1_2_3=entry(...)."""
    index = {agent: {case[1:].replace("_", "."): e for case, e in cases.items()}}
    return parseIndex(index)


def test_parseIndexOneAgent() -> None:
    """The only agent's cases are read, each field kept."""
    parsed = parseIndex({"direct": {"1.1.1": entry(), "7.1.6": entry("INFORMATIONAL")}})
    assert parsed["1.1.1"] == CaseResult(
        "1.1.1", "OK", "OK", 1000, 3, "agent_case.json"
    )
    assert parsed["7.1.6"].behavior == "INFORMATIONAL"


def test_parseIndexNamedAgent() -> None:
    """With several agents, the one asked for is read."""
    index = {"direct": {"1.1.1": entry()}, "proxied": {"1.1.1": entry("FAILED")}}
    assert parseIndex(index, "proxied")["1.1.1"].behavior == "FAILED"


@pytest.mark.parametrize(
    ("index", "agent"),
    [
        ({}, None),
        ({"a": {}, "b": {}}, None),
        ({"a": {}}, "b"),
        ({"a": []}, None),
        ({"a": {"1.1": {"behaviorClose": "OK"}}}, None),
        ({"a": {"one": entry()}}, None),
        ([], None),
    ],
)
def test_parseIndexRejectsMalformed(index: Any, agent: str | None) -> None:
    """Anything not shaped like a wstest index.json is a ValueError."""
    with pytest.raises(ValueError, match=r"index\.json"):
        parseIndex(index, agent)


def test_caseOrderAndGroup() -> None:
    """Case ids sort numerically, and their group is the first number."""
    cases = ["10.1.1", "9.8.6", "5.10", "5.9", "1.1.1"]
    assert sorted(cases, key=caseKey) == ["1.1.1", "5.9", "5.10", "9.8.6", "10.1.1"]
    assert caseGroup("6.4.2") == "6"
    assert caseGroup("10.1.1") == "10"


@pytest.mark.parametrize(
    ("behavior", "passing"),
    [
        ("OK", True),
        ("NON-STRICT", True),
        ("INFORMATIONAL", True),
        ("FAILED", False),
        ("UNIMPLEMENTED", False),
        ("NO_CLOSE", False),
    ],
)
def test_passes(behavior: str, passing: bool) -> None:
    """OK, NON-STRICT and INFORMATIONAL pass; every other verdict fails."""
    assert passes(CaseResult("1.1.1", behavior, "OK")) is passing


def test_passesMissing() -> None:
    """A case with no result does not pass."""
    assert not passes(None)


def test_compareSameIsNothingWorse() -> None:
    """Identical reports have no case worse through the proxy."""
    direct = results(_1_1_1=entry(), _7_1_6=entry("INFORMATIONAL", "INFORMATIONAL"))
    assert compare(direct, dict(direct)) == []


def test_compareFailThroughProxy() -> None:
    """A case passing directly and failing through the proxy is a "fail"."""
    direct = results(_1_1_1=entry(), _5_15=entry("NON-STRICT"))
    proxied = results(_1_1_1=entry("FAILED", "UNCLEAN", None), _5_15=entry("FAILED"))
    worse = compare(direct, proxied)
    assert [(w.case, w.kind) for w in worse] == [("1.1.1", "fail"), ("5.15", "fail")]
    assert worse[0].direct == direct["1.1.1"]
    assert worse[0].proxied == proxied["1.1.1"]


def test_compareMissingThroughProxy() -> None:
    """A case passing directly but absent from the proxied report is a "fail"."""
    direct = results(_1_1_1=entry(), _1_1_2=entry())
    worse = compare(direct, results(_1_1_1=entry()))
    assert [(w.case, w.kind, w.proxied) for w in worse] == [("1.1.2", "fail", None)]


def test_compareFailingBothWaysIsNotWorse() -> None:
    """A case the echo backend fails directly too is not held against the proxy."""
    direct = results(_3_2=entry("FAILED"), _3_3=entry("FAILED"))
    proxied = results(_3_2=entry("FAILED"))
    assert compare(direct, proxied) == []


def test_compareOnlyInProxiedIgnored() -> None:
    """Cases the direct run lacks are not compared."""
    assert compare(results(_1_1_1=entry()), results(_1_1_1=entry(), _2_1=entry())) == []


def test_compareDegraded() -> None:
    """OK directly but NON-STRICT through the proxy is "degraded", not a failure."""
    worse = compare(results(_3_2=entry()), results(_3_2=entry("NON-STRICT")))
    assert [(w.case, w.kind) for w in worse] == [("3.2", "degraded")]
    assert gating(worse) == []
    assert gating(worse, strictClose=True) == []


@pytest.mark.parametrize(
    ("directClose", "proxiedClose", "worse"),
    [
        ("OK", "UNCLEAN", True),
        ("OK", "WRONG CODE", True),
        ("OK", "FAILED BY CLIENT", True),
        ("WRONG CODE", "FAILED", True),
        ("INFORMATIONAL", "OK", False),
        ("UNCLEAN", "OK", False),
        ("UNCLEAN", "UNCLEAN", False),
    ],
)
def test_compareClose(directClose: str, proxiedClose: str, worse: bool) -> None:
    """A worse closing handshake with the same passing behavior is "close"."""
    found = compare(
        results(_7_1_1=entry(close=directClose)),
        results(_7_1_1=entry(close=proxiedClose)),
    )
    assert [(w.case, w.kind) for w in found] == ([("7.1.1", "close")] if worse else [])


def test_gating() -> None:
    """Only "fail" cases fail the run; "close" ones too when strict."""
    direct = results(_1_1_1=entry(), _3_2=entry(), _7_1_1=entry())
    proxied = results(
        _1_1_1=entry("FAILED"), _3_2=entry("NON-STRICT"), _7_1_1=entry(close="UNCLEAN")
    )
    worse = compare(direct, proxied)
    assert [w.case for w in gating(worse)] == ["1.1.1"]
    assert [w.case for w in gating(worse, strictClose=True)] == ["1.1.1", "7.1.1"]


def test_summarize() -> None:
    """Cases are counted per group, in group order, then all together."""
    direct = results(
        _1_1_1=entry(),
        _1_1_2=entry(),
        _7_1_6=entry("INFORMATIONAL"),
        _10_1_1=entry(),
        _9_1_1=entry("FAILED"),
    )
    proxied = results(
        _1_1_1=entry("NON-STRICT"),
        _7_1_6=entry("INFORMATIONAL"),
        _9_1_1=entry("FAILED"),
        _10_1_1=entry("UNIMPLEMENTED"),
    )
    summary = summarize(direct, proxied)
    assert list(summary) == ["1", "7", "9", "10", "all"]
    assert summary["1"] == (Counts(ok=2), Counts(nonStrict=1, missing=1))
    assert summary["7"] == (Counts(informational=1), Counts(informational=1))
    assert summary["10"] == (Counts(ok=1), Counts(failed=1))
    assert summary["all"] == (
        Counts(ok=3, informational=1, failed=1),
        Counts(nonStrict=1, informational=1, failed=2, missing=1),
    )
    assert summary["all"][1].total == 5


def test_formatSummary() -> None:
    """The table has a row per group and a total, with the counts and worse cases."""
    direct = results(_1_1_1=entry(), _1_1_2=entry(), _10_1_1=entry())
    proxied = results(_1_1_1=entry(), _1_1_2=entry("FAILED"))
    table = formatSummary(direct, proxied, compare(direct, proxied))
    # group cases | ok n-s info fail | ok n-s info fail miss | worse
    rows = {line.split()[0]: " ".join(line.split()) for line in table.splitlines()}
    assert (
        rows["group"]
        == "group cases | ok n-s info fail | ok n-s info fail miss | worse"
    )
    assert rows["1"] == "1 2 | 2 0 0 0 | 1 0 0 1 0 | 1"
    assert rows["10"] == "10 1 | 1 0 0 0 | 0 0 0 0 1 | 1"
    assert rows["all"] == "all 3 | 3 0 0 0 | 1 0 0 1 1 | 2"


def test_formatWorse() -> None:
    """Each worse case shows both verdicts, and Autobahn's reason when known."""
    direct = results(_1_1_1=entry(), _1_1_2=entry())
    proxied = results(_1_1_1=entry("FAILED", "UNCLEAN", None))
    text = formatWorse(compare(direct, proxied), {"1.1.1": "Actual events differ"})
    assert text.splitlines() == [
        "  1.1.1    fail      direct: OK, close OK (1000);"
        " proxied: FAILED, close UNCLEAN (-)",
        "           Actual events differ",
        "  1.1.2    fail      direct: OK, close OK (1000); proxied: no result",
    ]


def test_reasonFor() -> None:
    """The reason joins Autobahn's result, close result and unclean reason."""
    report = {
        "result": "Actual events differ from any expected.",
        "resultClose": "The spec requires the connection to be failed cleanly here",
        "wasNotCleanReason": "peer dropped the TCP connection without previous"
        " WebSocket closing handshake",
        "behavior": "FAILED",
    }
    assert reasonFor(report) == (
        "Actual events differ from any expected."
        " | The spec requires the connection to be failed cleanly here"
        " | peer dropped the TCP connection without previous WebSocket closing"
        " handshake"
    )
    assert reasonFor({"result": "ok", "wasNotCleanReason": None}) == "ok"


def test_reasonForShortOfOK() -> None:
    """A case short of OK also shows what it received and what OK expects."""
    report: dict[str, Any] = {
        "behavior": "NON-STRICT",
        "result": "Actual events match at least one expected.",
        "expected": {"NON-STRICT": [], "OK": [["message", "Hello, world!", False]]},
        "received": [],
    }
    assert reasonFor(report) == (
        "Actual events match at least one expected."
        " | received [], OK expects [['message', 'Hello, world!', False]]"
    )
    report["received"] = [["message", "x" * 400, False]]
    assert "received [['message', 'xxxx" in reasonFor(report, limit=40)
    assert len(reasonFor(report, limit=40)) < 200
