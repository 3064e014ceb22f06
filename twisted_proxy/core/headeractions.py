"""
The header directives beyond C{set} and C{unset}: Apache's C{edit},
C{edit*} (C{edit_all}), C{append} and C{add}, for the request and response
header rewriters (L{twisted_proxy.core.headers}).

Pure, like the rewriters: header lists in, header lists out. Everything a
directive needs (compiled expressions, their templates, lowercased names,
encoded values) is worked out once, when a rewriter is built; a table that
uses none of these kinds costs its rewriter nothing per message.

A table keeps one list per kind, so the kinds apply in a fixed order:
edit, edit_all, unset, set, append, add.
"""

from __future__ import annotations

import re

from twisted_proxy.config.convert import InvalidValueError
from twisted_proxy.config.headeredit import compileEdit
from twisted_proxy.config.model import HeaderDirectives

__all__ = ["HeaderActions", "headerActions"]

Headers = list[tuple[bytes, bytes]]
# A compiled expression, its re.sub template, and how many matches to
# replace (1 for edit, 0, every one, for edit_all).
Edit = tuple[re.Pattern[bytes], bytes, int]


class HeaderActions:
    """
    One directive table's edits, sets, appends and adds, applied in that
    order by L{apply} (the caller has already taken out the fields that
    C{unset} and C{set} remove).
    """

    __slots__ = ("_adds", "_appends", "_edits", "_setHeaders")

    def __init__(
        self,
        edits: dict[bytes, tuple[Edit, ...]],
        setHeaders: tuple[tuple[bytes, bytes], ...],
        appends: dict[bytes, tuple[bytes, bytes]],
        adds: tuple[tuple[bytes, bytes], ...],
    ) -> None:
        """
        :param edits: by lowercased name, the edits of that name's fields,
            C{edit}'s before C{edit_all}'s, each kind in the file's order.
        :param setHeaders: the fields C{set} adds.
        :param appends: by lowercased name, the field to add when there is
            none of that name, its value what goes after C{", "} when there is.
        :param adds: the fields C{add} adds, in the file's order.
        """
        self._edits = edits
        self._setHeaders = setHeaders
        self._appends = appends
        self._adds = adds

    def apply(self, headers: Headers) -> Headers:
        """
        C{headers} (changed in place, or replaced) with the edits, then the
        C{set} fields, appends and adds applied.
        """
        edits = self._edits
        if edits:
            for index, (name, value) in enumerate(headers):
                chain = edits.get(name.lower())
                if chain is not None:
                    for pattern, template, count in chain:
                        value = pattern.sub(template, value, count)
                    headers[index] = (name, value)
        headers.extend(self._setHeaders)
        if self._appends:
            headers = _append(headers, self._appends)
        headers.extend(self._adds)
        return headers


def _append(headers: Headers, appends: dict[bytes, tuple[bytes, bytes]]) -> Headers:
    """
    C{headers} with each append applied: the fields of its name merged into
    one, where the first of them was, with C{", "} and the appended value
    after them (as Apache's request headers, merged when read, come out);
    a field of its own, at the end, when there is none.
    """
    out: Headers = []
    merged: dict[bytes, int] = {}
    for item in headers:
        lower = item[0].lower()
        if lower in appends:
            at = merged.get(lower)
            if at is not None:
                name, value = out[at]
                out[at] = (name, value + b", " + item[1])
                continue
            merged[lower] = len(out)
        out.append(item)
    for lower, (name, value) in appends.items():
        at = merged.get(lower)
        if at is None:
            out.append((name, value))
        else:
            first = out[at]
            out[at] = (first[0], first[1] + b", " + value)
    return out


def _value(what: str, value: str) -> bytes:
    """A configured value, encoded; CR, LF or NUL in it refused."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{what}: header values may not contain CR, LF or NUL")
    return value.encode("utf-8")


def headerActions(
    directives: HeaderDirectives,
    setHeaders: tuple[tuple[bytes, bytes], ...],
    what: str,
) -> HeaderActions | None:
    """
    The L{HeaderActions} of C{directives}, whose C{set} fields (encoded) are
    C{setHeaders}; None when they use no kind but C{set} and C{unset}.

    :param what: the table's key path, for the message of a L{ValueError}
        raised for a value or edit the loader would have refused.
    """
    if not (
        directives.add or directives.append or directives.edit or directives.edit_all
    ):
        return None
    edits: dict[bytes, list[Edit]] = {}
    for key, count, entries in (
        ("edit", 1, directives.edit),
        ("edit_all", 0, directives.edit_all),
    ):
        for index, (name, regex, replacement) in enumerate(entries):
            try:
                pattern, template = compileEdit(regex, replacement)
            except InvalidValueError as e:
                raise ValueError(f"{what}.{key}[{index}]: {e}") from None
            lower = name.encode("ascii").lower()
            edits.setdefault(lower, []).append((pattern, template, count))
    appends: dict[bytes, tuple[bytes, bytes]] = {}
    for index, (name, text) in enumerate(directives.append):
        encoded = name.encode("ascii")
        value = _value(f"{what}.append[{index}]", text)
        earlier = appends.get(encoded.lower())
        if earlier is not None:
            # Two appends of one name: the second after the first.
            encoded, value = earlier[0], earlier[1] + b", " + value
        appends[encoded.lower()] = (encoded, value)
    adds = tuple(
        (name.encode("ascii"), _value(f"{what}.add[{index}]", text))
        for index, (name, text) in enumerate(directives.add)
    )
    return HeaderActions(
        {name: tuple(chain) for name, chain in edits.items()},
        setHeaders,
        appends,
        adds,
    )
