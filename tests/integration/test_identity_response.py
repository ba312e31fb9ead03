"""Response headers: what an upstream sends that must not reach the client
(X-Moat-*, Server, X-Powered-By by default; its own HSTS, nosniff and Referrer-Policy,
which moat owns) and the security headers moat adds to every response, proxied or its own.
"""

import urllib.parse

import pytest

import identutil as iu
from moatctl import bearer
from redisutil import put_session

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def gw(tmp_path, redis_server, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(iu.identity_overrides(
        redis=redis_server, upstreams={"app": up}, signing_key=iu.make_signing_key(tmp_path),
        routes=[{"match": {"host": "private.example"}, "auth": "required", "upstream": "app"},
                {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"}]))

    class G:
        pass
    g = G()
    g.moat, g.up, g.port = m, up, m.https_port
    g.token = put_session(redis_server, tenant="acme", user="alice", mfa=True)
    return g


def headers_path(*pairs):
    return "/headers?" + urllib.parse.urlencode([("set", "%s:%s" % p) for p in pairs])


def assert_security_headers(r):
    assert r.header_all("Strict-Transport-Security") == [HSTS], r
    assert r.header_all("X-Content-Type-Options") == ["nosniff"], r
    assert r.header_all("Referrer-Policy") == ["strict-origin-when-cross-origin"], r


def test_upstream_internal_headers_stripped(gw):
    path = headers_path(("X-Moat-Signature", "t=1,v1=" + "0" * 64), ("X-Moat-Debug", "tenant=acme"),
                        ("x-moat-lower", "1"), ("X-MOAT-UPPER", "1"), ("Server", "gunicorn/21"),
                        ("X-Powered-By", "PHP/8.2"), ("server", "lower"),
                        ("X-Keep", "yes"), ("X-Moatish", "kept"))
    for auth in ([], [bearer(gw.token)]):
        r = iu.request(gw.port, "GET", path, auth,
                       host="private.example" if auth else "localhost")
        assert r is not None and r.status == 200, r
        names = [k.lower() for k, _ in r.headers]
        assert not any(n.startswith("x-moat-") for n in names), r.headers
        assert r.header_all("X-Powered-By") == [], r.headers
        assert "gunicorn/21" not in r.header_all("Server") and "lower" not in r.header_all("Server")
        assert r.header_all("X-Keep") == ["yes"]
        assert r.header_all("X-Moatish") == ["kept"]
        assert r.header("X-Upstream") == "app"
        assert_security_headers(r)
    # the upstream did send them: the stripping is moat's
    assert len(gw.up.requests()) == 2


def test_upstream_security_headers_replaced_by_moat(gw):
    path = headers_path(("Strict-Transport-Security", "max-age=0"),
                        ("strict-transport-security", "max-age=1; preload"),
                        ("X-Content-Type-Options", "sniff"),
                        ("Referrer-Policy", "unsafe-url"))
    r = iu.request(gw.port, "GET", path)
    assert r is not None and r.status == 200, r
    assert_security_headers(r)
    assert "max-age=0" not in str(r.headers) and "unsafe-url" not in str(r.headers)


def test_response_connection_listed_header_dropped(gw):
    r = iu.request(gw.port, "GET", headers_path(("Connection", "X-Secret"), ("X-Secret", "s3cr3t"),
                                                ("X-Public", "p")))
    assert r is not None and r.status == 200, r
    assert r.header_all("X-Secret") == [], r.headers
    assert r.header_all("X-Public") == ["p"]


@pytest.mark.parametrize("host,path,auth,status", [
    ("private.example", "/x", False, 401),       # moat's own rejection
    ("localhost", "/status?code=204", False, 204),  # no body
    ("localhost", "/status?code=404", False, 404),  # an upstream error
    ("private.example", "/status?code=500", True, 500),
    ("unknown.example", "/x", False, 200),
])
def test_security_headers_on_every_response(gw, host, path, auth, status):
    r = iu.request(gw.port, "GET", path, [bearer(gw.token)] if auth else [], host=host)
    assert r is not None and r.status == status, r
    assert_security_headers(r)
    assert not any(k.lower().startswith("x-moat-") for k, _ in r.headers), r.headers


def test_moat_error_responses_do_not_leak_identity(gw):
    """A 401 carries no tenant information, whatever the client sent."""
    r = iu.request(gw.port, "GET", "/x", [("X-Tenant-ID", "acme"), ("X-User-ID", "alice")],
                   host="private.example")
    assert r.status == 401, r
    for name in iu.IDENTITY_HEADERS:
        assert iu.loose(r.headers, name) == [], r.headers
    assert b"acme" not in r.body and b"alice" not in r.body
