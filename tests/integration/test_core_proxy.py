"""Proxying through moat: bodies both ways, keep-alive, pipelining, HEAD, 204/304,
Connection: close, Expect: 100-continue, forwarded headers, balancing and routes."""

import hashlib
import os
import time

import pytest

import hostile
import upstream_server
from moatctl import Conn, curl, make_file, proc_status, sha256_file

UPLOAD_MIB = int(os.environ.get("MOAT_TEST_UPLOAD_MIB", "64"))


def echo_headers(j, name):
    return [v for k, v in j["headers"] if k.lower() == name.lower()]


def test_get_reaches_upstream(proxy):
    r = curl(proxy.port, "/echo?a=1&b=two")
    assert r.rc == 0, r
    assert r.status == 200, r
    j = r.json()
    assert j["method"] == "GET"
    assert j["path"] == "/echo"
    assert j["query"] == "a=1&b=two"
    assert j["upstream"] == "app"
    assert r.header("x-upstream") == "app"


def test_forwarded_headers_and_request_id(proxy):
    r = curl(proxy.port, "/echo")
    assert r.status == 200, r
    j = r.json()
    assert echo_headers(j, "X-Forwarded-For") == ["127.0.0.1"]
    assert echo_headers(j, "X-Forwarded-Proto") == ["https"]
    xfh = echo_headers(j, "X-Forwarded-Host")
    assert xfh in (["localhost:%d" % proxy.port], ["localhost"]), xfh
    rid = echo_headers(j, "X-Request-ID")
    assert len(rid) == 1 and rid[0].strip(), rid
    # a new id per request
    r2 = curl(proxy.port, "/echo")
    assert echo_headers(r2.json(), "X-Request-ID") != rid


def test_client_cannot_spoof_forwarded_headers(proxy):
    r = curl(proxy.port, "/echo", "-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Request-ID: evil",
             "-H", "X-Forwarded-Proto: http", "-H", "X-Forwarded-Host: evil.example")
    assert r.status == 200, r
    j = r.json()
    assert echo_headers(j, "X-Forwarded-For") == ["127.0.0.1"]
    assert echo_headers(j, "X-Forwarded-Proto") == ["https"]
    assert "evil.example" not in echo_headers(j, "X-Forwarded-Host")
    assert len(echo_headers(j, "X-Forwarded-Host")) == 1
    rid = echo_headers(j, "X-Request-ID")
    assert len(rid) == 1 and rid[0] != "evil", rid


def test_large_post_streamed_with_bounded_memory(upstream, moat_factory, tmp_path):
    """A big upload reaches the upstream intact and moat does not buffer it."""
    hostile.skip_if_sanitized()  # bounds VmHWM
    size = UPLOAD_MIB << 20
    up = upstream("app")
    m = moat_factory({"limits": {"max_body_bytes": size + 1}}, upstream=up)
    body = make_file(os.path.join(str(tmp_path), "upload.bin"), size)
    want = sha256_file(body)
    warm = curl(m.https_port, "/echo")
    assert warm.status == 200, warm
    hwm_before = proc_status(m.pid, "VmHWM")
    # -T streams the file (as --data-binary @file would, without loading it in curl)
    r = curl(m.https_port, "/echo", "-X", "POST", "-T", body, "-H", "Expect:",
             "-H", "Content-Type: application/octet-stream", timeout=600)
    assert r.status == 200, r
    j = r.json()
    assert j["body_length"] == size
    assert j["body_sha256"] == want
    grown_kib = proc_status(m.pid, "VmHWM") - hwm_before
    assert grown_kib < 16 * 1024, "peak RSS grew %d KiB for a %d MiB upload" % (grown_kib,
                                                                              UPLOAD_MIB)


def test_large_response_streamed(proxy):
    n = 32 << 20
    r = curl(proxy.port, "/big?bytes=%d" % n, timeout=120)
    assert r.status == 200, r
    assert len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == upstream_server.big_body_sha256(n)


