"""
Tests for the TLS benchmark's pure parts: what it reads from ab, h2load and
nginx's probe log, the configurations it writes, and how it works out ratios.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bench.nginx import NginxPorts, nginxCommand, nginxConfig, parseProbeLog
from bench.tls import (
    HTTPS_HANDSHAKE,
    HTTPS_KEEPALIVE,
    NGINX,
    PLAIN_CLOSE,
    PLAIN_KEEPALIVE,
    TWISTED_PROXY,
    abCommand,
    bestRounds,
    h2loadCommand,
    h2loadControlCommand,
    parseAb,
    parseH2load,
    tlsRatios,
    twistedProxyTLSConfig,
    writeCertificates,
)
from bench.wrk import WrkError
from twisted_proxy.config import loadString
from twisted_proxy.tls.profile import INTERMEDIATE_CIPHERS, INTERMEDIATE_GROUPS
from twisted_proxy.tls.server import inspectFiles

AB_TLS = """\
This is ApacheBench, Version 2.3 <$Revision$>
Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
Licensed to The Apache Software Foundation, http://www.apache.org/

Benchmarking 127.0.0.1 (be patient).....done


Server Software:        nginx/1.22.1
Server Hostname:        127.0.0.1
Server Port:            18444
SSL/TLS Protocol:       TLSv1.3,TLS_AES_256_GCM_SHA384,256,256
Server Temp Key:        X25519 253 bits

Document Path:          /
Document Length:        6 bytes

