"""
The C{twisted-proxy} command: check a configuration, show its routes, run it,
import an Apache one.

C{check FILE} works like C{nginx -t}: every check start-up makes, short of
binding ports; C{routes FILE} prints the route table in the order matching
considers it; C{run FILE} (or C{run --config FILE}) is C{twistd -n proxy
--config FILE} without the twistd incantation. C{python -m twisted_proxy} is
the same command.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from twisted_proxy import __version__
from twisted_proxy.apache.importer import configFromText, importFile
from twisted_proxy.config.loader import ConfigError, readConfig
from twisted_proxy.config.model import Config
from twisted_proxy.core.describe import routeTable
from twisted_proxy.preflight import startupProblems
from twisted_proxy.tap import LOG_LEVELS, loadForStart

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """
    Run the C{twisted-proxy} command line with C{argv} (default: C{sys.argv}).

    @return: the process exit code.
    """
    parser = _parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    if options.command == "check":
        return _check(options.file, sys.stdout, sys.stderr)
    if options.command == "routes":
        return _routes(options.file, sys.stdout, sys.stderr)
    if options.command == "import":
        return _import(options, sys.stdout, sys.stderr)
    path = options.file or options.config
    if path is None or (options.file and options.config):
        why = "the configuration FILE is required (run FILE, or run --config FILE)"
        if path is not None:
            why = "give the configuration file once: FILE or --config FILE"
        print(
            f"usage: twisted-proxy run [FILE | --config FILE]\nerror: {why}",
            file=sys.stderr,
        )
        return 2
    return _run(path, options.log_level, sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twisted-proxy",
        description="A reverse proxy and load balancer on Twisted.",
    )
    parser.add_argument(
        "--version", action="version", version=f"twisted-proxy {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate a configuration file and report every error",
        description="Validate FILE; print 'FILE: ok' or every error, one per line.",
    )
    check.add_argument("file", metavar="FILE")
    routes = commands.add_parser(
        "routes",
        help="print the effective route table",
        description="Print FILE's routes in the order matching considers them.",
    )
    routes.add_argument("file", metavar="FILE")
    imported = commands.add_parser(
        "import",
        help="print an Apache configuration as twisted-proxy's TOML",
        description="Read the Apache file FILE (and what it includes) and print"
        " the equivalent TOML, a comment naming the Apache line of each table;"
        " notices and errors go to standard error, each naming file and line.",
    )
    imported.add_argument("file", metavar="FILE")
    imported.add_argument(
        "--listen",
        metavar="ENDPOINT",
        help="where to listen when FILE has no Listen or VirtualHost"
        " (default: tcp:80, as Apache)",
    )
    imported.add_argument(
        "--server-root",
        metavar="DIR",
        help="relative Include paths start here (default: FILE's folder)",
    )
    run = commands.add_parser(
        "run",
        help="run the proxy in the foreground",
        description="Run the proxy in the foreground, as 'twistd -n proxy' does.",
    )
    run.add_argument("file", nargs="?", metavar="FILE")
    run.add_argument("--config", metavar="FILE", help="the same as FILE")
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="override [proxy] log_level; debug logs every upstream exchange"
        " and shows tracebacks of start-up failures",
    )
    return parser


def _load(path: str, err: TextIO) -> Config | None:
    """
    Load C{path} (TOML, or an Apache file through the importer), printing
    the importer's notices, and every error when it is invalid, to C{err}.
    """
    try:
        config, notices = configFromText(readConfig(path), path)
    except ConfigError as e:
        for error in e.errors:
            print(error, file=err)
        return None
    for notice in notices:
        print(f"notice: {notice}", file=err)
    return config


def _check(path: str, out: TextIO, err: TextIO) -> int:
    config = _load(path, err)
    if config is None:
        return 1
    problems = startupProblems(config)
    errors, warnings = problems.errors, problems.warnings
    for problem in errors:
        print(f"{path}: {problem}", file=err)
    for problem in warnings:
        print(f"{path}: warning: {problem}", file=err)
    if errors:
        return 1
    n = len(warnings)
    note = f" ({n} warning{'s' if n > 1 else ''})" if n else ""
    print(f"{path}: ok{note}", file=out)
    return 0


def _routes(path: str, out: TextIO, err: TextIO) -> int:
    config = _load(path, err)
    if config is None:
        return 1
    print(routeTable(config), file=out)
    return 0


def _import(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    result = importFile(options.file, options.listen, options.server_root)
    for notice in result.notices:
        print(f"notice: {notice}", file=err)
    for error in result.errors:
        print(error, file=err)
    if result.text is None:
        return 1
    out.write(result.text)
    return 0


def _run(path: str, logLevel: str | None, err: TextIO) -> int:
    """
    Check C{path} as C{check} does, then hand over to C{twistd -n proxy
    --config path}; every start-up failure is its message and exit status 1.
    """
    from twisted.scripts import twistd

    try:
        # twistd loads the file again and says the importer's notices then.
        loadForStart(path, notices=False)
    except ConfigError as e:
        for error in e.errors:
            print(error, file=err)
        return 1
    saved = sys.argv
    sys.argv = ["twistd", "-n", "--pidfile=", "proxy", "--config", path]
    if logLevel is not None:
        sys.argv += ["--log-level", logLevel]
    try:
        twistd.run()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=err)
            return 1
        return 0 if e.code is None else e.code
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
