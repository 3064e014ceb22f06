"""
mod_proxy_hcheck's C{ProxyHCExpr} conditions, where this proxy's health
check can say the same: a test of C{%{REQUEST_STATUS}} becomes the statuses
a check expects, C{hc('body') =~ /text/} the text its body must hold.
"""

from __future__ import annotations

import re

__all__ = ["HealthExpressionError", "healthExpectation"]


class HealthExpressionError(ValueError):
    """An expression the health check cannot express."""


_STATUS = "%{REQUEST_STATUS}"
_BODY = "hc('body')"
_TEST = re.compile(
    r"\s*(%\{REQUEST_STATUS\}|hc\('body'\))\s*"
    r"(=~|!~|==|!=|-eq|-ne|-lt|-le|-gt|-ge|<=|>=|<|>)\s*"
    r"(/(?:[^/\\]|\\.)*/|'[^']*'|\"[^\"]*\"|\d+)\s*"
)
_NUMERIC = {
    "==": lambda a, b: a == b,
    "-eq": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "-ne": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "-lt": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "-le": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "-gt": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "-ge": lambda a, b: a >= b,
}
_CODES = range(100, 600)


def _statuses(operator: str, operand: str) -> frozenset[int]:
    """The status codes a test of C{%{REQUEST_STATUS}} lets pass."""
    if operator in ("=~", "!~"):
        if not operand.startswith("/"):
            raise HealthExpressionError(f"{operator} takes a /regex/")
        try:
            pattern = re.compile(operand[1:-1])
        except re.error as e:
            raise HealthExpressionError(f"bad regex {operand}: {e}") from None
        found = {code for code in _CODES if pattern.search(str(code))}
        return frozenset(found if operator == "=~" else set(_CODES) - found)
    value = operand.strip("'\"")
    if not value.isdigit():
        raise HealthExpressionError(f"{operator} takes a number, got {operand}")
    compare = _NUMERIC[operator]
    return frozenset(code for code in _CODES if compare(code, int(value)))


def _expected(codes: frozenset[int]) -> list[str]:
    """Statuses as the health check's C{expect_status}: "2xx" or "204"."""
    out: list[str] = []
    for hundred in range(1, 6):
        block = set(range(hundred * 100, hundred * 100 + 100))
        if block <= codes:
            out.append(f"{hundred}xx")
        else:
            out.extend(str(code) for code in sorted(codes & block))
    return out


def healthExpectation(expression: str) -> dict[str, object]:
    """
    The health-check keys (C{expect_status}, C{expect_body}) that say what
    C{expression} (a C{ProxyHCExpr} condition, braces removed) says.

    :raise HealthExpressionError: when they cannot.
    """
    if "||" in expression or "(" in expression.replace(_BODY, ""):
        raise HealthExpressionError("only tests joined by && can be expressed")
    codes: frozenset[int] = frozenset(_CODES)
    body: str | None = None
    for part in expression.split("&&"):
        test = _TEST.fullmatch(part)
        if test is None:
            raise HealthExpressionError(f"cannot be expressed: {part.strip()!r}")
        subject, operator, operand = test.groups()
        if subject == _STATUS:
            codes &= _statuses(operator, operand)
            continue
        text = operand[1:-1]
        if operator != "=~" or not operand.startswith("/") or body is not None:
            raise HealthExpressionError(
                "of the body, only one hc('body') =~ /text/ can be expressed"
            )
        if re.escape(text) != text:
            raise HealthExpressionError(
                f"the body is searched for plain text here, not {operand}"
            )
        body = text
    result: dict[str, object] = {}
    if codes != frozenset(_CODES):
        if not codes:
            raise HealthExpressionError("no status passes this test")
        result["expect_status"] = _expected(codes)
    if body is not None:
        result["expect_body"] = body
    return result