Concurrency Level:      50
Time taken for tests:   1.005 seconds
Complete requests:      2265
Failed requests:        0
Total transferred:      339956 bytes
HTML transferred:       13782 bytes
Requests per second:    2252.95 [#/sec] (mean)
Time per request:       22.193 [ms] (mean)
Time per request:       0.444 [ms] (mean, across all concurrent requests)
Transfer rate:          330.22 [Kbytes/sec] received
"""

AB_PLAIN_ERRORS = """\
Server Software:
Server Hostname:        127.0.0.1
Server Port:            8080

Document Path:          /
Document Length:        14 bytes

Concurrency Level:      50
Time taken for tests:   3.000 seconds
Complete requests:      24000
Failed requests:        12
   (Connect: 0, Receive: 4, Length: 8, Exceptions: 0)
Non-2xx responses:      30
Requests per second:    8000.00 [#/sec] (mean)
"""

H2LOAD_OK = """\
starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up \
time and 2s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 3.00s, 31003.00 req/s, 2.39MB/s
requests: 62006 total, 62006 started, 62006 done, 62006 succeeded, 0 failed, \
0 errored, 0 timeout
status codes: 62006 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 4.79MB (5022486) total, 5.05MB (5291706) headers (space savings 50.51%)
"""

H2LOAD_LATE_AND_5XX = """\
Application protocol: h2

finished in 10.00s, 3255.60 req/s, 143.22KB/s
requests: 32556 total, 32606 started, 32556 done, 32550 succeeded, 6 failed, \
0 errored, 0 timeout
status codes: 32571 2xx, 0 3xx, 0 4xx, 6 5xx
"""

H2LOAD_NO_ANSWER = """\
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2

finished in 1.00s, 0.00 req/s, 382B/s
requests: 0 total, 10 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_abTLS() -> None:
    """ab's report gives requests/s, the count, the time and the TLS it used."""
    result = parseAb(AB_TLS)
    assert result.requestsPerSecond == 2252.95
    assert result.requests == 2265
    assert result.seconds == 1.005
    assert result.errors == 0
    assert result.tls == "TLSv1.3,TLS_AES_256_GCM_SHA384,256,256"
    assert result.serverKey == "X25519 253 bits"


def test_abErrors() -> None:
    """Failed requests and non-2xx answers both count as errors; no TLS line."""
    result = parseAb(AB_PLAIN_ERRORS)
    assert (result.failed, result.non2xx, result.errors) == (12, 30, 42)
    assert result.tls is None
    assert result.asDict()["errors"] == 42


def test_abUnreadable() -> None:
    """Output without the figures (ab failed to start) is an error."""
    with pytest.raises(WrkError, match="cannot read ab output"):
        parseAb("ab: invalid URL\n")


def test_h2load() -> None:
    """h2load's report gives requests/s, the outcome counts and ALPN's choice."""
    result = parseH2load(H2LOAD_OK)
    assert result.requestsPerSecond == 31003.0
    assert (result.requests, result.succeeded, result.status2xx) == (62006,) * 3
    assert result.errors == 0
    assert (result.protocol, result.tls) == ("h2", "TLSv1.3")
    assert result.cipher == "TLS_AES_128_GCM_SHA256"


def test_h2loadLateAnswersAnd5xx() -> None:
    """Answers counted after the measured time are no error; 5xx answers are."""
    result = parseH2load(H2LOAD_LATE_AND_5XX)
    assert result.status2xx > result.requests
    assert result.status4xx5xx == 6
    assert result.errors == 6


def test_h2loadNoAnswer() -> None:
    """h2 negotiated but nothing answered: no requests, and no error hidden."""
    result = parseH2load(H2LOAD_NO_ANSWER)
    assert result.requests == 0
    assert result.requestsPerSecond == 0.0
    assert result.protocol == "h2"


def test_h2loadUnreadable() -> None:
    """Output without the summary is an error."""
    with pytest.raises(WrkError, match="cannot read h2load output"):
        parseH2load("no protocol negotiated\n")


def test_probeLog() -> None:
    """The probe's log counts requests, resumed sessions and protocols."""
    counts = parseProbeLog(
        ". TLSv1.3 TLS_AES_256_GCM_SHA384\n"
        "r TLSv1.3 TLS_AES_256_GCM_SHA384\n"
        "\n"
        ". TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256\n"
    )
    assert (counts.requests, counts.resumed) == (3, 1)
    assert counts.protocols == {"TLSv1.3": 2, "TLSv1.2": 1}


def test_abCommand() -> None:
    """ab runs without keep-alive, for whole seconds or a number of requests."""
    timed = abCommand("ab", "https://127.0.0.1:1/", 2.6, 50)
    assert "-k" not in timed
    assert timed[timed.index("-t") + 1] == "3"
    # -n after -t: otherwise -t caps the run at 50,000 requests.
    assert timed.index("-n") > timed.index("-t")
    assert timed[-1] == "https://127.0.0.1:1/"
    counted = abCommand("ab", "https://127.0.0.1:1/", 0, 50, requests=300)
    assert "-t" not in counted
    assert counted[counted.index("-n") + 1] == "300"


def test_h2loadCommands() -> None:
    """h2load measures h2 for whole seconds; the control closes each connection."""
    command = h2loadCommand("h2load", "https://127.0.0.1:1/", 0.4, 10, 5)
    assert command[1:5] == ["-t1", "-c10", "-m5", "--duration=1"]
    assert "--h1" not in command
    control = h2loadControlCommand("h2load", "https://127.0.0.1:1/", 20)
    assert "--h1" in control
    assert control[control.index("-H") + 1] == "Connection: close"


def test_nginxConfig(tmp_path: Path) -> None:
    """nginx listens on loopback only, keeps upstream connections, and uses
    twisted-proxy's TLS settings with a session cache and no tickets."""
    ports = NginxPorts(plain=8001, tls=8443, probe=8444)
    text = nginxConfig(
        tmp_path, ports, 9000, tmp_path / "leaf.pem", tmp_path / "leaf.key"
    )
    listens = [
        line.split()[1].rstrip(";")
        for line in text.splitlines()
        if line.strip().startswith("listen ")
    ]
    assert listens == ["127.0.0.1:8001", "127.0.0.1:8443", "127.0.0.1:8444"]
    assert "listen 127.0.0.1:8443 ssl http2;" in text
    assert "daemon off;" in text
    assert "server 127.0.0.1:9000;" in text
    assert "keepalive 64;" in text
    assert 'proxy_set_header Connection "";' in text
    assert f"ssl_ciphers {INTERMEDIATE_CIPHERS};" in text
    assert f"ssl_ecdh_curve {INTERMEDIATE_GROUPS};" in text
    assert text.count("ssl_session_tickets off;") == 2
    assert f"pid {tmp_path / 'nginx.pid'};" in text
    assert f"access_log {tmp_path / 'probe.log'} probe;" in text
    command = nginxCommand("/usr/sbin/nginx", tmp_path, tmp_path / "nginx.conf")
    assert command[-2:] == ["-e", "stderr"]


def test_certificates(tmp_path: Path) -> None:
    """The leaf is ECDSA P-256 for localhost and 127.0.0.1, followed by its CA,
    and twisted-proxy finds nothing wrong with the files."""
    files = writeCertificates(tmp_path)
    chain = x509.load_pem_x509_certificates(files.certificate.read_bytes())
    assert len(chain) == 2
    key = chain[0].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in names.value.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1"
    ]
    config = loadString(
        twistedProxyTLSConfig(8080, 8443, 9000, files), source="bench.toml"
    )
    tls = config.listen[1].tls
    assert tls is not None
    assert inspectFiles(tls) == []


def test_twistedProxyConfig(tmp_path: Path) -> None:
    """The generated config has a plaintext and a TLS (h2 too) listener."""
    files = writeCertificates(tmp_path)
    config = loadString(twistedProxyTLSConfig(8080, 8443, 9000, files))
    plain, secure = config.listen
    assert plain.endpoint == "tcp:8080:interface=127.0.0.1"
    assert plain.tls is None
    assert secure.endpoint == "tcp:8443:interface=127.0.0.1"
    assert secure.tls is not None
    assert secure.tls.alpn == ("h2", "http/1.1")
    assert not config.proxy.access_log


def _figure(rps: float, cpuUs: float, other: float = 0.0) -> dict[str, Any]:
    return {
        "requestsPerSecond": rps,
        "proxy_cpu_us_per_request": cpuUs,
        "proxy_cpu_other_share": other,
    }


def test_ratios() -> None:
    """Each proxy's TLS figures over its plaintext ones, from requests/s and
    from CPU per request, and twisted-proxy's over nginx's."""
    rows = {
        TWISTED_PROXY: {
            PLAIN_KEEPALIVE: _figure(10_000, 100),
            HTTPS_KEEPALIVE: _figure(8_000, 125),
            PLAIN_CLOSE: _figure(8_000, 125),
            HTTPS_HANDSHAKE: _figure(1_000, 500),
            "h2": {"error": "h2 not negotiated"},
        },
        NGINX: {
            PLAIN_KEEPALIVE: _figure(40_000, 10),
            HTTPS_KEEPALIVE: _figure(40_000, 20),
            PLAIN_CLOSE: _figure(20_000, 20),
            HTTPS_HANDSHAKE: _figure(2_000, 250),
            "h2": _figure(30_000, 12),
        },
    }
    ratios = tlsRatios(rows)
    ours = ratios[TWISTED_PROXY]
    assert ours["https_keepalive_over_plain"] == 0.8
    assert ours["https_keepalive_over_plain_per_cpu"] == 0.8
    assert ours["handshakes_over_plain_connections"] == 0.125
    assert ours["handshakes_over_plain_connections_per_cpu"] == 0.25
    assert ours["h2_over_plain_keepalive"] is None
    assert ratios[NGINX]["h2_over_plain_keepalive"] == 0.75
    versus = ratios["twisted-proxy_over_nginx"]
    assert versus[PLAIN_KEEPALIVE] == 0.25
    assert versus[f"{PLAIN_KEEPALIVE}_per_cpu"] == 0.1
    assert versus[HTTPS_HANDSHAKE] == 0.5
    assert versus[f"{HTTPS_HANDSHAKE}_per_cpu"] == 0.5
    assert versus["h2"] is None


def test_ratiosWithoutNginx() -> None:
    """With one proxy only, there is no proxy-over-proxy ratio."""
    rows = {TWISTED_PROXY: {PLAIN_KEEPALIVE: _figure(10_000, 100)}}
    assert set(tlsRatios(rows)) == {TWISTED_PROXY}


def test_bestRounds() -> None:
    """Each figure comes from its fastest quiet round; every round is listed."""
    first = {
        "resumes_offered_session": True,
        PLAIN_KEEPALIVE: _figure(12_000, 80, other=0.3),
        HTTPS_KEEPALIVE: _figure(8_000, 120),
    }
    second = {
        "resumes_offered_session": True,
        PLAIN_KEEPALIVE: _figure(10_000, 100),
        HTTPS_KEEPALIVE: {"error": "wrk exited with 1"},
    }
    merged = bestRounds([first, second])
    assert merged["resumes_offered_session"] is True
    # The faster round had another process on the proxy's CPU.
    assert merged[PLAIN_KEEPALIVE]["requestsPerSecond"] == 10_000
    assert merged[PLAIN_KEEPALIVE]["rounds_rps"] == [12_000, 10_000]
    assert merged[HTTPS_KEEPALIVE]["requestsPerSecond"] == 8_000


def test_bestRoundsAllFailed() -> None:
    """When the proxy never started, the last failure is kept."""
    merged = bestRounds([{"error": "first"}, {"error": "second"}])
    assert merged == {"error": "second"}
