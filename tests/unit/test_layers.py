"""
The layers the tree shows, enforced: config <- core <- {tls, upstream,
balancer} <- frontends <- service; core is pure; a front end never imports
another; no import cycles; no private name imported across modules; each
name imported from the module that defines it.

Every import of every module under twisted_proxy/ is read with ast, those in
functions and under C{if TYPE_CHECKING:} included; a failure lists each
import that breaks the rule. Each check is shown to catch an import planted
to break its rule (L{test_aBadImportIsCaught}).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

_T = TypeVar("_T")

_PACKAGE = Path(__file__).resolve().parents[2] / "twisted_proxy"

# -- the rules ----------------------------------------------------------------

# What each layer may import of twisted_proxy (besides the standard library and
# third parties). "internals" is _twisted_internals.py, the designated module
# that reaches into Twisted's private parts; "top" is the package face,
# service, listening, tap, cli, preflight, signals, demo and __main__, which
# may import anything.
_MAY_IMPORT: dict[str, frozenset[str]] = {
    "config": frozenset({"config"}),
    "core": frozenset({"config", "core"}),
    "internals": frozenset(),
    "tls": frozenset({"config", "core", "internals", "tls"}),
    "upstream": frozenset({"config", "core", "internals", "tls", "upstream"}),
    "balancer": frozenset(
        {"config", "core", "internals", "tls", "upstream", "balancer"}
    ),
    "frontends": frozenset(
        {"config", "core", "internals", "tls", "upstream", "balancer", "frontends"}
    ),
    # Log I/O, wired by the service: of the front ends, only the shared modules.
    "accesslog": frozenset({"config", "core", "internals", "accesslog", "frontends"}),
    # Apache's configuration read and turned into ours: the config model.
    "apache": frozenset({"config", "core", "apache"}),
    # The admin pages: the balancer and the config model, never a front end.
    "admin": frozenset({"config", "core", "balancer", "admin"}),
    # Worker processes: the pieces the service runs them with (the processes
    # themselves, which run a ProxyService, are top: _TOP_MODULES).
    "workers": frozenset(
        {"config", "core", "internals", "balancer", "frontends", "workers"}
    ),
}

# The front-end modules every front end (and the access log) may share: the
# request's facts and the proxy's error pages (request, clientinfo), what the
# service hands every proxying front end (context: pool, balancer, settings,
# route plans, the upgrade handler), the listener registry for drain and
# abort (listener), the two-transport pipe (pipe), and the relay of two
# connections that CONNECT tunnels and tcp listeners share (tunnel).
_SHARED_FRONTENDS = frozenset(
    {
        "twisted_proxy.frontends",
        "twisted_proxy.frontends.clientinfo",
        "twisted_proxy.frontends.context",
        "twisted_proxy.frontends.listener",
        "twisted_proxy.frontends.pipe",
        "twisted_proxy.frontends.request",
        "twisted_proxy.frontends.tunnel",
    }
)

# Each front end and the modules it is made of: a module imports its own front
# end's modules and the shared ones. A new module under frontends/ is added
# here, to the front end it belongs to (or as a front end of its own).
_FRONTENDS: dict[str, frozenset[str]] = {
    "http1": frozenset({"http1", "http1output", "http1request"}),
    "http2": frozenset({"http2", "http2request"}),
    # The router is the relay's site root: a ReverseProxyResource per route.
    # An ajp:// backend's request packet (ajprequest).
    "httprelay": frozenset({"httprelay", "router", "exchange", "bodies", "ajprequest"}),
    "websocket": frozenset({"websocket", "wslegs", "wsrelay"}),
    "redirect": frozenset({"redirect"}),
    # CONNECT: the request judged and connected (connect), then the tunnel.
    "connect": frozenset({"connect", "proxyauth"}),
    # tcp listeners: each connection relayed to a tcp:// member.
    "stream": frozenset({"stream"}),
    # The routes the proxy answers itself (the admin pages' handlers).
    "local": frozenset({"local"}),
    # A TLS listener's first bytes: TLS goes on, plain HTTP gets a 400.
    "tlssniff": frozenset({"tlssniff"}),
}

# What core may not import at all: core is pure (no reactor, no Deferreds, no
# protocols, no sockets, no TLS, nothing of Twisted).
_IMPURE_ROOTS = frozenset(
    {
        "twisted",
        "zope",
        "OpenSSL",
        "socket",
        "ssl",
        "select",
        "selectors",
        "asyncio",
        "threading",
        "subprocess",
    }
)

# -- reading the imports --------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One name one module imports: C{module}, and C{name} from it (or None)."""

    module: str
    name: str | None
    line: int


