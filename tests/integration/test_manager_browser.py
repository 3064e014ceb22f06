"""
The balancer-manager's page in a real browser: headless Chromium, driven by
selenium, in front of a real proxy with two real backends. It loads the page,
drains a member with the page's own form and watches the counters move; a
form posted from another site, and one replaying a used nonce, are refused.

Selenium blocks, and the proxy runs on the reactor of this same process, so
every browser step runs in a thread (deferToThread) while the reactor serves.
What the browser loaded, with each answer's status, is read from Chromium's
own network log.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from html import escape
from typing import Any

import pytest
import pytest_twisted
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from tests.integration.support import RecordingBackend, Stack

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# The balancer serves /app/ only, so nothing the browser asks for on its own
# (such as /favicon.ico) reaches a member and moves its counters.
CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
[[route]]
path = "/app/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
[[balancer.web.member]]
url = "http://127.0.0.1:{one}"
route = "one"
[[balancer.web.member]]
url = "http://127.0.0.1:{two}"
route = "two"
"""

Load = tuple[str, str, int]
"""One document the browser asked for: method, URL and the status it got."""


def _options(profile: str) -> webdriver.ChromeOptions:
    """Headless Chromium that talks to nothing but the loopback addresses."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-proxy-server",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return options


class Browser:
    """One headless Chromium; each step blocks, so it runs in a thread."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def open(self, url: str, landsOn: str | None = None) -> list[Load]:
        """
        Go to C{url} as a user typing it would, and wait until the browser
        shows C{landsOn} (C{url} itself by default); the documents it loaded.
        """
        return await deferToThread(
            self._navigating, lambda: self.driver.get(url), landsOn or url
        )

    async def reload(self) -> list[Load]:
        """Reload the page, as the reload button does."""
        return await deferToThread(self._navigating, self.driver.refresh, None)

    async def submitMember(self, route: str, tick: Sequence[str] = ()) -> list[Load]:
        """
        In the row of the member whose route is C{route}, tick the boxes
        labelled C{tick} and click Set; the documents that loaded.
        """

        def submit() -> None:
            row = self.driver.find_element(
                By.XPATH, f"//tbody/tr[td[normalize-space()='{route}']]"
            )
            for label in tick:
                box = row.find_element(
                    By.XPATH, f".//label[normalize-space()='{label}']/input"
                )
                if not box.is_selected():
                    box.click()
            row.find_element(By.XPATH, ".//button[normalize-space()='Set']").click()

        return await deferToThread(self._navigating, submit, None)

    async def members(self) -> dict[str, dict[str, str]]:
        """The page's member table as shown: by route, each cell by its heading."""
        rows: list[dict[str, str]] = await deferToThread(
            self.driver.execute_script,
            "const heads = [...document.querySelectorAll('thead th')]"
            "  .map(th => th.innerText.trim());"
            "return [...document.querySelectorAll('tbody tr')].map(tr =>"
            "  Object.fromEntries([...tr.cells].map("
            "    (td, i) => [heads[i], td.innerText.trim()])));",
        )
        return {row["Route"]: row for row in rows}

    async def ticked(self, route: str) -> list[str]:
        """The boxes ticked in the form of the member whose route is C{route}."""

        def read() -> list[str]:
            labels = self.driver.find_elements(
                By.XPATH,
                f"//tbody/tr[td[normalize-space()='{route}']]"
                "//label[input[@type='checkbox']]",
            )
            return [
                label.text.strip()
                for label in labels
                if label.find_element(By.TAG_NAME, "input").is_selected()
            ]

        return await deferToThread(read)

    async def nonces(self) -> set[str]:
        """The nonces the page's forms carry."""

        def read() -> set[str]:
            fields = self.driver.find_elements(By.NAME, "nonce")
            return {str(field.get_attribute("value")) for field in fields}

        return await deferToThread(read)

    async def text(self) -> str:
        """The text the browser shows."""
        return str(
            await deferToThread(
                self.driver.execute_script, "return document.body.innerText.trim();"
            )
        )

    def _navigating(
        self, action: Callable[[], object], landsOn: str | None
    ) -> list[Load]:
        """Do C{action}, wait for the page it leads to; the documents loaded."""
        self._loads()
        before = self.driver.execute_script("return performance.timeOrigin;")

        def arrived(driver: Any) -> bool:
            # Each document has its own time origin.
            origin, state, url = driver.execute_script(
                "return [performance.timeOrigin, document.readyState, location.href];"
            )
            return bool(
                origin != before
                and state == "complete"
                and (landsOn is None or url == landsOn)
            )

        action()
        # Between two documents, chromedriver may answer with an error.
        WebDriverWait(
            self.driver,
            10,
            poll_frequency=0.02,
            ignored_exceptions=[WebDriverException],
        ).until(arrived)
        return self._loads()

    def _loads(self) -> list[Load]:
        """The documents loaded since the last call, redirects included."""
        loads: list[Load] = []
        asked: dict[str, tuple[str, str]] = {}
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            event, params = message["method"], message["params"]
            # Chromium's own pages (its new tab page) are none of these tests' business.
            url = params.get("request", params.get("response", {})).get("url", "")
            if params.get("type") != "Document" or not url.startswith("http"):
                continue
            if event == "Network.requestWillBeSent":
                identity = params["requestId"]
                if "redirectResponse" in params and identity in asked:
                    loads.append(
                        (*asked[identity], params["redirectResponse"]["status"])
                    )
                request = params["request"]
                asked[identity] = (request["method"], request["url"])
            elif event == "Network.responseReceived" and params["requestId"] in asked:
                loads.append(
                    (*asked.pop(params["requestId"]), params["response"]["status"])
                )
        return loads


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module, its profile removed at the end."""
    missing = [
        path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)
    ]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: these tests drive Debian's "
            "chromium with chromium-driver, which `make test` installs",
            pytrace=False,
        )
    profile = tempfile.mkdtemp(prefix="twisted-proxy-chromium-")
    try:
        driver = webdriver.Chrome(
            options=_options(profile), service=Service(executable_path=CHROMEDRIVER)
        )
        try:
            driver.set_page_load_timeout(10)
            yield Browser(driver)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Proxy:
    """A proxy with the manager at /balancer-manager, in front of "one" and "two"."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = stack.treq()
        self.one = RecordingBackend("one")
        self.two = RecordingBackend("two")

    async def start(self) -> Proxy:
        one = await self.stack.backend(self.one)
        two = await self.stack.backend(self.two)
        self.urls = {"one": f"http://127.0.0.1:{one}", "two": f"http://127.0.0.1:{two}"}
        service = await self.stack.proxy(CONFIG, one=one, two=two)
        port = service.ports[0].getHost().port  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{port}"
        self.manager = self.base + "/balancer-manager"
        return self

    async def traffic(self, count: int) -> list[bytes]:
        """Send C{count} requests through the balancer; the bodies answered."""
        bodies = []
        for n in range(count):
            response = await self.http.get(f"{self.base}/app/{n}")
            assert response.code == 200
            bodies.append(await response.content())
        return bodies

    def received(self) -> tuple[int, int]:
        """How many requests "one" and "two" have received."""
        return len(self.one.requests), len(self.two.requests)

    async def flags(self) -> dict[str, dict[str, bool]]:
        """Each member's drain and disabled flags, as the JSON API reports them."""
        response = await self.http.get(self.manager + "/api")
        assert response.code == 200
        [balancer] = json.loads(await response.content())["balancers"]
        return {
            m["id"]: {"drain": m["drain"], "disabled": m["disabled"]}
            for m in balancer["members"]
        }


