"""Upstream failures: 502 when down or broken, 504 on timeout; HSTS on every HTTPS response."""

import socket
import time

import pytest

from moatctl import Conn, curl, free_port, hsts_directives, raw_exchange, wait_until

HSTS = {"hsts": {"max_age": 31536000, "include_subdomains": True, "preload": False}}


def test_upstream_down_is_502(upstream, moat_factory):
    m = moat_factory(upstream=None)  # upstreams.app points at a port nobody listens on
    r = curl(m.https_port, "/echo")
    assert r.status == 502, r
    assert r.elapsed < 5, r.elapsed
    # and again, while the failed connect marks the only server down (1 s): 503 at once
    # with Retry-After, no new connect attempt (no connect storm)
    r = curl(m.https_port, "/echo")
    assert r.status == 503, r
    assert r.header("Retry-After") == "1", r
    # once the mark has passed, moat tries the server again
    time.sleep(1.2)
    assert curl(m.https_port, "/echo").status == 502


def test_upstream_timeout_is_504(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1, "limits": {"upstream_timeout": "1s"}}, upstream=up)
    t0 = time.monotonic()
    r = curl(m.https_port, "/slow?ms=3000")
    assert r.status == 504, r
    assert 0.8 <= time.monotonic() - t0 < 2.9
    # the late answer must never be handed to a later request
    time.sleep(2.5)
    r = curl(m.https_port, "/echo?after=1")
    assert r.status == 200, r
    assert r.json()["query"] == "after=1"


@pytest.fixture
def blackhole():
    """A port whose accept queue is full: SYNs are dropped, connect() hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(c)
        time.sleep(0.2)
        yield port
    finally:
        for c in fillers:
            c.close()
        s.close()


def test_upstream_connect_timeout(blackhole, moat_factory):
    m = moat_factory({"upstreams": {"app": {"servers": ["127.0.0.1:%d" % blackhole]}},
                      "limits": {"upstream_connect_timeout": "500ms", "upstream_timeout": "30s"}})
    t0 = time.monotonic()
    r = curl(m.https_port, "/echo")
    elapsed = time.monotonic() - t0
    assert r.status in (502, 504), r
    assert 0.4 <= elapsed < 2.5, elapsed


def test_fast_requests_unaffected_by_upstream_timeout(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"upstream_timeout": "1s"}}, upstream=up)
    r = curl(m.https_port, "/slow?ms=300")
    assert r.status == 200, r


def test_upstream_closing_without_response_is_502(proxy):
    r = curl(proxy.port, "/drop")
    assert r.status == 502, r
    assert curl(proxy.port, "/echo").status == 200


def test_kept_alive_connection_dropped_by_upstream_is_replayed_once(upstream, moat_factory):
    """The head goes straight to a pooled upstream socket (upstream_send). When the
    upstream drops that connection without answering, a GET without a body is
    replayed on a new connection (nothing of it is lost), and one with a body is not.
    Other methods: tests/integration/test_hostile_proxy.py (only safe ones are replayed)."""
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    with Conn.tls(m.https_port) as c:
        c.request("GET", "/echo")
        first = c.read_response()
        assert first.status == 200
        c.request("GET", "/drop?n=1")  # on the pooled connection, then on a new one
        assert c.read_response().status == 502
    drops = [q for q in up.requests() if q["path"] == "/drop"]
    assert len(drops) == 2, drops
    assert drops[0]["conn"] == first.json()["connection_id"], (drops, first.json())
    assert drops[1]["conn"] != drops[0]["conn"], drops
    with Conn.tls(m.https_port) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
        c.request("POST", "/drop?n=2", body=b"abc")  # a body is never replayed
        assert c.read_response().status == 502
    assert len([q for q in up.requests() if q["path"] == "/drop"]) == 3
    assert curl(m.https_port, "/echo").status == 200


@pytest.mark.parametrize("kind", ["garbage", "dup_cl", "cl_te", "bare_lf", "no_status"])
def test_invalid_upstream_response_is_502(proxy, kind):
    r = curl(proxy.port, "/bad?kind=" + kind)
    assert r.status == 502, r
    assert curl(proxy.port, "/echo").status == 200


def test_upstream_restarted_is_recovered(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    assert curl(m.https_port, "/echo").status == 200
    up.stop()
    assert curl(m.https_port, "/echo").status == 502
    up.start()
    # the failed connect marked the server down for 1 s: 503 meanwhile, then served again
    seen = []
    assert wait_until(lambda: seen.append(curl(m.https_port, "/echo").status) or seen[-1] == 200,
                      timeout=5), seen
    assert set(seen) <= {503, 200}, seen


def assert_hsts(headers_value, want):
    assert hsts_directives(headers_value) == want, headers_value


def test_hsts_on_every_https_response(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(dict(HSTS, limits={"upstream_timeout": "1s"}), upstream=up)
    want = {"max-age=31536000", "includesubdomains"}
    for path, code in (("/echo", 200), ("/status?code=404", 404), ("/status?code=500", 500),
                       ("/slow?ms=2500", 504), ("/drop", 502)):
        r = curl(m.https_port, path)
        assert r.status == code, (path, r)
        assert len(r.header_all("strict-transport-security")) == 1, (path, r.headers)
        assert_hsts(r.header("strict-transport-security"), want)
    # also on moat's own error responses
    r, _ = raw_exchange(m.https_port, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n"
                                      b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab")
    assert r is not None and r.status == 400, r
    assert_hsts(r.header("strict-transport-security"), want)


def test_hsts_with_preload(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"hsts": {"max_age": 63072000, "include_subdomains": True,
                               "preload": True}}, upstream=up)
    r = curl(m.https_port, "/echo")
    assert r.status == 200
    assert_hsts(r.header("strict-transport-security"),
                {"max-age=63072000", "includesubdomains", "preload"})


def test_hsts_on_502(moat_factory):
    m = moat_factory(HSTS, upstream=None)
    r = curl(m.https_port, "/")
    assert r.status == 502
    assert "max-age=31536000" in hsts_directives(r.header("strict-transport-security"))
