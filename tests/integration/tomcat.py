"""
A real Tomcat (Debian's tomcat10) for the AJP tests: started on 127.0.0.1
in a folder of its own (its CATALINA_BASE), with its AJP connector on a free
port and a C{secret}, a C{jvmRoute}, and one JSP that reports what the
servlet saw (remote address, TLS, body length, query, session) in headers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet.task import deferLater

from tests.integration.processes import freePort

CATALINA_HOME = Path("/usr/share/tomcat10")
SECRET = "s3cret-for-tests"

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{port}"
               secret="{secret}" secretRequired="true" />
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
      <Host name="localhost" appBase="webapps" unpackWARs="false"
            autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""

REPORT_JSP = """<%@ page contentType="text/plain; charset=UTF-8" %><%
java.io.InputStream in = request.getInputStream();
java.security.MessageDigest sha = java.security.MessageDigest.getInstance("SHA-256");
byte[] buf = new byte[65536]; long n = 0; int r;
while ((r = in.read(buf)) > 0) { n += r; sha.update(buf, 0, r); }
StringBuilder digest = new StringBuilder();
for (byte b : sha.digest()) digest.append(String.format("%02x", b));
StringBuilder cookies = new StringBuilder();
if (request.getCookies() != null)
  for (jakarta.servlet.http.Cookie c : request.getCookies())
    cookies.append(c.getName()).append("=").append(c.getValue()).append(";");
response.setHeader("X-Remote-Addr", request.getRemoteAddr());
response.setHeader("X-Remote-Port", String.valueOf(request.getRemotePort()));
response.setHeader("X-Secure", String.valueOf(request.isSecure()));
response.setHeader("X-Scheme", request.getScheme());
response.setHeader("X-Server", request.getServerName() + ":" + request.getServerPort());
response.setHeader("X-Local-Addr", request.getLocalAddr());
response.setHeader("X-Content-Length", String.valueOf(request.getContentLengthLong()));
response.setHeader("X-Body-Length", String.valueOf(n));
response.setHeader("X-Body-SHA256", digest.toString());
response.setHeader("X-Query", String.valueOf(request.getQueryString()));
response.setHeader("X-Custom", String.valueOf(request.getHeader("X-Custom")));
response.setHeader("X-Cookies", cookies.toString());
response.setHeader("X-Cipher", String.valueOf(
    request.getAttribute("jakarta.servlet.request.cipher_suite")));
response.setHeader("X-Session", request.getSession().getId());
response.addCookie(new jakarta.servlet.http.Cookie("fromTomcat", "yes"));
response.addHeader("X-Many", "one");
response.addHeader("X-Many", "two");
%>method=<%= request.getMethod() %> uri=<%= request.getRequestURI() %> body=<%= n %>
"""


BIG_JSP = """<%@ page contentType="application/octet-stream"
    trimDirectiveWhitespaces="true" %><%
int size = Integer.parseInt(request.getParameter("size"));
byte[] block = new byte[4096];
for (int k = 0; k < block.length; k++) block[k] = (byte) k;
java.io.OutputStream stream = response.getOutputStream();
for (int sent = 0; sent < size; sent += block.length)
  stream.write(block, 0, Math.min(block.length, size - sent));
%>"""
"""Answers C{?size=N} with N bytes: 0, 1, ..., 255 over and over."""


class Tomcat:
    """One Tomcat, started by L{start} and stopped by L{stop}."""

    def __init__(
        self, folder: Path, route: str = "node1", secret: str = SECRET
    ) -> None:
        self.folder = folder
        self.route = route
        self.port = freePort()
        self.process: subprocess.Popen[bytes] | None = None
        for part in ("conf", "logs", "temp", "work", "webapps/ROOT"):
            (folder / part).mkdir(parents=True, exist_ok=True)
        for name in ("web.xml", "catalina.properties"):
            shutil.copy(Path("/etc/tomcat10") / name, folder / "conf" / name)
        (folder / "conf" / "server.xml").write_text(
            SERVER_XML.format(port=self.port, secret=secret, route=route)
        )
        (folder / "webapps" / "ROOT" / "index.jsp").write_text(REPORT_JSP)
        (folder / "webapps" / "ROOT" / "big.jsp").write_text(BIG_JSP)

    def start(self) -> None:
        """Start it (see L{whenListening})."""
        env = dict(os.environ, CATALINA_HOME=str(CATALINA_HOME))
        env["CATALINA_BASE"] = str(self.folder)
        log = (self.folder / "run.log").open("ab")
        self.process = subprocess.Popen(
            [str(CATALINA_HOME / "bin" / "catalina.sh"), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    async def whenListening(self, reactor: Any, timeout: float = 60.0) -> None:
        """Return once its AJP port accepts connections (within C{timeout})."""
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"Tomcat ended: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                await deferLater(reactor, 0.1, lambda: None)
        why = self.log()[-2000:]
        raise RuntimeError(f"Tomcat did not listen in {timeout} s: {why}")

    def stop(self) -> None:
        """Stop it (and wait)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log(self) -> str:
        path = self.folder / "run.log"
        return path.read_text(errors="replace") if path.exists() else ""