def test_slow_client_large_response_bounded_memory(proxy):
    """Backpressure: a client that does not read must not make moat buffer the response."""
    hostile.skip_if_sanitized()  # bounds VmHWM
    n = UPLOAD_MIB << 20
    m = proxy.moat
    with Conn.tls(proxy.port, timeout=60) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
        hwm_before = proc_status(m.pid, "VmHWM")
        c.request("GET", "/big?bytes=%d" % n)
        time.sleep(2)  # moat reads from the upstream while we read nothing
        grown_kib = proc_status(m.pid, "VmHWM") - hwm_before
        r = c.read_response()
    assert r.status == 200
    assert len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == upstream_server.big_body_sha256(n)
    assert grown_kib < 16 * 1024, "peak RSS grew %d KiB while the client did not read %d MiB" % (
        grown_kib, UPLOAD_MIB)


def test_chunked_request_body_with_curl(proxy, tmp_path):
    body = make_file(os.path.join(str(tmp_path), "chunked.bin"), 3 << 20)
    r = curl(proxy.port, "/echo", "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
             "--data-binary", "@" + body)
    assert r.status == 200, r
    j = r.json()
    assert j["body_length"] == 3 << 20
    assert j["body_sha256"] == sha256_file(body)


def test_chunked_request_body_raw(proxy):
    with Conn.tls(proxy.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        j = r.json()
        assert j["body_length"] == 11
        assert j["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
        # trailers are not passed on as headers
        assert not echo_headers(j, "X-Trailer")
        # the connection is still usable
        c.request("GET", "/echo?after")
        assert c.read_response().json()["query"] == "after"


def test_chunked_response_body(proxy):
    r = curl(proxy.port, "/chunked?n=50&size=1000")
    assert r.status == 200, r
    assert r.body == upstream_server.chunked_body(50, 1000)
    with Conn.tls(proxy.port) as c:
        for _ in range(2):  # and keep-alive works after a chunked response
            c.request("GET", "/chunked?n=3&size=7")
            r = c.read_response()
            assert r.status == 200
            assert r.body == upstream_server.chunked_body(3, 7)


def test_pipelined_requests_answered_in_order(proxy):
    with Conn.tls(proxy.port) as c:
        c.send(b"GET /slow?ms=300&i=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
               b"GET /echo?i=2 HTTP/1.1\r\nHost: localhost\r\n\r\n"
               b"POST /echo?i=3 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
        got = [c.read_response() for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 200], got
    assert [r.json()["query"] for r in got] == ["ms=300&i=1", "i=2", "i=3"]
    assert got[2].json()["body_length"] == 3


def test_keepalive_one_client_connection_reuses_upstream_connection(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    with Conn.tls(m.https_port) as c:
        ids = []
        for i in range(4):
            c.request("GET", "/echo?i=%d" % i)
            r = c.read_response()
            assert r.status == 200
            ids.append(r.json()["connection_id"])
    assert len(set(ids)) == 1, ids


def test_keepalive_sequential_client_connections_share_upstream_connection(upstream,
                                                                            moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    ids = []
    for i in range(5):
        r = curl(m.https_port, "/echo?i=%d" % i)  # a new client connection each time
        assert r.status == 200, r
        ids.append(r.json()["connection_id"])
    assert len(set(ids)) == 1, "upstream connections per request: %r" % ids


def test_upstream_closing_idle_keepalive_is_not_an_error(upstream, moat_factory):
    # the upstream drops idle connections after 0.3 s; moat must notice and not fail
    up = upstream("app", args=["--idle-timeout", "0.3"])
    m = moat_factory({"workers": 1}, upstream=up)
    for i in range(3):
        r = curl(m.https_port, "/echo?i=%d" % i)
        assert r.status == 200, r
        time.sleep(0.8)


def test_head(proxy):
    with Conn.tls(proxy.port) as c:
        c.request("HEAD", "/head")
        r = c.read_response(method="HEAD")
        assert r.status == 200, r
        assert r.header("content-length") == str(len(upstream_server.HEAD_BODY))
        # no body bytes followed: the next response parses
        c.request("GET", "/head")
        r = c.read_response()
        assert r.status == 200
        assert r.body == upstream_server.HEAD_BODY
        c.request("HEAD", "/chunked?n=3&size=5")
        assert c.read_response(method="HEAD").status == 200
        c.request("GET", "/echo?last")
        assert c.read_response().json()["query"] == "last"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(proxy, code):
    with Conn.tls(proxy.port) as c:
        for i in range(2):
            c.request("GET", "/status?code=%d" % code)
            r = c.read_response()
            assert r.status == code, r
            assert r.header("transfer-encoding") is None
            assert r.header("content-length") in (None, "0")
        c.request("GET", "/echo?after")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["query"] == "after"


def test_other_statuses_passed_through(proxy):
    for code in (201, 302, 404, 500, 503):
        r = curl(proxy.port, "/status?code=%d" % code)
        assert r.status == code, r
        assert r.body == b"status %d\n" % code


def test_client_connection_close(proxy):
    with Conn.tls(proxy.port) as c:
        c.request("GET", "/echo", headers=[("Connection", "close")])
        r = c.read_response()
        assert r.status == 200
        assert "close" in (r.header("connection") or "").lower()
        assert c.wait_closed(5), "moat kept the connection open after Connection: close"


def test_http10_client_gets_closed(proxy):
    with Conn.tls(proxy.port) as c:
        c.send(b"GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert c.wait_closed(5)


def test_upstream_body_until_close(proxy):
    r = curl(proxy.port, "/close?bytes=100000")
    assert r.status == 200, r
    assert r.body == upstream_server.close_body(100000)
    with Conn.tls(proxy.port) as c:
        c.request("GET", "/close?bytes=777")
        r = c.read_response()
        assert r.status == 200
        assert r.body == upstream_server.close_body(777)


def test_expect_100_continue_with_curl(proxy, tmp_path):
    body = make_file(os.path.join(str(tmp_path), "expect.bin"), 2 << 20)
    r = curl(proxy.port, "/echo", "-H", "Expect: 100-continue", "--expect100-timeout", "10",
             "--data-binary", "@" + body)
    assert r.status == 200, r
    assert r.json()["body_sha256"] == sha256_file(body)
    assert [h[0] for h in r.all_heads] == [100, 200], r.all_heads
    assert r.elapsed < 5, "curl waited for 100 Continue (%.1fs)" % r.elapsed


def test_expect_100_continue_raw(proxy):
    with Conn.tls(proxy.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
               b"Content-Length: 10\r\n\r\n")
        r = c.read_response(skip_interim=False)
        assert r.status == 100, r
        c.send(b"0123456789")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_length"] == 10


def test_round_robin_between_servers(upstream, moat_factory):
    a, b = upstream("a"), upstream("b")
    m = moat_factory({"workers": 1, "upstreams": {"app": {
        "servers": [a.addr, b.addr], "balance": "round_robin"}}}, upstream=a)
    names = [curl(m.https_port, "/echo").json()["upstream"] for _ in range(6)]
    assert names.count("a") == 3 and names.count("b") == 3, names
    assert names[0] != names[1], names


def test_routes_by_host_and_path_prefix(upstream, moat_factory):
    app, a, b, api = upstream("app"), upstream("a"), upstream("b"), upstream("api")
    m = moat_factory({
        "upstreams": {"a": {"servers": [a.addr]}, "b": {"servers": [b.addr]},
                      "api": {"servers": [api.addr]}},
        "routes": [
            {"match": {"host": "a.localhost", "path_prefix": "/"}, "auth": "none",
             "upstream": "a"},
            {"match": {"host": "*.b.localhost", "path_prefix": "/"}, "auth": "none",
             "upstream": "b"},
            {"match": {"path_prefix": "/api"}, "auth": "none", "upstream": "api"},
            {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"},
        ]}, upstream=app)
    port = m.https_port

    def via(host, path):
        r = curl(port, path, "-H", "Host: " + host)
        assert r.status == 200, (host, path, r)
        return r.json()["upstream"]

    assert via("a.localhost:%d" % port, "/x") == "a"
    assert via("a.localhost", "/x") == "a"
    assert via("A.Localhost", "/x") == "a"          # host names are case-insensitive
    assert via("a.localhost", "/api/v1") == "a"     # first match wins
    assert via("x.b.localhost:%d" % port, "/") == "b"
    assert via("y.b.localhost", "/api") == "b"
    assert via("localhost:%d" % port, "/api/v1") == "api"
    assert via("localhost", "/api") == "api"
    assert via("localhost", "/other") == "app"
    assert via("xb.localhost", "/") == "app"        # not a subdomain of b.localhost
    assert via("a.localhost.evil", "/") == "app"    # exact means exact
