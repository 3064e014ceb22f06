"""
Reading and comparing Autobahn|Testsuite fuzzingclient reports: plain values
in, plain values out, no files and no processes (L{tests.conformance.run}
does those).

A fuzzingclient run writes C{index.json}: C{{agent: {case id: {"behavior",
"behaviorClose", "remoteCloseCode", "duration", "reportfile"}}}}. A case
I{passes} when its behavior is OK, NON-STRICT or INFORMATIONAL, the verdicts
that Autobahn's own report table does not mark as failed. The conformance
gate compares the echo backend reached through the proxy with the same
backend reached directly: a case that passes directly and fails (or is
missing) through the proxy fails the run. Lesser downgrades (OK to
NON-STRICT, a worse closing handshake) are listed but only the latter can
be made to fail the run, with C{strictClose}.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
FAILED = "FAILED"
MISSING = "MISSING"

PASSING = frozenset({OK, NON_STRICT, INFORMATIONAL})

# Higher is better. A behavior Autobahn has no rank for (FAILED,
# UNIMPLEMENTED, NO_CLOSE, anything new) is a failure.
_BEHAVIOR_RANK = {OK: 3, INFORMATIONAL: 3, NON_STRICT: 2}
_CLOSE_RANK = {
    OK: 4,
    INFORMATIONAL: 4,
    "FAILED BY CLIENT": 3,
    "WRONG CODE": 2,
    "UNCLEAN": 1,
}

# A worse case: "fail" passes directly but not through the proxy (this fails
# the run); "degraded" is OK directly but only NON-STRICT through the proxy;
# "close" has a worse closing handshake through the proxy.
Kind = Literal["fail", "degraded", "close"]


@dataclass(frozen=True)
class CaseResult:
    """One case's line in C{index.json}."""

    case: str
    behavior: str
    behaviorClose: str
    remoteCloseCode: int | None = None
    duration: int = 0
    reportfile: str = ""


@dataclass(frozen=True)
class Worse:
    """A case that does worse through the proxy than directly."""

    case: str
    kind: Kind
    direct: CaseResult
    # None: the proxied run has no result for the case at all.
    proxied: CaseResult | None


@dataclass(frozen=True)
class Counts:
    """How the cases of one group (or all of them) came out."""

    ok: int = 0
    nonStrict: int = 0
    informational: int = 0
    failed: int = 0
    missing: int = 0

    @property
    def total(self) -> int:
        return (
            self.ok + self.nonStrict + self.informational + self.failed + self.missing
        )

    def plus(self, behavior: str) -> Counts:
        """These counts with one more case of C{behavior} (or L{MISSING})."""
        ok, nonStrict, informational, failed, missing = (
            self.ok,
            self.nonStrict,
            self.informational,
            self.failed,
            self.missing,
        )
        if behavior == OK:
            ok += 1
        elif behavior == NON_STRICT:
            nonStrict += 1
        elif behavior == INFORMATIONAL:
            informational += 1
        elif behavior == MISSING:
            missing += 1
        else:
            failed += 1
        return Counts(ok, nonStrict, informational, failed, missing)


def caseKey(case: str) -> tuple[int, ...]:
    """Sort key for case ids: "10.1.1" after "9.8.6", "5.10" after "5.9"."""
    return tuple(int(part) for part in case.split("."))


def caseGroup(case: str) -> str:
    """The case's top-level group: "6" for "6.4.2"."""
    return case.split(".", 1)[0]


