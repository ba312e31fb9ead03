"""Session authentication end to end against a real redis-server: identity
forwarded for valid bearer / cookie sessions, 401 / 302 / 403 for everything
else (and nothing reaching the upstream), malformed tokens refused before any
Redis call, the audit trail, metrics, and cache expiry (revocation by DEL
within cache_ttl, a session's own exp honoured while cached)."""

import time
import urllib.parse

import pytest

from authutil import Client, auth_overrides, get, identity, poll, raw_file, wait_sessions_ready
from moatctl import audit_events, metric_sum, metrics
from redisutil import call as rcall
from redisutil import delete_session, new_token, put_session, session_key


def rejected(m):
    """moat's auth_rejected audit events."""
    return audit_events(m, "auth_rejected")


def hgetall_calls(redis):
    info = rcall(redis, "INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith("cmdstat_hgetall:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@pytest.fixture
def env(upstream, start_moat, redis_server):
    """upstream "app", a plain redis-server, and moat with ROUTES in front of both."""
    up = upstream("app")
    m = start_moat(auth_overrides(redis_server.addr), upstream=up)
    wait_sessions_ready(m, redis_server)

    class Env:
        pass
    e = Env()
    e.up, e.m, e.redis, e.port = up, m, redis_server, m.https_port
    return e


def test_valid_bearer_and_cookie_sessions_carry_identity(env):
    acme = put_session(env.redis, tenant="acme", user="alice@acme.example", mfa=0,
                       roles="admin,billing", exp=None)  # exp is optional
    globex = put_session(env.redis, tenant="globex", user="bob", mfa=1,
                         exp=time.time() + 3600)
    for kw in ({"token": acme}, {"cookie": acme}):
        r = get(env.port, "/echo", **kw)
        assert r.status == 200, r
        ident = identity(r)
        assert ident["X-Tenant-ID"] == ["acme"]
        assert ident["X-User-ID"] == ["alice@acme.example"]
        assert ident["X-Session-MFA"] == ["0"]
    for kw in ({"token": globex}, {"cookie": globex}):
        ident = identity(get(env.port, "/echo", **kw))
        assert ident["X-Tenant-ID"] == ["globex"]
        assert ident["X-User-ID"] == ["bob"]
        assert ident["X-Session-MFA"] == ["1"]
    # the session's cookie among others, and a bearer token next to another scheme's header
    r = get(env.port, "/echo", headers=[("Cookie", "theme=dark; session=%s; lang=en" % acme)])
    assert identity(r)["X-Tenant-ID"] == ["acme"]
    # bearer wins over the cookie
    r = get(env.port, "/echo", token=globex, cookie=acme)
    assert identity(r)["X-Tenant-ID"] == ["globex"]


def test_client_identity_headers_are_replaced(env):
    tok = put_session(env.redis, tenant="acme", user="alice")
    spoof = [("X-Tenant-ID", "globex"), ("X-User-ID", "root"), ("X-Session-MFA", "1"),
             ("x-tenant-id", "initech")]
    ident = identity(get(env.port, "/echo", token=tok, headers=spoof))
    assert ident["X-Tenant-ID"] == ["acme"]
    assert ident["X-User-ID"] == ["alice"]
    assert ident["X-Session-MFA"] == ["0"]
    # an anonymous request on an optional route carries none of them
    ident = identity(get(env.port, "/opt/x", headers=spoof))
    for h in ("X-Tenant-ID", "X-User-ID", "X-Session-MFA"):
        assert h not in ident, ident


def _long_token(n):
    return ("abcdefghij" * (n // 10 + 1))[:n]


# (name, how to send it, expected WWW-Authenticate error, audit reason)
REJECTIONS = [
    ("missing", {}, False, "missing"),
    ("other_cookie", {"headers": [("Cookie", "sessionid=" + "a" * 32)]}, False, "missing"),
    ("basic_auth", {"headers": [("Authorization", "Basic dXNlcjpwYXNzd29yZA==")]}, False,
     "missing"),
    ("unknown_bearer", {"token": "U" * 40}, True, "unknown"),
    ("unknown_cookie", {"cookie": "V" * 40}, True, "unknown"),
    ("malformed_chars", {"token": "abc$def%ghi!jkl&mno"}, True, "malformed"),
    ("malformed_cookie", {"cookie": "abcdefghijklmnopq\"rst"}, True, "malformed"),
    ("too_short", {"token": "abc"}, True, "malformed"),
    ("oversized", {"token": _long_token(257)}, True, "malformed"),
    ("oversized_4k", {"cookie": _long_token(4000)}, True, "malformed"),
    ("two_bearers", {"headers": [("Authorization", "Bearer " + "a" * 20),
                                 ("Authorization", "Bearer " + "b" * 20)]}, True, "malformed"),
    ("two_cookies", {"headers": [("Cookie", "session=" + "a" * 20),
                                 ("Cookie", "session=" + "b" * 20)]}, True, "malformed"),
]


@pytest.mark.parametrize("name,kw,invalid,reason", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_are_401_and_never_reach_upstream(env, name, kw, invalid, reason):
    before = hgetall_calls(env.redis)
    r = get(env.port, "/echo", **kw)
    assert r.status == 401, r
    www = r.header("WWW-Authenticate")
    if invalid:
        assert www == 'Bearer realm="moat", error="invalid_token"', r
    else:
        assert www == 'Bearer realm="moat"', r
    if reason in ("missing", "malformed"):  # refused before any Redis call
        assert hgetall_calls(env.redis) == before
    else:
        assert hgetall_calls(env.redis) == before + 1
    ev = [e for e in rejected(env.m) if e.get("request_id") == r.header("X-Request-ID")]
    assert len(ev) == 1 and ev[0]["reason"] == reason, rejected(env.m)
    # a browser route with login_url answers the same rejection with a 302
    r = get(env.port, "/web/page?x=1", **kw)
    assert r.status == 302, r
    assert r.header("Location") == "/login?return_to=" + urllib.parse.quote("/web/page?x=1",
                                                                          safe="/")
    assert env.up.requests() == []


def test_expired_and_broken_sessions_are_401(env):
    expired = put_session(env.redis, exp=time.time() - 5)
    broken = [put_session(env.redis, tenant="ac me"),               # not a header-safe value
              put_session(env.redis, user="x\r\nX-Tenant-ID: globex"),
              put_session(env.redis, mfa="yes")]
    r = get(env.port, "/echo", token=expired)
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.header("WWW-Authenticate")
    for tok in broken:
        r = get(env.port, "/echo", cookie=tok)
        assert r.status == 401, r
    # a key of the wrong type: Redis answers WRONGTYPE, an error reply, so 503 like any
    # other Redis error (the contract); what matters is that it is not let through
    tok = new_token()
    rcall(env.redis, "SET", session_key(tok), "tenant=acme")
    r = get(env.port, "/echo", token=tok)
    assert r.status in (401, 503), r
    reasons = [e["reason"] for e in rejected(env.m)]
    assert reasons.count("expired") == 1, reasons
    assert reasons.count("invalid") >= 3, reasons
    assert env.up.requests() == []


def test_exp_in_milliseconds_is_refused(env):
    """An exp written in milliseconds (the login service's bug) used to pass as a
    session that never expires; it is a malformed record now (docs/sessions.md)."""
    ms = put_session(env.redis, exp=(time.time() + 3600) * 1000)
    old_ms = put_session(env.redis, exp=(time.time() - 3600) * 1000)
    for tok in (ms, old_ms):
        r = get(env.port, "/echo", token=tok)
        assert r.status == 401, r
        assert 'error="invalid_token"' in r.header("WWW-Authenticate"), r
    assert env.up.requests() == []
    # the last second of year 9999 is still seconds
    assert get(env.port, "/echo", token=put_session(env.redis, exp=253402300799)).status == 200


@pytest.mark.parametrize("field,kw", [
    ("exp", {"exp": 1764771000000}),                 # milliseconds
    ("exp", {"exp": "soon"}),
    ("tenant", {"tenant": "ac me"}),
    ("user", {"user": "x\r\nX-Tenant-ID: globex"}),
    ("mfa", {"mfa": "yes"}),
    ("roles", {"roles": "a b"}),
])
def test_malformed_record_audit_names_the_field(env, field, kw):
    exp = kw.pop("exp", None)
    tok = put_session(env.redis, **kw) if exp is None else new_token()
    if exp is not None:  # put_session writes int(exp): write the raw value
        rcall(env.redis, "HSET", session_key(tok), "tenant", "acme", "user", "u1", "exp",
              str(exp))
    m0 = metrics(env.m)
    with Client(env.port) as c:  # one worker: the second answer comes from its cache
        for _ in range(2):
            r = c.get("/echo", token=tok)
            assert r.status == 401, r
            ev = [e for e in rejected(env.m) if e.get("request_id") == r.header("X-Request-ID")]
            assert len(ev) == 1, rejected(env.m)
            assert ev[0]["reason"] == "invalid" and ev[0]["field"] == field, ev
    hits = "moat_auth_cache_hits_total"
    assert metrics(env.m)[hits] - m0.get(hits, 0) >= 1
    assert "malformed session record (field %s)" % field in env.m.stderr()


def test_browser_redirect_keeps_the_target(env):
    target = "/web/a/b?q=hello world&next=/x?y=1#frag"
    quoted = urllib.parse.quote(target.split("#")[0], safe="/?=&")
    r = get(env.port, quoted)
    assert r.status == 302, r
    loc = r.header("Location")
    assert loc.startswith("/login?return_to="), loc
    back = urllib.parse.unquote(loc[len("/login?return_to="):])
    assert back == quoted
    assert "?" not in loc[len("/login?return_to="):] and "&" not in loc[len("/login?"):]
    # with a valid session the browser route passes
    tok = put_session(env.redis)
    assert get(env.port, "/web/a", cookie=tok).status == 200
    # API routes never redirect
    assert get(env.port, "/api").status == 401


def test_login_url_with_query_and_absolute(upstream, start_moat, redis_server):
    up = upstream("app")
    m = start_moat(auth_overrides(redis_server.addr,
                                  sessions={"login_url": "https://login.example/auth?app=moat"}),
                   upstream=up)
    wait_sessions_ready(m, redis_server)
    r = get(m.https_port, "/web/x?a=1")
    assert r.status == 302, r
    assert r.header("Location") == "https://login.example/auth?app=moat&return_to=/web/x%3Fa%3D1"


def test_mfa_route(env):
    no_mfa = put_session(env.redis, tenant="acme", user="alice", mfa=0)
    with_mfa = put_session(env.redis, tenant="acme", user="alice", mfa=1)
    r = get(env.port, "/admin/users", token=no_mfa)
    assert r.status == 403, r
    ev = [e for e in rejected(env.m) if e.get("request_id") == r.header("X-Request-ID")]
    assert ev and ev[0]["reason"] == "mfa" and ev[0]["tenant"] == "acme", ev
    # cached the second time: still 403
    assert get(env.port, "/admin/users", cookie=no_mfa).status == 403
    r = get(env.port, "/admin/users", token=with_mfa)
    assert r.status == 200, r
    assert identity(r)["X-Session-MFA"] == ["1"]
    # the same no-MFA session is fine on a route without the requirement
    assert get(env.port, "/echo", token=no_mfa).status == 200
    assert get(env.port, "/admin/users").status == 401
    assert [q["path"] for q in env.up.requests()] == ["/admin/users", "/echo"]


def test_optional_route(env):
    tok = put_session(env.redis, tenant="acme", user="alice")
    ident = identity(get(env.port, "/opt/x", token=tok))
    assert ident["X-Tenant-ID"] == ["acme"]
    for kw in ({}, {"token": "W" * 40}, {"cookie": "bad$token$value$$"}):
        r = get(env.port, "/opt/x", **kw)
        assert r.status == 200, (kw, r)
        assert "X-Tenant-ID" not in identity(r)
    assert get(env.port, "/public/x").status == 200


def test_audit_line_has_reason_and_never_the_token(env):
    unknown = new_token()
    expired = put_session(env.redis, exp=time.time() - 60)
    malformed = "tok$" + new_token()
    no_mfa = put_session(env.redis, mfa=0)
    valid = put_session(env.redis)
    seen = len(rejected(env.m))  # the readiness probes' "unknown" lines
    cases = [({"token": unknown}, "unknown"), ({"cookie": expired}, "expired"),
             ({"token": malformed}, "malformed")]
    for kw, reason in cases:
        r = get(env.port, "/echo", **kw)
        assert r.status == 401, r
        ev = [e for e in rejected(env.m) if e.get("request_id") == r.header("X-Request-ID")]
        assert len(ev) == 1, rejected(env.m)
        assert ev[0]["event"] == "auth_rejected" and ev[0]["reason"] == reason, ev
    assert get(env.port, "/admin", token=no_mfa).status == 403
    assert get(env.port, "/echo", token=valid).status == 200
    env.m.stop()  # flush everything
    for path in (env.m.audit_log_path, env.m.access_log_path, env.m.stderr_path,
                 env.m.stdout_path):
        data = raw_file(path)
        for tok in (unknown, expired, malformed, no_mfa, valid):
            assert tok.encode() not in data, (path, tok)
    reasons = sorted(e["reason"] for e in rejected(env.m)[seen:])
    assert reasons == ["expired", "malformed", "mfa", "unknown"], reasons


def test_metrics_count_rejections_and_cache_hits(env):
    tok = put_session(env.redis)
    m0 = metrics(env.m)
    for _ in range(3):
        assert get(env.port, "/echo", token="X" * 30).status == 401
    with Client(env.port) as c:  # one connection: one worker, its cache
        for _ in range(5):
            assert c.get("/echo", token=tok).status == 200
    m1 = metrics(env.m)
    auth = "moat_auth_results_total"
    assert metric_sum(m1, auth, result="rejected") - metric_sum(m0, auth, result="rejected") == 3
    assert metric_sum(m1, auth, result="rejected", reason="unknown") - \
        metric_sum(m0, auth, result="rejected", reason="unknown") == 3
    assert m1["moat_auth_cache_hits_total"] - m0.get("moat_auth_cache_hits_total", 0) >= 4
    assert metric_sum(m1, auth, result="error") == metric_sum(m0, auth, result="error")


def test_revoked_session_stops_within_cache_ttl(upstream, start_moat, redis_server):
    """cache_ttl 1s: after DEL the session is refused within ~1.5 s on a worker that had it
    cached, and not at all beyond that."""
    up = upstream("app")
    m = start_moat(auth_overrides(redis_server.addr, sessions={"cache_ttl": "1s"}), upstream=up)
    wait_sessions_ready(m, redis_server)
    tok = put_session(redis_server)
    with Client(m.https_port) as c:
        for _ in range(3):
            assert c.get("/echo", token=tok).status == 200
        hits = metrics(m)["moat_auth_cache_hits_total"]
        assert hits >= 2  # the decision was cached: the DEL must go through its expiry
        delete_session(redis_server, tok)
        t0 = time.monotonic()
        status, elapsed = poll(lambda: c.get("/echo", token=tok).status == 401, 5.0)
        assert status, "a deleted session was still accepted after 5 s"
        assert elapsed < 1.5, "revocation took %.3f s with cache_ttl 1s" % elapsed
        assert c.reconnects == 0  # measured on the worker that had it cached
    # every worker: fresh connections
    for _ in range(6):
        assert get(m.https_port, "/echo", token=tok).status == 401
    assert time.monotonic() - t0 < 10


def test_new_session_usable_after_negative_cache_ttl(upstream, start_moat, redis_server):
    up = upstream("app")
    m = start_moat(auth_overrides(redis_server.addr, sessions={"negative_cache_ttl": "1s"}),
                   upstream=up)
    wait_sessions_ready(m, redis_server)
    tok = new_token()
    with Client(m.https_port) as c:
        assert c.get("/echo", token=tok).status == 401
        put_session(redis_server, token=tok)
        ok, elapsed = poll(lambda: c.get("/echo", token=tok).status == 200, 10.0)
        assert ok, "a session created after a 401 was never accepted"
        assert elapsed < 5.0, elapsed


def test_session_exp_is_honoured_while_cached(upstream, start_moat, redis_server):
    """A cached session must not outlive its own exp (the cache entry's TTL is cut to
    exp, to the millisecond): validated at second x.6 with exp two seconds on, a request
    0.3 s after exp is refused although cache_ttl is an hour."""
    up = upstream("app")
    m = start_moat(auth_overrides(redis_server.addr, sessions={"cache_ttl": "1h"}), upstream=up)
    wait_sessions_ready(m, redis_server)
    # align: validate late in a second, so whole-second arithmetic would overshoot exp
    now = time.time()
    time.sleep((1.6 - (now % 1.0)) % 1.0)
    exp = int(time.time()) + 2
    tok = put_session(redis_server, exp=exp)
    with Client(m.https_port) as c:
        assert c.get("/echo", token=tok).status == 200
        assert c.get("/echo", token=tok).status == 200
        while time.time() < exp + 0.3:
            time.sleep(0.02)
        r = c.get("/echo", token=tok)
        assert r.status == 401, "session accepted %.2f s after its exp" % (time.time() - exp)
        assert c.reconnects == 0
    ev = rejected(m)
    assert ev and ev[-1]["reason"] == "expired", ev


def test_identity_does_not_leak_across_keepalive_requests(env):
    acme = put_session(env.redis, tenant="acme", user="alice")
    globex = put_session(env.redis, tenant="globex", user="bob", mfa=1)
    with Client(env.port) as c:
        assert identity(c.get("/echo", token=acme))["X-Tenant-ID"] == ["acme"]
        for kw in ({}, {"token": new_token()}, {"cookie": "bad$cookie$value$$$"}):
            r = c.get("/opt/x", **kw)
            assert r.status == 200, r
            assert "X-Tenant-ID" not in identity(r), (kw, identity(r))
        assert c.get("/echo").status == 401
        assert identity(c.get("/echo", cookie=globex))["X-Tenant-ID"] == ["globex"]
        assert c.get("/admin/x", token=acme).status == 403  # not globex's MFA
        assert identity(c.get("/echo", token=acme))["X-Session-MFA"] == ["0"]
        assert c.reconnects == 0


def test_custom_sessions_config(upstream, start_moat, redis_server):
    """cookie name, bearer off and a custom key prefix (with push revocation on it)."""
    # conf/redis-acl.conf's key patterns are for the default prefixes: as the file
    # says, a custom prefix needs its own pattern for moat's user
    rcall(redis_server, "ACL", "SETUSER", "moat", "~app1:s:*")
    up = upstream("app")
    m = start_moat(auth_overrides(redis_server.addr, sessions={
        "cookie": "sid", "bearer": False, "key_prefix": "app1:s:", "push_revocation": True,
        "cache_ttl": "5m", "token_min_len": 20, "token_max_len": 64}), upstream=up)
    wait_sessions_ready(m, redis_server, push=True)
    tok = put_session(redis_server, prefix="app1:s:", tenant="acme")
    default_prefix = put_session(redis_server, tenant="acme")
    assert get(m.https_port, "/echo", token=tok).status == 401  # bearer is off
    assert get(m.https_port, "/echo", cookie=tok).status == 401  # "session" is not the cookie
    assert get(m.https_port, "/echo", headers=[("Cookie", "sid=" + default_prefix)]).status == 401
    assert get(m.https_port, "/echo", headers=[("Cookie", "sid=" + "a" * 65)]).status == 401
    with Client(m.https_port) as c:
        for _ in range(3):
            r = c.get("/echo", headers=[("Cookie", "sid=" + tok)])
            assert identity(r)["X-Tenant-ID"] == ["acme"]
        delete_session(redis_server, tok, prefix="app1:s:")
        ok, _ = poll(lambda: c.get("/echo", headers=[("Cookie", "sid=" + tok)]).status == 401,
                     5.0)
        assert ok, "push revocation with a custom prefix did not arrive"
    reasons = [e["reason"] for e in rejected(m)]
    assert "malformed" in reasons and "missing" in reasons, reasons
