"""
Apache httpd's configuration syntax, read into a tree, with no I/O of its
own: the files come through a L{Files} the caller hands in.

What httpd reads, read the same way: one directive per line, a trailing
backslash joining the next line; C{#} starting a comment only as a line's
first word; arguments split at blanks, with double or single quotes
keeping blanks and a backslash before a quote keeping it; C{<Name args>}
opening a section that C{</Name>} closes, names compared without case.
C{Include} and C{IncludeOptional} read other files (globs sorted, relative
paths against C{ServerRoot} or the first file's folder), C{<IfModule>} keeps
its lines when the module is one the caller says is there (C{!} negates;
one that does not hold stays in the tree as an empty section, so its
skipped lines can be spoken of), C{Define} names a variable that
C{${NAME}} stands for in later lines (as do the variables the caller
hands in: httpd's environment) and C{<IfDefine>} tests, and every
directive remembers the file and line it came from, so whatever is made of
it, and every error, can name them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ApacheSyntaxError",
    "Directive",
    "Files",
    "Section",
    "parse",
    "words",
]

_MAX_INCLUDE_DEPTH = 16

_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


class ApacheSyntaxError(ValueError):
    """A file httpd would refuse as well: where, and why."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Directive:
    """One directive: its name as written, its arguments, where it was."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int

    @property
    def key(self) -> str:
        """The name without case, as httpd compares it."""
        return self.name.lower()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Section(Directive):
    """A C{<Name args>} ... C{</Name>} block and what it holds."""

    children: tuple[Directive, ...] = field(default=())


@dataclass(frozen=True)
class Files:
    """
    How the parser reaches files: C{read(path)} gives a file's text,
    C{glob(pattern)} the paths that match it (sorted by the parser).
    """

    read: Callable[[str], str]
    glob: Callable[[str], list[str]]


def words(text: str, file: str = "<string>", line: int = 1) -> tuple[str, ...]:
    """
    Split a directive's arguments as httpd does (C{ap_getword_conf}): at
    blanks, a double- or single-quoted word kept whole (a backslash keeps
    the quote after it), an unterminated quote an error.
    """
    out: list[str] = []
    at, size = 0, len(text)
    while True:
        while at < size and text[at] in " \t":
            at += 1
        if at >= size:
            return tuple(out)
        quote = text[at]
        if quote in "\"'":
            at += 1
            word: list[str] = []
            while True:
                if at >= size:
                    raise ApacheSyntaxError(file, line, f"no closing {quote}")
                char = text[at]
                if char == "\\" and at + 1 < size and text[at + 1] == quote:
                    word.append(quote)
                    at += 2
                    continue
                if char == quote:
                    at += 1
                    break
                word.append(char)
                at += 1
            out.append("".join(word))
        else:
            start = at
            while at < size and text[at] not in " \t":
                at += 1
            out.append(text[start:at])


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """
    The logical lines of C{text} with the number of the first physical one:
    backslash continuations joined, blank lines and comments left out.
    """
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not pending:
            first = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = "".join(pending).strip()
        pending = []
        if joined and not joined.startswith("#"):
            yield first, joined
    if pending:
        joined = "".join(pending).strip()
        if joined and not joined.startswith("#"):
            yield first, joined


def _split(line: str) -> tuple[str, str]:
    """A line's first word (a name) and the rest."""
    for at, char in enumerate(line):
        if char in " \t":
            return line[:at], line[at + 1 :]
    return line, ""