def moduleNames(package: Path) -> dict[str, Path]:
    """Every module under C{package}, by dotted name (a package by its own)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


@functools.cache
def importsIn(module: str, source: str, isPackage: bool) -> list[Import]:
    """Every import in C{source}, anywhere in it, relative ones made absolute."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, None, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".")
                if not isPackage:
                    here.pop()
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            found.extend(Import(base, a.name, node.lineno) for a in node.names)
    return found


@dataclass(frozen=True)
class Edge:
    """C{importer} imports module C{target}, or C{name} from it."""

    importer: str
    target: str
    name: str | None
    line: int


def edges(sources: Mapping[str, tuple[str, bool]]) -> list[Edge]:
    """
    The imports of C{sources} (module -> (source, is a package)): each
    C{from package import module} as an import of that module.
    """
    result = []
    for module, (source, isPackage) in sources.items():
        for imp in importsIn(module, source, isPackage):
            sub = f"{imp.module}.{imp.name}"
            if imp.name is not None and sub in sources:
                result.append(Edge(module, sub, None, imp.line))
            else:
                result.append(Edge(module, imp.module, imp.name, imp.line))
    return result


# Modules inside a layer's package that are programs of their own: the owner
# and follower processes of [proxy] workers, which build a ProxyService.
_TOP_MODULES = frozenset(
    {"twisted_proxy.workers.owner", "twisted_proxy.workers.follower"}
)


def layerOf(module: str) -> str:
    """The layer of a twisted_proxy module."""
    parts = module.split(".")
    if len(parts) == 1 or module in _TOP_MODULES:
        return "top"
    if parts[1] == "_twisted_internals":
        return "internals"
    return parts[1] if parts[1] in _MAY_IMPORT else "top"


def _ours(edge: Edge, sources: Mapping[str, object]) -> bool:
    return edge.target in sources


def layerBreaches(
    sources: Mapping[str, tuple[str, bool]],
) -> set[tuple[str, str]]:
    """Imports a layer may not make, and front ends importing non-shared ones."""
    breaches = set()
    for edge in edges(sources):
        if not _ours(edge, sources):
            continue
        mine, theirs = layerOf(edge.importer), layerOf(edge.target)
        if mine == "top":
            continue
        if theirs not in _MAY_IMPORT[mine] or (
            mine == "accesslog"
            and theirs == "frontends"
            and edge.target not in _SHARED_FRONTENDS
        ):
            breaches.add((edge.importer, edge.target))
    return breaches


def frontEndOf(module: str) -> str | None:
    """The front end a module under frontends/ is part of ("shared", or None)."""
    if module in _SHARED_FRONTENDS:
        return "shared"
    name = module.rsplit(".", 1)[-1]
    for frontEnd, names in _FRONTENDS.items():
        if name in names:
            return frontEnd
    return None


def frontendImports(sources: Mapping[str, tuple[str, bool]]) -> set[tuple[str, str]]:
    """Imports between modules of two front ends (the shared ones aside)."""
    return {
        (edge.importer, edge.target)
        for edge in edges(sources)
        if layerOf(edge.importer) == "frontends"
        and layerOf(edge.target) == "frontends"
        and _ours(edge, sources)
        and edge.target not in _SHARED_FRONTENDS
        and frontEndOf(edge.importer) != frontEndOf(edge.target)
    }


