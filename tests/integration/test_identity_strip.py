"""Client-supplied identity headers never reach an upstream, in any spelling.

A real upstream (upstream_server.py) echoes what it received. For every spoof form
(case, duplicates, '_' or any punctuation as separator, X-Moat-*, folded into
Connection, in a chunked trailer) the upstream must see exactly one X-Tenant-ID /
X-User-ID / X-Session-MFA, spelled as moat spells it, carrying the session's values,
and no other header that a CGI/WSGI server would read under the same name.
Whitespace before the colon is a parse error (400) and nothing is forwarded.
"""

import pytest

import identutil as iu
from moatctl import bearer
from redisutil import put_session

EVIL = "evil-tenant"


def _routes():
    return [
        {"match": {"path_prefix": "/anon"}, "auth": "none", "upstream": "app"},
        {"match": {"path_prefix": "/opt"}, "auth": "optional", "upstream": "app"},
        {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"},
    ]


@pytest.fixture
def gw(tmp_path, redis_server, upstream, moat_factory):
    """moat with a signing key in front of one echoing upstream, plus a session of
    tenant acme (user alice, no MFA)."""
    up = upstream("app")
    key = iu.make_signing_key(tmp_path)
    m = moat_factory(iu.identity_overrides(redis=redis_server, upstreams={"app": up},
                                           routes=_routes(), signing_key=key,
                                           trusted_proxies=["10.0.0.0/8"]))
    token = put_session(redis_server, tenant="acme", user="alice", mfa=False)

    class G:
        pass
    g = G()
    g.moat, g.up, g.key, g.token, g.port = m, up, key, token, m.https_port
    g.auth = "Authorization: Bearer " + token
    return g


def assert_only_moat_identity(hdrs, tenant="acme", user="alice", mfa="0", signed=True):
    """Exactly moat's identity headers, once each, spelled canonically, no spoof left."""
    for name, want in (("X-Tenant-ID", tenant), ("X-User-ID", user), ("X-Session-MFA", mfa)):
        got = [(k, v) for k, v in hdrs if iu.fold(k) == iu.fold(name)]
        assert got == [(name, want)], "%s at the upstream: %r (all: %r)" % (name, got, hdrs)
    moat_owned = iu.loose_prefix(hdrs, "X-Moat-")
    assert [k for k, _ in moat_owned] == (["X-Moat-Signature"] if signed else []), hdrs
    for k, v in hdrs:
        assert EVIL not in v and "evil" not in k.lower(), (k, v, hdrs)


def assert_no_identity(hdrs):
    for name in iu.IDENTITY_HEADERS:
        assert iu.loose(hdrs, name) == [], (name, hdrs)
    for k, v in hdrs:
        assert EVIL not in v, (k, v, hdrs)


# Each spoof is a list of raw header lines the client adds to an authenticated request.
SPOOFS = {
    "exact": ["X-Tenant-ID: " + EVIL, "X-User-ID: root", "X-Session-MFA: 1"],
    "lower": ["x-tenant-id: " + EVIL, "x-user-id: root", "x-session-mfa: 1"],
    "upper": ["X-TENANT-ID: " + EVIL, "X-USER-ID: root", "X-SESSION-MFA: 1"],
    "mixed": ["x-TeNaNt-Id: " + EVIL, "X-user-ID: root", "x-Session-Mfa: 1"],
    "value_ows": ["X-Tenant-ID:   " + EVIL + "   ", "X-User-ID:\troot\t"],
    "duplicates": ["X-Tenant-ID: " + EVIL, "X-Tenant-ID: " + EVIL + "-2",
                   "x-tenant-id: " + EVIL + "-3", "X-User-ID: root", "X-User-ID: admin"],
    "empty_values": ["X-Tenant-ID:", "X-User-ID: ", "X-Session-MFA:"],
    "underscore": ["X_Tenant_ID: " + EVIL, "x_user_id: root", "X_SESSION_MFA: 1"],
    "mixed_separators": ["X-Tenant_ID: " + EVIL, "X_User-ID: root", "X-Session_MFA: 1"],
    "dots": ["X.Tenant.ID: " + EVIL, "X.User.ID: root", "X.Session.MFA: 1"],
    "other_punctuation": ["X~Tenant+ID: " + EVIL, "X!User#ID: root", "X'Session|MFA: 1",
                          "X*Tenant^ID: " + EVIL, "X`Tenant%ID: " + EVIL],
    "spoof_after_auth": None,  # filled below: spoofs placed before Authorization
    "moat_prefix": ["X-Moat-Signature: t=1700000000,v1=" + "0" * 64,
                    "X-Moat-Tenant: " + EVIL, "x_moat_debug: 1", "X.Moat.Anything: 1",
                    "X-MOAT-SIGNATURE: t=1,v1=" + "a" * 64],
    "connection_listed": ["Connection: keep-alive, X-Tenant-ID, X-User-ID, X-Session-MFA, "
                          "X-Moat-Signature, X-Request-ID",
                          "X-Tenant-ID: " + EVIL, "X-User-ID: root"],
    "everything": ["X-Tenant-ID: " + EVIL, "x_tenant_id: " + EVIL, "X.TENANT.ID: " + EVIL,
                   "X-Tenant-ID: " + EVIL, "X-User-ID: root", "X-Session-MFA: 1",
                   "X-Moat-Signature: t=1,v1=" + "b" * 64, "Connection: X-Tenant-ID"],
}
SPOOFS["spoof_after_auth"] = SPOOFS["everything"]


@pytest.mark.parametrize("form", sorted(SPOOFS))
def test_spoofed_identity_replaced_by_session(gw, form, tmp_path):
    lines = ["GET /echo?form=%s HTTP/1.1" % form, "Host: localhost"]
    if form == "spoof_after_auth":
        lines += [gw.auth] + SPOOFS[form]
    else:
        lines += SPOOFS[form] + [gw.auth]
    r = iu.raw_request(gw.port, lines)
    assert r is not None and r.status == 200, r
    j = r.json()
    hdrs = iu.echo_headers(j)
    assert_only_moat_identity(hdrs)
    # the upstream's own request log says the same
    logged = [e for e in gw.up.requests() if e["query"] == "form=%s" % form]
    assert len(logged) == 1, gw.up.requests()
    assert_only_moat_identity([tuple(h) for h in logged[0]["headers"]])
    # and moat's signature covers the session's identity, not the spoof
    rc, out = iu.run_verifier(iu.dump_from_echo(j), gw.key, tmp_path)
    assert rc == 0, out


@pytest.mark.parametrize("form", ["exact", "underscore", "dots", "duplicates", "moat_prefix",
                                  "everything"])
def test_spoofed_identity_dropped_for_anonymous(gw, form):
    """Without a session (optional route) there is no identity at all, spoofed or not."""
    r = iu.raw_request(gw.port, ["GET /opt/echo HTTP/1.1", "Host: localhost"] + SPOOFS[form])
    assert r is not None and r.status == 200, r
    hdrs = iu.echo_headers(r.json())
    assert_no_identity(hdrs)
    assert [k for k, _ in iu.loose_prefix(hdrs, "X-Moat-")] == ["X-Moat-Signature"], hdrs


def test_spoof_without_session_on_required_route_is_refused(gw):
    r = iu.raw_request(gw.port, ["GET /echo HTTP/1.1", "Host: localhost",
                                 "X-Tenant-ID: acme", "X-User-ID: alice", "X-Session-MFA: 1"])
    assert r is not None and r.status == 401, r
    assert gw.up.requests() == []


@pytest.mark.parametrize("line", [
    "X-Tenant-ID : " + EVIL,
    "X-Tenant-ID\t: " + EVIL,
    "X_Tenant_ID : " + EVIL,
    "X-Moat-Signature : t=1,v1=" + "0" * 64,
])
def test_whitespace_before_colon_is_400(gw, line):
    r = iu.raw_request(gw.port, ["GET /echo HTTP/1.1", "Host: localhost", line, gw.auth])
    assert r is not None and r.status == 400, r
    assert gw.up.requests() == [], "a malformed request reached the upstream"


def test_leading_whitespace_header_line_is_400(gw):
    """A line starting with whitespace is obs-fold (RFC 9112 5.2): rejected, not unfolded."""
    for lines in (["Host: localhost", " X-Tenant-ID: " + EVIL],
                  ["Host: localhost", "X-Foo: a", "\tX-Tenant-ID: " + EVIL],
                  ["Host: localhost", "X-Foo: a", " X-Tenant-ID: " + EVIL]):
        r = iu.raw_request(gw.port, ["GET /echo HTTP/1.1"] + lines + [gw.auth])
        assert r is not None and r.status == 400, (lines, r)
    assert gw.up.requests() == []


def test_similar_but_different_names_pass_through(gw):
    """Folding is not over-broad: names that no server reads as X-Tenant-ID are kept."""
    keep = ["X-Tenant-IDs: a", "XTenantID: b", "X--Tenant-ID: c", "X-Tenant: d",
            "Tenant-ID: e", "X-Moat: f", "X-Moatx-Foo: g"]
    r = iu.raw_request(gw.port, ["GET /echo HTTP/1.1", "Host: localhost"] + keep + [gw.auth])
    assert r is not None and r.status == 200, r
    hdrs = iu.echo_headers(r.json())
    for line in keep:
        k, _, v = line.partition(": ")
        assert (k, v) in hdrs, (line, hdrs)
    assert_only_moat_identity(hdrs)


def test_connection_listed_header_dropped_but_moat_headers_stay(gw, tmp_path):
    r = iu.raw_request(gw.port, [
        "GET /echo HTTP/1.1", "Host: localhost",
        "Connection: X-Foo, x-tenant-id , X-USER-ID,X-Session-MFA,X-Request-ID,"
        "X-Forwarded-For,X-Moat-Signature",
        "X-Foo: dropped", "X-Bar: kept", gw.auth])
    assert r is not None and r.status == 200, r
    j = r.json()
    hdrs = iu.echo_headers(j)
    assert iu.exact(hdrs, "X-Foo") == []
    assert iu.exact(hdrs, "X-Bar") == ["kept"]
    assert iu.exact(hdrs, "Connection") in ([], ["keep-alive"], ["close"]), hdrs
    assert_only_moat_identity(hdrs)
    assert len(iu.exact(hdrs, "X-Request-ID")) == 1
    assert iu.exact(hdrs, "X-Forwarded-For") == ["127.0.0.1"]
    rc, out = iu.run_verifier(iu.dump_from_echo(j), gw.key, tmp_path)
    assert rc == 0, out


def test_every_connection_header_is_honoured(gw):
    """Names listed in any Connection header field are dropped, not only in the last one."""
    r = iu.raw_request(gw.port, [
        "GET /echo HTTP/1.1", "Host: localhost", "Connection: X-Foo", "X-Foo: dropped",
        "X-Baz: dropped too", "Connection: X-Baz", gw.auth])
    assert r is not None and r.status == 200, r
    hdrs = iu.echo_headers(r.json())
    assert iu.exact(hdrs, "X-Foo") == [] and iu.exact(hdrs, "X-Baz") == [], hdrs


def test_hop_by_hop_headers_not_forwarded(gw):
    r = iu.raw_request(gw.port, [
        "GET /echo HTTP/1.1", "Host: localhost", "Keep-Alive: timeout=5", "TE: trailers",
        "Proxy-Connection: keep-alive", "Proxy-Authorization: Basic Zm9vOmJhcg==",
        "Trailer: X-Tenant-ID", "Upgrade: h2c", "Connection: Upgrade, Keep-Alive", gw.auth])
    assert r is not None and r.status == 200, r
    hdrs = iu.echo_headers(r.json())
    for name in ("Keep-Alive", "TE", "Proxy-Connection", "Proxy-Authorization", "Trailer",
                 "Upgrade"):
        assert iu.exact(hdrs, name) == [], (name, hdrs)
    assert_only_moat_identity(hdrs)


def test_chunked_trailer_never_reaches_upstream(tmp_path, redis_server,
                                                 capture_upstream, moat_factory):
    """Trailers are dropped entirely: the exact bytes moat sends carry no client trailer."""
    cap = capture_upstream("capture")
    m = moat_factory(iu.identity_overrides(redis=redis_server, upstreams={"app": cap},
                                           routes=_routes()))
    token = put_session(redis_server, tenant="acme", user="alice", mfa=False)
    body = (b"5\r\nhello\r\n6\r\n world\r\n0\r\n"
            b"X-Tenant-ID: " + EVIL.encode() + b"\r\nx_user_id: root\r\n"
            b"X-Moat-Signature: t=1,v1=" + b"0" * 64 + b"\r\nX-Other-Trailer: t\r\n\r\n")
    for path, auth in (("/echo", ["Authorization: Bearer " + token]), ("/anon/echo", [])):
        r = iu.raw_request(m.https_port, ["POST %s HTTP/1.1" % path, "Host: localhost",
                                          "Transfer-Encoding: chunked",
                                          "Trailer: X-Tenant-ID, X-User-ID"] + auth, body)
        assert r is not None and r.status == 200, r
        raw = r.json()["raw"].encode("latin-1")
        assert EVIL.encode() not in raw and b"root" not in raw, raw
        assert b"X-Other-Trailer" not in raw, raw
        line, hdrs, rest = iu.parse_raw_head(raw)
        assert iu.exact(hdrs, "Transfer-Encoding") == ["chunked"], hdrs
        assert iu.exact(hdrs, "Trailer") == [], hdrs
        assert rest.endswith(b"0\r\n\r\n"), rest  # last chunk, then no trailer at all
        assert b"hello" in rest and b" world" in rest
        if auth:
            assert_only_moat_identity(hdrs, signed=False)  # no signing key here
        else:
            assert_no_identity(hdrs)
        assert iu.loose_prefix(hdrs, "X-Moat-") == [], hdrs
    assert len(cap.captured()) == 2


def test_chunked_trailer_with_real_upstream(gw):
    """Same with upstream_server.py: the body arrives whole, identity is moat's."""
    body = (b"4\r\nabcd\r\n0\r\nX-Tenant-ID: " + EVIL.encode() + b"\r\n\r\n")
    r = iu.raw_request(gw.port, ["POST /echo HTTP/1.1", "Host: localhost",
                                 "Transfer-Encoding: chunked", gw.auth], body)
    assert r is not None and r.status == 200, r
    j = r.json()
    assert j["body_length"] == 4
    assert_only_moat_identity(iu.echo_headers(j))


def test_auth_none_route_carries_no_identity_even_with_valid_session(gw, tmp_path):
    """auth: none: the session is not looked at, so no tenant headers, spoofed or real."""
    r = iu.raw_request(gw.port, ["GET /anon/echo HTTP/1.1", "Host: localhost", gw.auth,
                                 "Cookie: session=" + gw.token] + SPOOFS["everything"])
    assert r is not None and r.status == 200, r
    j = r.json()
    hdrs = iu.echo_headers(j)
    assert_no_identity(hdrs)
    rc, out = iu.run_verifier(iu.dump_from_echo(j), gw.key, tmp_path)
    assert rc == 0, out  # signed with empty tenant, user and mfa


def test_keepalive_connection_does_not_carry_identity_over(gw):
    """An authenticated request then an anonymous one on the same client connection."""
    with iu.Conn.tls(gw.port) as c:
        c.request("GET", "/opt/echo", headers=[("Authorization", "Bearer " + gw.token)])
        a = c.read_response()
        c.request("GET", "/opt/echo", headers=[("X-Tenant-ID", EVIL)])
        b = c.read_response()
        c.request("GET", "/anon/echo", headers=[("X_Tenant_ID", EVIL)])
        d = c.read_response()
    assert a.status == b.status == d.status == 200, (a, b, d)
    assert_only_moat_identity(iu.echo_headers(a.json()))
    assert_no_identity(iu.echo_headers(b.json()))
    assert_no_identity(iu.echo_headers(d.json()))


def _long_host(n):
    """A syntactically valid host name of exactly n characters (labels of <= 60)."""
    host = (("h" * 60 + ".") * (n // 61 + 1))[:n]
    return host[:-1] + "x" if host.endswith(".") else host


@pytest.mark.parametrize("signed", [True, False])
def test_long_host_never_yields_partial_identity(tmp_path, redis_server,
                                                 upstream, moat_factory, signed):
    """moat's added headers share a bounded buffer, and the client sizes X-Forwarded-Host
    (its Host). Whatever the size, moat forwards all of its headers or refuses (431):
    never X-Tenant-ID without X-User-ID / X-Session-MFA / X-Request-ID."""
    up = upstream("app")
    key = iu.make_signing_key(tmp_path) if signed else None
    m = moat_factory(iu.identity_overrides(
        redis=redis_server, upstreams={"app": up}, signing_key=key,
        routes=[{"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"}]))
    token = put_session(redis_server, tenant="acme", user="alice", mfa=True)
    statuses = set()
    for n in range(1700, 2100, 6):
        host = _long_host(n)
        assert len(host) == n
        before = len(up.requests())
        r = iu.request(m.https_port, "GET", "/x?n=%d" % n, [bearer(token)], host=host)
        assert r is not None, n
        statuses.add(r.status)
        if r.status != 200:
            assert r.status == 431, (n, r)
            assert len(up.requests()) == before, "refused request %d was forwarded" % n
            continue
        j = r.json()
        h = iu.echo_headers(j)
        assert iu.exact(h, "X-Forwarded-Host") == [host], n
        assert len(iu.exact(h, "X-Request-ID")) == 1, (n, h)
        assert iu.exact(h, "X-Forwarded-For") == ["127.0.0.1"], n
        assert_only_moat_identity(h, mfa="1", signed=signed)
        if signed:
            rc, out = iu.run_verifier(iu.dump_from_echo(j), key, tmp_path)
            assert rc == 0, (n, out)
    assert 200 in statuses


def test_drop_decisions_do_not_leak_into_the_next_request(gw):
    """Request structures are reused: the headers dropped from one request must not make
    moat drop the headers at the same positions in the next one (any client's)."""
    spoof = ["X-Tenant-ID: %s-%d" % (EVIL, i) for i in range(12)]
    legit = ["X-App-%d: v%d" % (i, i) for i in range(12)]
    for _ in range(3):
        with iu.Conn.tls(gw.port) as c:
            c.send("\r\n".join(["GET /echo?a HTTP/1.1", "Host: localhost"] + spoof
                               + [gw.auth]) + "\r\n\r\n")
            a = c.read_response()
            c.send("\r\n".join(["GET /echo?b HTTP/1.1", "Host: localhost"] + legit
                               + [gw.auth]) + "\r\n\r\n")
            b = c.read_response()
        assert a.status == 200 and b.status == 200, (a, b)
        assert_only_moat_identity(iu.echo_headers(a.json()))
        got = iu.echo_headers(b.json())
        for line in legit:
            k, _, v = line.partition(": ")
            assert (k, v) in got, "%s was dropped from the next request: %r" % (k, got)
        assert ("Authorization", gw.auth.split(": ", 1)[1]) in got
