"""
Coverage-guided fuzzing of the parsers and the config loader with atheris
(libFuzzer for Python)::

    python -m tests.fuzz.atheris_targets TARGET [LIBFUZZER_OPTION...] [CORPUS_DIR...]

TARGET is one of C{request}, C{chunked}, C{response} or C{config}. Every input
goes through the same check as the hypothesis tests (L{tests.fuzz.checks}); an
exception the target must not raise, or a broken property, is a crash:
libFuzzer writes the input to C{crash-*} and exits non-zero.

Response inputs are the request methods, comma separated, then a newline, then
the backend's bytes. Chunked and response inputs are also fed cut at points
derived from the input itself, so a crash file replays the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

# Coverage is collected from what is imported inside this block only.
with atheris.instrument_imports(include=["twisted_proxy", "tomllib", "tomli"]):
    from tests.fuzz import checks, corpus


def request(data: bytes) -> None:
    """A request head."""
    checks.checkRequestHead(data)


def chunked(data: bytes) -> None:
    """A chunked body, and whatever follows it."""
    checks.checkChunked(data, checks.cutPoints(data))


def response(data: bytes) -> None:
    """Backend responses to the methods on the input's first line."""
    methods, rest = corpus.decodeResponse(data)
    checks.checkResponse(methods, rest, checks.cutPoints(rest))


def config(data: bytes) -> None:
    """A config file (read as UTF-8 as far as it is)."""
    checks.checkConfig(data.decode("utf-8", "replace"))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "request": request,
    "chunked": chunked,
    "response": response,
    "config": config,
}


def main(argv: list[str]) -> None:
    """Fuzz the target named by C{argv[1]}; the rest of C{argv} is libFuzzer's."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.stderr.write(
            f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]\n"
        )
        raise SystemExit(2)
    atheris.Setup([argv[0], *argv[2:]], TARGETS[argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
