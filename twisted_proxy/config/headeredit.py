"""
Apache's C{Header edit}: a regular expression and its replacement, checked
and compiled once, for the loader (which refuses a wrong one) and for the
header rewriters (which run it).

The replacement has the syntax of Apache's C{ap_pregsub}: C{$0} is the match,
C{$1} to C{$9} its groups (empty when a group took no part in the match); a
backslash makes the next character literal (C{\\$1} is the text C{$1},
C{\\\\} one backslash); everything else is literal. The expression is
Python's C{re} syntax (PCRE's for the common cases), matched against the
header value's bytes as Apache's PCRE does without its UTF mode.
"""

from __future__ import annotations

import json
import re

from .convert import InvalidValueError

__all__ = ["compileEdit", "parseReplacement"]

_DIGITS = "0123456789"
_FORBIDDEN = "\r\n\0"


def parseReplacement(replacement: str) -> tuple[str | int, ...]:
    """
    C{replacement} in pieces: literal text, and the number of each C{$N}.
    """
    pieces: list[str | int] = []
    literal: list[str] = []
    index = 0
    end = len(replacement)
    while index < end:
        char = replacement[index]
        following = replacement[index + 1] if index + 1 < end else ""
        if char == "$" and following and following in _DIGITS:
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(int(following))
            index += 2
        elif char == "\\" and following:
            literal.append(following)
            index += 2
        else:
            literal.append(char)
            index += 1
    if literal:
        pieces.append("".join(literal))
    return tuple(pieces)


def compileEdit(regex: str, replacement: str) -> tuple[re.Pattern[bytes], bytes]:
    """
    The compiled C{regex} and C{replacement} as a C{re.sub} template.

    Raises L{InvalidValueError} for an expression C{re} refuses, a C{$N}
    beyond its groups, or a replacement holding CR, LF or NUL. Since every
    literal byte of the template comes from the checked replacement and the
    rest is text the expression matched, an edit's result holds CR, LF or
    NUL only where the value it edited already did.
    """
    if any(char in replacement for char in _FORBIDDEN):
        raise InvalidValueError("expected a replacement without line breaks")
    try:
        pattern = re.compile(regex.encode("utf-8"))
    except (re.error, OverflowError, RecursionError) as e:
        raise InvalidValueError(
            f"invalid regular expression {json.dumps(regex, ensure_ascii=False)}: {e}"
        ) from None
    template: list[bytes] = []
    for piece in parseReplacement(replacement):
        if isinstance(piece, int):
            if piece > pattern.groups:
                groups = pattern.groups
                raise InvalidValueError(
                    f"${piece} in the replacement, but the regular expression "
                    f"has {groups} group{'' if groups == 1 else 's'}"
                )
            template.append(b"\\g<%d>" % piece)
        else:
            # Only a backslash means anything in a re.sub template.
            template.append(piece.encode("utf-8").replace(b"\\", b"\\\\"))
    return pattern, b"".join(template)
