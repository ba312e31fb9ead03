"""One JSON access-log line per request, with the documented fields."""

import ssl
import time

from moatctl import Conn, curl, raw_exchange, tls_connect, tls_context

FIELDS = ("time", "request_id", "client_ip", "method", "path", "status", "bytes_in", "bytes_out",
          "upstream", "upstream_time_ms", "total_time_ms", "tls_version", "tls_cipher")


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_line(e):
    missing = [f for f in FIELDS if f not in e]
    assert not missing, "access log line lacks %s: %r" % (missing, e)
    assert e["time"], e
    assert e["client_ip"] == "127.0.0.1", e
    assert isinstance(e["status"], int), e
    for f in ("bytes_in", "bytes_out"):
        assert isinstance(e[f], int) and e[f] >= 0, e
    assert number(e["total_time_ms"]) and e["total_time_ms"] >= 0, e
    assert e["tls_version"] in ("TLSv1.2", "TLSv1.3"), e
    assert e["tls_cipher"], e


def test_one_line_per_request_with_fields(proxy):
    m = proxy.moat
    with Conn.tls(proxy.port) as c:
        for i in range(3):
            c.request("GET", "/echo?i=%d" % i)
            assert c.read_response().status == 200
    lines = m.wait_access_log(3)
    time.sleep(0.3)
    lines = m.access_log()
    assert len(lines) == 3, lines
    for e in lines:
        check_line(e)
        assert e["method"] == "GET"
        assert e["path"].startswith("/echo")
        assert e["status"] == 200
        assert e["tls_version"] == "TLSv1.3"
        assert e["bytes_out"] > 0
        assert number(e["upstream_time_ms"]) and e["upstream_time_ms"] >= 0, e
        assert e["total_time_ms"] + 1 >= e["upstream_time_ms"], e
        assert e["upstream"] == "app" or str(proxy.up.port) in str(e["upstream"]), e
    # request ids are unique and the same the upstream saw
    ids = [e["request_id"] for e in lines]
    assert len(set(ids)) == 3 and all(ids), ids
    seen = [v for r in proxy.up.requests() for k, v in r["headers"] if k.lower() == "x-request-id"]
    assert sorted(seen) == sorted(ids)


def test_bytes_counted(proxy):
    m = proxy.moat
    with Conn.tls(proxy.port) as c:
        c.request("POST", "/echo", body=b"x" * 5000)
        assert c.read_response().status == 200
        c.request("GET", "/big?bytes=100000")
        assert c.read_response().status == 200
    post, big = m.wait_access_log(2)
    assert post["method"] == "POST" and post["bytes_in"] >= 5000, post
    assert big["bytes_out"] >= 100000, big


def test_tls12_logged(proxy):
    ctx = tls_context(max_version=ssl.TLSVersion.TLSv1_2)
    with Conn(tls_connect(proxy.port, ctx=ctx)) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
        cipher = c.sock.cipher()[0]
    (e,) = proxy.moat.wait_access_log(1)
    check_line(e)
    assert e["tls_version"] == "TLSv1.2"
    # OpenSSL's name (SSL_CIPHER_get_name) is expected; the IANA name is tolerated
    assert e["tls_cipher"] == cipher or "ECDHE" in e["tls_cipher"], e


def test_errors_are_logged(moat_factory):
    m = moat_factory(upstream=None)
    assert curl(m.https_port, "/nowhere").status == 502
    r, _ = raw_exchange(m.https_port, b"GET /bad HTTP/1.1\r\nHost: localhost\r\n"
                                      b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert r is not None and r.status == 400
    lines = m.wait_access_log(2)
    by_status = {e["status"]: e for e in lines}
    assert 502 in by_status and 400 in by_status, lines
    check_line(by_status[502])
    assert by_status[502]["path"].startswith("/nowhere")
    for e in lines:
        assert "request_id" in e, e


def test_client_fields_and_upstream_only_when_forwarded(upstream, moat_factory):
    """user_agent (cut at 256 bytes), sni, the route's id; upstream null when moat
    answered itself (here a 429: the route was found, nothing was forwarded)."""
    up = upstream("app")
    m = moat_factory({"routes": [
        {"match": {"path_prefix": "/other"}, "auth": "none", "upstream": "app"},
        {"id": "api", "match": {"path_prefix": "/"}, "auth": "none", "upstream": "app",
         "rate_limit": [{"key": "ip", "rate": "1/m", "burst": 1}]},
    ]}, upstream=up)
    ua = "probe/1.0 " + "x" * 400
    with Conn.tls(m.https_port) as c:
        for _ in range(2):
            c.request("GET", "/echo", headers=[("User-Agent", ua)])
            c.read_response()
    lines = m.wait_access_log(2)
    assert [e["status"] for e in lines] == [200, 429], lines
    for e in lines:
        assert e["user_agent"] == ua[:256], e
        assert e["sni"] == "localhost", e
        assert e["route"] == "api", e
    assert lines[0]["upstream"] == "app" and lines[1]["upstream"] is None, lines