def impureCoreImports(
    sources: Mapping[str, tuple[str, bool]],
) -> set[tuple[str, str]]:
    """What core imports of Twisted, sockets, TLS, threads or processes."""
    return {
        (edge.importer, edge.target)
        for edge in edges(sources)
        if layerOf(edge.importer) == "core"
        and edge.target.split(".")[0] in _IMPURE_ROOTS
    }


def cycles(sources: Mapping[str, tuple[str, bool]]) -> set[tuple[str, ...]]:
    """The import cycles among C{sources}: strongly connected components."""
    graph: dict[str, set[str]] = {module: set() for module in sources}
    for edge in edges(sources):
        if _ours(edge, sources) and edge.target != edge.importer:
            graph[edge.importer].add(edge.target)
    return {tuple(sorted(c)) for c in _components(graph) if len(c) > 1}


def _components(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        onStack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    onStack.add(child)
                    work.append((child, iter(graph[child])))
                    break
                if child in onStack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        onStack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def privateImports(sources: Mapping[str, tuple[str, bool]]) -> set[tuple[str, str]]:
    """C{from twisted_proxy.X import _name} across modules (dunders are public)."""
    return {
        (edge.importer, f"{edge.target}:{edge.name}")
        for edge in edges(sources)
        if edge.name is not None
        and edge.target.split(".")[0] == "twisted_proxy"
        and edge.name.startswith("_")
        and not (edge.name.startswith("__") and edge.name.endswith("__"))
        and edge.target != edge.importer
    }


@functools.cache
def definedIn(source: str) -> frozenset[str]:
    """The names a module binds itself at its top level (imports aside)."""
    names: set[str] = set()
    body = list(ast.parse(source).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If | ast.Try):
            body.extend(
                n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)
            )
    return frozenset(names)


def secondHandImports(
    sources: Mapping[str, tuple[str, bool]],
) -> set[tuple[str, str]]:
    """
    C{from twisted_proxy.X import name} where X only imports C{name} itself:
    a module takes each name from the module that defines it; only a package
    face (an C{__init__}) gathers names for users.
    """
    return {
        (edge.importer, f"{edge.target}:{edge.name}")
        for edge in edges(sources)
        if edge.name is not None
        and edge.name != "*"
        and _ours(edge, sources)
        and not sources[edge.importer][1]
        and edge.name not in definedIn(sources[edge.target][0])
    }