def parseIndex(
    index: Mapping[str, Any], agent: str | None = None
) -> dict[str, CaseResult]:
    """
    The results of one agent in a fuzzingclient C{index.json}, by case id.

    @param agent: the agent to read; may be left out when the report has
        only one.
    @raise ValueError: the report is not shaped like an C{index.json}, or the
        agent is not in it.
    """
    if not isinstance(index, Mapping):
        raise ValueError("index.json: expected an object of agents")
    if agent is None:
        if len(index) != 1:
            raise ValueError(
                f"index.json: expected one agent, found {sorted(index) or 'none'}"
            )
        [agent] = index
    if agent not in index:
        raise ValueError(f"index.json: no agent {agent!r} (found {sorted(index)})")
    cases = index[agent]
    if not isinstance(cases, Mapping):
        raise ValueError(f"index.json: agent {agent!r}: expected an object of cases")
    results = {}
    for case, entry in cases.items():
        try:
            caseKey(case)
            results[case] = CaseResult(
                case=case,
                behavior=str(entry["behavior"]),
                behaviorClose=str(entry["behaviorClose"]),
                remoteCloseCode=entry.get("remoteCloseCode"),
                duration=int(entry.get("duration") or 0),
                reportfile=str(entry.get("reportfile") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"index.json: case {case!r}: malformed ({e!r})") from e
    return results


def passes(result: CaseResult | None) -> bool:
    """Whether the case passes: behavior OK, NON-STRICT or INFORMATIONAL."""
    return result is not None and result.behavior in PASSING


def _closeRank(result: CaseResult) -> int:
    return _CLOSE_RANK.get(result.behaviorClose, 0)


def compare(
    direct: Mapping[str, CaseResult], proxied: Mapping[str, CaseResult]
) -> list[Worse]:
    """
    The cases that do worse through the proxy than directly, in case order,
    each once under its most serious kind ("fail", then "degraded", then
    "close"). A case the direct run lacks is not compared; one the proxied
    run lacks is a "fail" if it passes directly.
    """
    worse = []
    for case in sorted(direct, key=caseKey):
        d, p = direct[case], proxied.get(case)
        kind: Kind | None = None
        if p is None:
            kind = "fail" if passes(d) else None
        elif passes(d) and not passes(p):
            kind = "fail"
        elif d.behavior == OK and p.behavior == NON_STRICT:
            kind = "degraded"
        elif _closeRank(p) < _closeRank(d):
            kind = "close"
        if kind is not None:
            worse.append(Worse(case, kind, d, p))
    return worse


def gating(worse: Iterable[Worse], strictClose: bool = False) -> list[Worse]:
    """The worse cases that fail the run: "fail" ones, and "close" ones if strict."""
    kinds = {"fail", "close"} if strictClose else {"fail"}
    return [w for w in worse if w.kind in kinds]


def summarize(
    direct: Mapping[str, CaseResult], proxied: Mapping[str, CaseResult]
) -> dict[str, tuple[Counts, Counts]]:
    """
    Per case group, in group order, then "all": the direct and the proxied
    counts. Cases are those of the direct run; one the proxied run lacks
    counts as missing there.
    """
    groups: dict[str, tuple[Counts, Counts]] = {}
    total = (Counts(), Counts())
    for case in sorted(direct, key=caseKey):
        group = caseGroup(case)
        d, p = groups.get(group, (Counts(), Counts()))
        dBehavior = direct[case].behavior
        pBehavior = proxied[case].behavior if case in proxied else MISSING
        groups[group] = (d.plus(dBehavior), p.plus(pBehavior))
        total = (total[0].plus(dBehavior), total[1].plus(pBehavior))
    groups["all"] = total
    return groups


def _describe(result: CaseResult | None) -> str:
    if result is None:
        return "no result"
    code = "-" if result.remoteCloseCode is None else str(result.remoteCloseCode)
    return f"{result.behavior}, close {result.behaviorClose} ({code})"


_HEADER = [
    "group",
    "cases",
    "ok",
    "n-s",
    "info",
    "fail",
    "ok",
    "n-s",
    "info",
    "fail",
    "miss",
    "worse",
]
_ROW = "{:<6}{:>6} |{:>5}{:>5}{:>5}{:>5} |{:>5}{:>5}{:>5}{:>5}{:>5} |{:>6}"


def formatSummary(
    direct: Mapping[str, CaseResult],
    proxied: Mapping[str, CaseResult],
    worse: Iterable[Worse],
) -> str:
    """The summary table: per group, direct and proxied counts, and how many worse."""
    worseByGroup: dict[str, int] = {}
    worse = list(worse)
    for w in worse:
        worseByGroup[caseGroup(w.case)] = worseByGroup.get(caseGroup(w.case), 0) + 1
    worseByGroup["all"] = len(worse)
    header = _ROW.format(*_HEADER)
    lines = ["{:<12} | {:<19} | {:<24} |".format("", "direct", "through the proxy")]
    lines.append(header)
    for group, (d, p) in summarize(direct, proxied).items():
        if group == "all":
            lines.append("-" * len(header))
        directCells = (d.total, d.ok, d.nonStrict, d.informational, d.failed)
        proxiedCells = (p.ok, p.nonStrict, p.informational, p.failed, p.missing)
        lines.append(
            _ROW.format(group, *directCells, *proxiedCells, worseByGroup.get(group, 0))
        )
    return "\n".join(lines)


def formatWorse(
    worse: Iterable[Worse], reasons: Mapping[str, str] | None = None
) -> str:
    """
    One line per worse case (kind, direct and proxied verdicts), followed by
    the reason Autobahn gives for it when C{reasons} has one.
    """
    reasons = reasons or {}
    lines = []
    for w in worse:
        lines.append(
            f"  {w.case:<8} {w.kind:<9} direct: {_describe(w.direct)};"
            f" proxied: {_describe(w.proxied)}"
        )
        if w.case in reasons:
            lines.append(f"           {reasons[w.case]}")
    return "\n".join(lines)


def reasonFor(caseReport: Mapping[str, Any], limit: int = 160) -> str:
    """
    Autobahn's explanation in one case's detail report (its JSON file): its
    verdicts' texts and, for a case short of OK, what it received against
    what OK expects (each cut to C{limit} characters).
    """
    parts = [
        str(caseReport.get(key))
        for key in ("result", "resultClose", "wasNotCleanReason")
        if caseReport.get(key)
    ]
    expected = caseReport.get("expected")
    shortOfOK = caseReport.get("behavior") != OK
    if shortOfOK and isinstance(expected, Mapping) and OK in expected:
        received = _cut(repr(caseReport.get("received")), limit)
        wanted = _cut(repr(expected[OK]), limit)
        parts.append(f"received {received}, OK expects {wanted}")
    return " | ".join(parts)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
