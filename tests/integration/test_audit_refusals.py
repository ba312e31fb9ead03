"""Audit events for what a client can cause at will (refused requests and connections,
bounded per client) and for the certificates moat serves (issue 16 item 3)."""
import datetime
import subprocess
import time

import moatctl
from moatctl import audit_events, raw_exchange, wait_until

SMUGGLE = (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
MALFORMED = b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n"


def test_malformed_and_smuggling_requests_are_audited(upstream, moat_factory):
    m = moat_factory(upstream=upstream("app"))
    for data in (MALFORMED, SMUGGLE):
        r, _ = raw_exchange(m.https_port, data)
        assert r is not None and r.status == 400, r
    got = lambda: audit_events(m, "request_refused")  # noqa: E731
    assert wait_until(lambda: len(got()) == 2, 5), got()
    for e in got():
        assert e["status"] == 400 and e["client_ip"] == "127.0.0.1", e
        assert e["reason"] and e["request_id"], e
    assert "suppressed" not in got()[0]


def test_refusals_from_one_client_are_bounded(upstream, moat_factory):
    """A client looping on malformed requests gets at most 5 events per 10 s per worker
    thread, not one per request (the audit log is not a flood target)."""
    m = moat_factory({"workers": 1}, upstream=upstream("app"))
    for _ in range(30):
        r, _ = raw_exchange(m.https_port, MALFORMED)
        assert r is not None and r.status == 400
    r, _ = raw_exchange(m.https_port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r.status == 200  # the access log flushes with the request after it
    m.wait_access_log(31)
    assert len(audit_events(m, "request_refused")) == 5, audit_events(m, "request_refused")


def test_connection_over_the_per_ip_cap_is_audited(upstream, moat_factory):
    m = moat_factory({"limits": {"max_connections_per_ip": 1}}, upstream=upstream("app"))
    held = moatctl.Conn.tls(m.https_port)
    try:
        second = moatctl.tcp_connect(m.https_port)
        second.settimeout(5)
        assert second.recv(1) == b""  # closed at accept
        second.close()
        got = lambda: audit_events(m, "connection_refused")  # noqa: E731
        assert wait_until(lambda: len(got()) == 1, 5), got()
        assert got()[0]["reason"] == "max_connections_per_ip"
        assert got()[0]["client_ip"] == "127.0.0.1"
    finally:
        held.close()


def _not_after(cert):
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", cert],
                         check=True, capture_output=True, text=True).stdout
    when = datetime.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_certificates_loaded_are_audited_at_start_and_reload(upstream, moat_factory):
    m = moat_factory(upstream=upstream("app"))
    cert = m.cfg["tls"]["certificates"][0]["cert"]
    got = lambda: audit_events(m, "certificate_loaded")  # noqa: E731
    assert wait_until(lambda: len(got()) == 1, 5), got()
    e = got()[0]
    assert e["file"] == cert and e["generation"] == 1 and e["not_after"] == _not_after(cert), e
    assert e["days_left"] > 30
    assert audit_events(m, "certificate_expiring") == []
    m.reload()
    assert wait_until(lambda: [x["generation"] for x in got()] == [1, 2], 10), got()


def test_certificate_near_its_end_is_audited_as_expiring(upstream, moat_factory, tmp_path):
    crt, key = str(tmp_path / "soon.crt"), str(tmp_path / "soon.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    m = moat_factory({"tls": {"certificates": [{"cert": crt, "key": key}]}},
                     upstream=upstream("app"))
    got = lambda: audit_events(m, "certificate_expiring")  # noqa: E731
    assert wait_until(lambda: len(got()) == 1, 5), got()
    e = got()[0]
    assert e["file"] == crt and e["name"] == "localhost" and 8 <= e["days_left"] <= 10, e
    assert "expires within 30 days" in m.stderr()
    time.sleep(0.2)
    assert len(got()) == 1  # once at load; then once a day
