"""Limits: 408 header timeout (slowloris), idle timeout, 431, 413."""

import socket
import time

import pytest

from moatctl import Conn, raw_exchange


@pytest.fixture
def limited(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"header_timeout": "1s", "idle_timeout": "1s",
                                 "max_body_bytes": 1000}}, upstream=up)

    class P:
        pass
    p = P()
    p.moat, p.up, p.port = m, up, m.https_port
    return p


def test_slowloris_partial_head_gets_408(limited):
    with Conn.tls(limited.port, timeout=6) as c:
        t0 = time.monotonic()
        c.send(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r.status == 408, r
        assert 0.8 <= elapsed < 3.5, elapsed
        assert c.wait_closed(3)
    assert limited.up.forwarded() == []


def test_slowloris_dribbling_bytes_still_gets_408(limited):
    """The header timeout bounds the whole head, it is not reset by each byte."""
    with Conn.tls(limited.port, timeout=6) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n")
        t0 = time.monotonic()
        c.sock.settimeout(0.2)
        got = b""
        while time.monotonic() - t0 < 5:
            try:
                c.send(b"X-A: b\r\n")
            except OSError:
                break
            try:
                data = c.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                break
            if not data:
                break
            got += data
            if b"\r\n\r\n" in got:
                break
        elapsed = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert elapsed < 3.5, elapsed
    assert limited.up.forwarded() == []


def test_idle_keepalive_connection_closed(limited):
    with Conn.tls(limited.port, timeout=6) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.wait_closed(5), "idle connection was not closed"
        assert 0.5 <= time.monotonic() - t0 < 4


def test_silent_connection_closed(limited):
    # connects, handshakes, never sends a byte
    with Conn.tls(limited.port, timeout=6) as c:
        assert c.wait_closed(5)


def test_header_too_large_is_431(proxy):
    r, _ = raw_exchange(proxy.port, b"GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Big: "
                        + b"a" * 20000 + b"\r\n\r\n")
    assert r is not None and r.status == 431, r
    assert proxy.up.forwarded() == []


def test_large_but_allowed_header_passes(proxy):
    with Conn.tls(proxy.port) as c:
        c.request("GET", "/echo", headers=[("X-Big", "a" * 8000)])
        r = c.read_response()
        assert r.status == 200, r
        assert ["x-big", "a" * 8000] in [[k.lower(), v] for k, v in r.json()["headers"]]


def test_too_many_headers_is_431(proxy):
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    r, _ = raw_exchange(proxy.port, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n" + hdrs + b"\r\n")
    assert r is not None and r.status == 431, r
    assert proxy.up.forwarded() == []


def test_request_line_too_long(proxy):
    r, _ = raw_exchange(proxy.port, b"GET /echo?" + b"a" * 20000
                        + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r is not None and r.status in (414, 431), r
    assert proxy.up.forwarded() == []


def test_body_at_limit_passes(limited):
    with Conn.tls(limited.port) as c:
        c.request("POST", "/echo", body=b"x" * 1000)
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["body_length"] == 1000


def test_content_length_over_limit_is_413(limited):
    r, _ = raw_exchange(limited.port, b"POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                        b"Content-Length: 1001\r\n\r\n" + b"x" * 1001)
    assert r is not None and r.status == 413, r
    assert limited.up.forwarded() == []


def test_content_length_over_limit_with_expect_is_413_not_100(limited):
    with Conn.tls(limited.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5000\r\n\r\n")
        r = c.read_response(skip_interim=False)
        assert r.status == 413, r
    assert limited.up.forwarded() == []


def test_chunked_body_over_limit_is_413(limited):
    chunk = b"1f4\r\n" + b"y" * 500 + b"\r\n"  # 500 bytes each
    r, _ = raw_exchange(limited.port, b"POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
    assert r is not None and r.status == 413, r
    # the head may have gone upstream before the body grew too big, but never a whole request
    assert limited.up.completed() == [], limited.up.log()
