"""
C{[proxy] state_file}: the balancer-manager's run-time changes, kept across
restarts.

After each run-time change (the manager's forms, its JSON API, or an
embedder's L{BalancerService.setFlags}/C{addMember}/C{removeMember}) and
after each reload, the difference between the running balancers and the
configuration file is written out whole, as JSON, to a new file renamed over
the old one (so a crash leaves the old state or the new, never half). At
start it is read back and made again through the same checked changes the
API makes, each logged. A change comes back only if the configuration file
still says about that member what it said when the change was made; where
the file changed the member since, the file's word wins and the log says so.

The document::

    {"format": "twisted-proxy-state/1",
     "balancers": {NAME: {
        "changed": {MEMBER: {"file": {...every member key...},
                             "now": {...the keys the manager edits...}}},
        "added": {MEMBER: {"url": ..., ...the keys the manager edits...}},
        "removed": {MEMBER: {...every member key, as the file had it...}}}}}

MEMBER is the member's name (C{scheme://host:port}), as the manager shows it.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import partial
from typing import Any

from twisted.logger import Logger

from twisted_proxy.admin.changes import EDITABLE, ChangeError, addMember, change, remove
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import MemberState

__all__ = ["FORMAT", "StateFile", "StateFileError", "readState", "runtimeState"]

FORMAT = "twisted-proxy-state/1"

_SECTIONS = ("changed", "added", "removed")

# Far more than any state file holds (a few hundred bytes per member).
_MAX_BYTES = 16 * 1024 * 1024

_log = Logger(namespace="twisted_proxy.admin")


class StateFileError(Exception):
    """A state file that cannot be read or is not one; the message says why."""


def _editable(state: MemberState) -> dict[str, Any]:
    """What the manager may change on C{state}, in the configuration's words."""
    values = asdict(state.current())
    editable = {key: values[key] for key in EDITABLE}
    editable["route"] = editable["route"] or ""
    return editable


def runtimeState(service: BalancerService) -> dict[str, Any]:
    """How C{service}'s balancers differ from the configuration file now."""
    balancers: dict[str, Any] = {}
    for name in service.balancerNames():
        configured = {m.name: m for m in service.config(name).members}
        running = {s.name: s for s in service.members(name)}
        changed: dict[str, Any] = {}
        added: dict[str, Any] = {}
        for member, state in running.items():
            fileMember = configured.get(member)
            if fileMember is None:
                added[member] = {"url": state.member.url, **_editable(state)}
            elif state.current() != fileMember:
                changed[member] = {"file": asdict(fileMember), "now": _editable(state)}
        removed = {
            member: asdict(fileMember)
            for member, fileMember in configured.items()
            if member not in running
        }
        if changed or added or removed:
            balancers[name] = {"changed": changed, "added": added, "removed": removed}
    return {"format": FORMAT, "balancers": balancers}


def readState(path: str) -> dict[str, Any] | None:
    """
    The state document at C{path}, or None when there is no such file.

    :raise StateFileError: for a file that cannot be read or is no state
        document.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise StateFileError(f"{path} is not a regular file")
        if os.path.getsize(path) > _MAX_BYTES:
            raise StateFileError(
                f"{path} is larger than {_MAX_BYTES // (1024 * 1024)} MiB;"
                " no state file this proxy writes is"
            )
        with open(path, encoding="utf-8") as f:
            text = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise StateFileError(f"cannot read {path}: {_reason(e)}") from None
    try:
        document = json.loads(text)
    except ValueError as e:
        raise StateFileError(f"{path} is not JSON: {e}") from None
    except RecursionError:
        raise StateFileError(
            f"{path} is not JSON this proxy reads: nested too deeply"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateFileError(f'{path} is not a state file (no "format": "{FORMAT}")')
    balancers = document.get("balancers")
    if not isinstance(balancers, dict) or not all(
        isinstance(b, dict)
        and all(isinstance(b.get(s, {}), dict) for s in _SECTIONS)
        and all(isinstance(v, dict) for s in _SECTIONS for v in b.get(s, {}).values())
        for b in balancers.values()
    ):
        raise StateFileError(f"{path}: balancers: not the shape this version writes")
    return document


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _restore(service: BalancerService, document: Mapping[str, Any], who: str) -> None:
    """Make the changes C{document} records again, each checked and logged."""
    for balancer, sections in document["balancers"].items():
        if balancer not in service.balancerNames():
            _log.warn(
                "{who}: balancer://{balancer} is no longer in the configuration;"
                " its run-time changes are dropped",
                who=who,
                balancer=balancer,
            )
            continue
        configured = {m.name: asdict(m) for m in service.config(balancer).members}
        running = {s.name for s in service.members(balancer)}

        def dropped(member: str, why: str, balancer: str = balancer) -> None:
            _log.warn(
                "{who}: balancer://{balancer} member {member}: {why}; the"
                " configuration file's word is kept",
                who=who,
                balancer=balancer,
                member=member,
                why=why,
            )

        def attempt(member: str, make: Callable[[], object]) -> None:
            try:
                make()
            except ChangeError as e:
                dropped(member, e.message)

        for member, record in sections.get("changed", {}).items():
            now = record.get("now")
            if configured.get(member) != record.get("file"):
                dropped(member, "changed in the configuration file since")
            elif not isinstance(now, dict):
                dropped(member, 'its "now" is not a table of settings')
            else:
                attempt(member, partial(change, service, balancer, member, now, who))
        for member, values in sections.get("added", {}).items():
            if member in running:
                dropped(member, "now in the configuration file")
            else:
                attempt(member, partial(addMember, service, balancer, values, who))
        for member, record in sections.get("removed", {}).items():
            if configured.get(member) != record:
                dropped(member, "changed in the configuration file since its removal")
            else:
                attempt(member, partial(remove, service, balancer, member, who))


class StateFile:
    """
    The state file of one proxy: L{restore} at start, then written after
    every run-time change and every reload (L{save}).
    """

    def __init__(self, path: str, service: BalancerService) -> None:
        self.path = path
        self._service = service
        self._restoring = False
        self._failing = False
        service.observeChanges(self.save)

    def restore(self) -> None:
        """
        Read the file and make its changes again (nothing when there is
        none yet).

        :raise StateFileError: for a file that cannot be read.
        """
        document = readState(self.path)
        if document is None:
            return
        self._restoring = True
        try:
            _restore(self._service, document, f"state file {self.path}")
        finally:
            self._restoring = False
        self.save()

    def save(self) -> None:
        """Write the running state out (whole; a failure is logged)."""
        if self._restoring:
            return
        text = json.dumps(runtimeState(self._service), indent=1, sort_keys=True)
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, temporary = tempfile.mkstemp(prefix=".state-", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as e:
            if not self._failing:
                _log.error(
                    "state file {path}: cannot write it: {why}; run-time changes"
                    " will not survive a restart until it can be written",
                    path=self.path,
                    why=_reason(e),
                )
            self._failing = True
            return
        if self._failing:
            _log.info("state file {path}: written again", path=self.path)
        self._failing = False