class Prize(Resource):
    """Another site's page: a form that posts itself to the manager on load."""

    isLeaf = True

    def __init__(self, action: str, fields: dict[str, str]) -> None:
        super().__init__()
        inputs = "".join(
            f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
            for name, value in fields.items()
        )
        self.page = (
            '<!DOCTYPE html><html><body onload="document.forms[0].submit()">'
            f'<form method="post" action="{escape(action)}">{inputs}'
            "<button>Claim your prize</button></form></body></html>"
        ).encode()

    def render(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self.page


@pytest_twisted.ensureDeferred
async def test_thePageShowsBothMembersAndTheirCounters(
    stack: Stack, browser: Browser
) -> None:
    """
    The page lists both members with URL, route, status ok and their
    request counts; after traffic, a reload shows both counts grown.
    """
    proxy = await Proxy(stack).start()
    assert await browser.open(proxy.manager) == [("GET", proxy.manager, 200)]
    members = await browser.members()
    assert {
        route: (row["Member"], row["Status"], row["Requests"])
        for route, row in members.items()
    } == {
        "one": (proxy.urls["one"], "ok", "0"),
        "two": (proxy.urls["two"], "ok", "0"),
    }
    assert "balancer://web" in await browser.text()

    await proxy.traffic(4)
    assert await browser.reload() == [("GET", proxy.manager, 200)]
    members = await browser.members()
    assert proxy.received() == (2, 2)
    assert (members["one"]["Requests"], members["two"]["Requests"]) == ("2", "2")


@pytest_twisted.ensureDeferred
async def test_aDrainedMemberGetsNoNewRequests(stack: Stack, browser: Browser) -> None:
    """
    Ticking drain for "one" and clicking Set: a 303 back to the page, which
    shows "one" draining; new requests all go to "two", and only its
    counter moves.
    """
    proxy = await Proxy(stack).start()
    await proxy.traffic(2)
    await browser.open(proxy.manager)
    loads = await browser.submitMember("one", tick=["drain"])
    assert loads == [("POST", proxy.manager, 303), ("GET", proxy.manager, 200)]
    members = await browser.members()
    assert (members["one"]["Status"], members["two"]["Status"]) == ("drain", "ok")
    assert await browser.ticked("one") == ["drain"]
    assert (members["one"]["Requests"], members["two"]["Requests"]) == ("1", "1")

    bodies = await proxy.traffic(6)
    assert bodies == [b"two saw GET /%d" % n for n in range(6)]
    assert proxy.received() == (1, 7)
    await browser.reload()
    members = await browser.members()
    assert (members["one"]["Requests"], members["two"]["Requests"]) == ("1", "7")


@pytest_twisted.ensureDeferred
async def test_aFormPostedFromAnotherSiteIsRefused(
    stack: Stack, browser: Browser
) -> None:
    """
    Another site's page posts the drain form to the manager with a good
    nonce: 403, naming the Sec-Fetch-Site Chromium sent ("same-site" from
    127.0.0.1 at another port, "cross-site" from localhost), and nothing
    changes; the same nonce from a client that is not a browser is obeyed.
    """
    proxy = await Proxy(stack).start()
    await browser.open(proxy.manager)
    [nonce] = await browser.nonces()
    fields = {
        "nonce": nonce,
        "balancer": "web",
        "action": "update",
        "member": proxy.urls["one"],
        "weight": "1",
        "tier": "0",
        "route": "one",
        "drain": "on",
    }
    other = await stack.backend(Prize(proxy.manager, fields))
    for host, site in (("127.0.0.1", "same-site"), ("localhost", "cross-site")):
        prize = f"http://{host}:{other}/prize"
        loads = await browser.open(prize, landsOn=proxy.manager)
        assert loads == [("GET", prize, 200), ("POST", proxy.manager, 403)]
        assert await browser.text() == f"refused: Sec-Fetch-Site is '{site}'"
        assert (await proxy.flags())["one"]["drain"] is False

    await browser.open(proxy.manager)
    members = await browser.members()
    assert (members["one"]["Status"], members["two"]["Status"]) == ("ok", "ok")
    response = await proxy.http.post(proxy.manager, data=fields, allow_redirects=False)
    assert response.code == 303
    await response.content()
    assert (await proxy.flags())["one"]["drain"] is True


@pytest_twisted.ensureDeferred
async def test_aReplayedNonceIsRefused(stack: Stack, browser: Browser) -> None:
    """
    A form whose nonce was already used is refused with 403 and changes
    nothing, though it comes from the page itself.
    """
    proxy = await Proxy(stack).start()
    await browser.open(proxy.manager)
    [used] = await browser.nonces()
    loads = await browser.submitMember("one", tick=["drain"])
    assert loads == [("POST", proxy.manager, 303), ("GET", proxy.manager, 200)]
    assert await browser.nonces() != {used}

    # Back would not bring the used nonce back (the page is never cached, so
    # Chromium fetches it again): put it into this page's forms, as a script
    # replaying a captured form would.
    await deferToThread(
        browser.driver.execute_script,
        "for (const field of document.getElementsByName('nonce'))"
        "  field.value = arguments[0];",
        used,
    )
    loads = await browser.submitMember("two", tick=["disabled"])
    assert loads == [("POST", proxy.manager, 403)]
    assert await browser.text() == (
        "refused: the page's nonce is missing, used or stale (reload it)"
    )
    assert await proxy.flags() == {
        "one": {"drain": True, "disabled": False},
        "two": {"drain": False, "disabled": False},
    }
