"""The plain-HTTP listener only answers 308 to https://, never proxies."""

import re

import pytest

from moatctl import CA, Conn, curl


def redirect(port, request):
    with Conn.tcp(port) as c:
        c.send(request)
        return c.read_response(method=request.split(b" ", 1)[0].decode())


def test_308_preserves_host_path_and_query(proxy):
    m = proxy.moat
    r = redirect(m.http_port, b"GET /some/path?x=1&y=%%2F HTTP/1.1\r\n"
                              b"Host: example.localhost:%d\r\n\r\n" % m.http_port)
    assert r.status == 308, r
    assert r.header("location") == "https://example.localhost:%d/some/path?x=1&y=%%2F" % (
        m.https_port), r.headers
    # RFC 6797: no HSTS over plain HTTP
    assert r.header("strict-transport-security") is None
    assert proxy.up.forwarded() == []


def test_308_to_default_port_has_no_port(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"listen": {"redirect_https_port": 443}}, upstream=up)
    r = redirect(m.http_port, b"GET /a/b?c=d HTTP/1.1\r\nHost: example.localhost:8080\r\n\r\n")
    assert r.status == 308, r
    assert re.fullmatch(r"https://example\.localhost(:443)?/a/b\?c=d", r.header("location")), \
        r.header("location")
    assert up.forwarded() == []


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"HEAD"])
def test_308_for_every_method_and_nothing_forwarded(proxy, method):
    m = proxy.moat
    body = b"" if method == b"HEAD" else b"secret=1"
    r = redirect(m.http_port, method + b" /form?q=1 HTTP/1.1\r\nHost: localhost\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert r.status == 308, r
    assert r.header("location") == "https://localhost:%d/form?q=1" % m.https_port
    assert proxy.up.forwarded() == []


def test_308_ipv6_literal_host(proxy):
    m = proxy.moat
    r = redirect(m.http_port, b"GET /v6 HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n" % m.http_port)
    assert r.status == 308, r
    assert r.header("location") == "https://[::1]:%d/v6" % m.https_port


def test_redirect_without_host_is_400(proxy):
    r = redirect(proxy.moat.http_port, b"GET /x HTTP/1.1\r\n\r\n")
    assert r.status == 400, r
    assert r.header("location") is None


def test_curl_follows_redirect_to_upstream(proxy):
    m = proxy.moat
    r = curl(m.http_port, "/echo?a=1", "-L", "--resolve", "localhost:%d:127.0.0.1" % m.https_port,
             "--cacert", CA, scheme="http")
    assert [h[0] for h in r.all_heads] == [308, 200], r.all_heads
    j = r.json()
    assert j["path"] == "/echo" and j["query"] == "a=1"
    assert len(proxy.up.requests()) == 1