def _readTree() -> dict[str, tuple[str, bool]]:
    return {
        module: (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for module, path in moduleNames(_PACKAGE).items()
    }


_TREE = _readTree()

# -- the tree keeps the rules ---------------------------------------------------


def _none(found: set[_T], what: str) -> None:
    assert not found, f"{what}:\n" + "\n".join(sorted(map(str, found)))


def test_layers() -> None:
    """Each layer imports only the layers below it (and itself)."""
    _none(layerBreaches(_TREE), "layer breach")


def test_frontEndsImportOnlySharedFrontEndModules() -> None:
    """A front end imports no other front end: only request, pipe and listener."""
    _none(frontendImports(_TREE), "front-end import")


def test_everyFrontEndModuleIsPlaced() -> None:
    """Each module under frontends/ is shared or part of a listed front end."""
    unplaced = sorted(
        module
        for module in _TREE
        if layerOf(module) == "frontends" and frontEndOf(module) is None
    )
    assert not unplaced, f"add to _FRONTENDS under their front end: {unplaced}"


def test_coreIsPure() -> None:
    """core imports nothing of Twisted, sockets, TLS, threads or processes."""
    _none(impureCoreImports(_TREE), "impure core import")


def test_noImportCycles() -> None:
    """No module imports one that (through others) imports it back."""
    _none(cycles(_TREE), "import cycle")


def test_noPrivateNamesAcrossModules() -> None:
    """No module imports another's _private name."""
    _none(privateImports(_TREE), "private import")


def test_namesComeFromWhereTheyAreDefined() -> None:
    """No module imports a name from a module that only re-exports it."""
    found = secondHandImports(_TREE)
    assert not found, "import these from where they are defined:\n" + "\n".join(
        map(str, sorted(found))
    )


def test_theTreeIsRead() -> None:
    """The modules are found and their imports read, function-level ones too."""
    assert "twisted_proxy.core.http11" in _TREE
    found = {(e.importer, e.target) for e in edges(_TREE)}
    assert ("twisted_proxy.core.http11", "twisted_proxy.core.chunked") in found


# -- each check catches what it is for ----------------------------------------


def _planted(module: str, source: str) -> dict[str, tuple[str, bool]]:
    """The tree with C{source} added at the end of C{module}."""
    tree = dict(_TREE)
    text, isPackage = tree.get(module, ("", False))
    tree[module] = (text + "\n" + source, isPackage)
    return tree


@pytest.mark.parametrize(
    ("module", "source", "check", "breach"),
    [
        (
            "twisted_proxy.config.model",
            "def f():\n    from twisted_proxy.core import http11\n",
            layerBreaches,
            ("twisted_proxy.config.model", "twisted_proxy.core.http11"),
        ),
        (
            "twisted_proxy.core.headers",
            "from twisted_proxy import __version__\n",
            layerBreaches,
            ("twisted_proxy.core.headers", "twisted_proxy"),
        ),
        (
            "twisted_proxy.upstream.trace",
            "from ..balancer import state\n",
            layerBreaches,
            ("twisted_proxy.upstream.trace", "twisted_proxy.balancer.state"),
        ),
        (
            "twisted_proxy.balancer.state",
            "import twisted_proxy.frontends.request\n",
            layerBreaches,
            ("twisted_proxy.balancer.state", "twisted_proxy.frontends.request"),
        ),
        (
            "twisted_proxy.frontends.redirect",
            "from twisted_proxy.frontends.http1 import HTTPProxyFactory\n",
            frontendImports,
            ("twisted_proxy.frontends.redirect", "twisted_proxy.frontends.http1"),
        ),
        (
            "twisted_proxy.frontends.request",
            "from twisted_proxy.frontends import httprelay\n",
            frontendImports,
            ("twisted_proxy.frontends.request", "twisted_proxy.frontends.httprelay"),
        ),
        (
            "twisted_proxy.core.routing",
            "def f():\n    from twisted.internet import reactor\n",
            impureCoreImports,
            ("twisted_proxy.core.routing", "twisted.internet"),
        ),
        (
            "twisted_proxy.core.version",
            "import socket\n",
            impureCoreImports,
            ("twisted_proxy.core.version", "socket"),
        ),
        (
            "twisted_proxy.core.chunked",
            "from twisted_proxy.core import http11\n",
            cycles,
            (
                "twisted_proxy.core.chunked",
                "twisted_proxy.core.http11",
            ),
        ),
        (
            "twisted_proxy.frontends.router",
            "from twisted_proxy.core.http11 import _TCHAR\n",
            privateImports,
            ("twisted_proxy.frontends.router", "twisted_proxy.core.http11:_TCHAR"),
        ),
        (
            "twisted_proxy.frontends.router",
            "from twisted_proxy.frontends.httprelay import ProxyRouteError\n",
            secondHandImports,
            (
                "twisted_proxy.frontends.router",
                "twisted_proxy.frontends.httprelay:ProxyRouteError",
            ),
        ),
        (
            "twisted_proxy.service",
            "from twisted_proxy.balancer import BalancerService\n",
            secondHandImports,
            ("twisted_proxy.service", "twisted_proxy.balancer:BalancerService"),
        ),
    ],
)
def test_aBadImportIsCaught(
    module: str, source: str, check: object, breach: tuple[str, ...]
) -> None:
    """Each check finds an import planted to break its rule."""
    assert callable(check)
    assert breach not in check(_TREE)
    assert breach in check(_planted(module, source))