@dataclass
class _Open:
    """A section being read: its head, and its children so far."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    children: list[Directive] = field(default_factory=list)
    keep: bool = True
    conditional: bool = False


@dataclass(frozen=True)
class _Reading:
    """What every file of one parse shares."""

    files: Files | None
    modules: Callable[[str], bool]
    root: str
    variables: dict[str, str]


def parse(
    text: str,
    file: str = "<string>",
    files: Files | None = None,
    modules: Callable[[str], bool] = lambda name: True,
    serverRoot: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> tuple[Directive, ...]:
    """
    The directives of C{text} (the file C{file}), in order, sections with
    their children. C{Include} reads through C{files} (without one it is an
    error); C{<IfModule>} keeps its lines when C{modules(name)} says the
    module is there; C{${NAME}} is C{Define}'s value or C{variables}' (an
    undefined one is left as written, as httpd does). Raises
    L{ApacheSyntaxError} at the first fault.
    """
    root = serverRoot or posixpath.dirname(file) or "."
    reading = _Reading(files, modules, root, dict(variables or {}))
    return tuple(_parse(text, file, reading, (file,)))


def _substitute(line: str, variables: Mapping[str, str]) -> str:
    """C{${NAME}} replaced by its value where it has one."""
    if "${" not in line:
        return line
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), line)


def _holds(name: str, args: tuple[str, ...], reading: _Reading) -> bool:
    """Whether an C{<IfModule>} or C{<IfDefine>} keeps its lines."""
    wanted = args[0]
    negated = wanted.startswith("!")
    bare = wanted[1:] if negated else wanted
    if name == "ifmodule":
        return reading.modules(bare) != negated
    return (bare in reading.variables) != negated


def _parse(
    text: str,
    file: str,
    reading: _Reading,
    chain: tuple[str, ...],
) -> list[Directive]:
    top: list[Directive] = []
    stack: list[_Open] = []

    def add(directive: Directive) -> None:
        (stack[-1].children if stack else top).append(directive)

    for number, line in _lines(text):
        line = _substitute(line, reading.variables)
        if line.startswith("</"):
            if not line.endswith(">"):
                raise ApacheSyntaxError(file, number, f"{line!r} lacks its '>'")
            name = line[2:-1].strip()
            if not stack:
                raise ApacheSyntaxError(
                    file, number, f"</{name}> without matching <{name}> section"
                )
            opened = stack.pop()
            if opened.name.lower() != name.lower():
                raise ApacheSyntaxError(
                    file,
                    number,
                    f"</{name}> closes <{opened.name}> (line {opened.line})",
                )
            section = Section(
                opened.name,
                opened.args,
                opened.file,
                opened.line,
                tuple(opened.children),
            )
            if opened.conditional:
                if opened.keep:
                    for child in opened.children:
                        add(child)
                elif not stack or stack[-1].keep:
                    # Skipped whole: kept empty, for a word about it.
                    add(Section(opened.name, opened.args, file, opened.line))
            else:
                add(section)
            continue
        if line.startswith("<"):
            if not line.endswith(">"):
                raise ApacheSyntaxError(file, number, f"{line!r} lacks its '>'")
            name, rest = _split(line[1:-1].strip())
            if not name:
                raise ApacheSyntaxError(file, number, "a section without a name")
            args = words(rest, file, number)
            # Lines under an <IfModule> that does not hold are skipped
            # whole, sections and includes among them.
            keep = not stack or stack[-1].keep
            conditional = name.lower() in ("ifmodule", "ifdefine")
            if conditional:
                if len(args) != 1:
                    raise ApacheSyntaxError(file, number, f"<{name}> takes one name")
                keep = keep and _holds(name.lower(), args, reading)
            stack.append(
                _Open(name, args, file, number, keep=keep, conditional=conditional)
            )
            continue
        if stack and not stack[-1].keep:
            continue
        name, rest = _split(line)
        args = words(rest, file, number)
        if name.lower() in ("include", "includeoptional"):
            for directive in _include(name, args, file, number, reading, chain):
                add(directive)
            continue
        if name.lower() == "define" and args:
            reading.variables[args[0]] = args[1] if len(args) > 1 else ""
        elif name.lower() == "undefine" and args:
            reading.variables.pop(args[0], None)
        add(Directive(name, args, file, number))
    if stack:
        opened = stack[-1]
        raise ApacheSyntaxError(
            opened.file, opened.line, f"<{opened.name}> is never closed"
        )
    return top


def _include(
    name: str,
    args: tuple[str, ...],
    file: str,
    number: int,
    reading: _Reading,
    chain: tuple[str, ...],
) -> list[Directive]:
    """The directives of the files an C{Include} names, in name order."""
    if len(args) != 1:
        raise ApacheSyntaxError(file, number, f"{name} takes one path or glob")
    files = reading.files
    if files is None:
        raise ApacheSyntaxError(file, number, f"{name}: no files can be read here")
    if len(chain) > _MAX_INCLUDE_DEPTH:
        raise ApacheSyntaxError(file, number, f"{name}: includes nested too deep")
    pattern = args[0]
    if not posixpath.isabs(pattern):
        pattern = posixpath.join(reading.root, pattern)
    optional = name.lower() == "includeoptional"
    if any(char in pattern for char in "*?["):
        paths = sorted(files.glob(pattern))
        if not paths and not optional:
            raise ApacheSyntaxError(file, number, f"{name}: no file matches {pattern}")
    else:
        paths = [pattern]
    found: list[Directive] = []
    for path in paths:
        if path in chain:
            raise ApacheSyntaxError(file, number, f"{name}: {path} includes itself")
        try:
            text = files.read(path)
        except OSError as e:
            if optional:
                continue
            why = e.strerror or str(e)
            raise ApacheSyntaxError(file, number, f"{name}: {path}: {why}") from None
        found.extend(_parse(text, path, reading, (*chain, path)))
    return found
