"""Tenant isolation in routing, end to end with real upstream processes.

    tenants:  acme -> acme-dedicated, beta -> beta-dedicated; globex, initech: shared pool
    upstreams: app (the shared pool: two servers "shared-1", "shared-2"),
               acme-dedicated, beta-dedicated (one server each, named after the upstream)

Every assertion is made twice: on the "upstream" field of the echo (which server
answered) and on each upstream's own request log (what every server ever received),
so a request that went somewhere it must not go is caught even if its answer looked
right.
"""

import concurrent.futures
import json
import signal

import pytest

import identutil as iu
from moatctl import bearer
from redisutil import put_session

SHARED = ("shared-1", "shared-2")

ROUTES = [
    {"match": {"path_prefix": "/public-dedicated"}, "auth": "none", "upstream": "acme-dedicated"},
    {"match": {"path_prefix": "/public"}, "auth": "none", "upstream": "app"},
    {"match": {"path_prefix": "/acme-only"}, "auth": "required", "upstream": "acme-dedicated"},
    {"match": {"path_prefix": "/restricted"}, "auth": "optional", "tenants": ["acme", "globex"],
     "upstream": "app"},
    {"match": {"path_prefix": "/restricted-required"}, "auth": "required",
     "tenants": ["globex"], "upstream": "app"},
    {"match": {"path_prefix": "/opt"}, "auth": "optional", "upstream": "app"},
    {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"},
]


class Env:
    pass


@pytest.fixture
def env(tmp_path, redis_server, upstream, moat_factory):
    e = Env()
    e.shared = [upstream("shared-1"), upstream("shared-2")]
    e.acme_up = upstream("acme-dedicated")
    e.beta_up = upstream("beta-dedicated")
    e.all_ups = e.shared + [e.acme_up, e.beta_up]
    e.key = iu.make_signing_key(tmp_path)
    e.overrides = iu.identity_overrides(
        redis=redis_server, signing_key=e.key, routes=ROUTES,
        upstreams={"app": e.shared, "acme-dedicated": e.acme_up, "beta-dedicated": e.beta_up},
        tenants={"acme": {"upstream": "acme-dedicated"}, "beta": {"upstream": "beta-dedicated"}})
    e.moat = moat_factory(e.overrides)
    e.port = e.moat.https_port
    e.tok = {t: put_session(redis_server, tenant=t, user="user-of-" + t, mfa=True)
             for t in ("acme", "beta", "globex", "initech")}
    return e


def call(e, tenant, path, extra=(), method="GET"):
    """One request as tenant (None: anonymous); returns the Response."""
    hdrs = list(extra)
    if tenant:
        hdrs.append(bearer(e.tok[tenant]))
    r = iu.request(e.port, method, path, hdrs)
    assert r is not None, "no answer for %s %s" % (tenant, path)
    return r


def served_by(r):
    assert r.status == 200, r
    return r.json()["upstream"]


def logged_tenants(up):
    """X-Tenant-ID values (loose spelling) of every request this upstream received;
    None for a request without one."""
    out = []
    for e in up.requests():
        v = iu.loose([tuple(h) for h in e["headers"]], "X-Tenant-ID")
        assert len(v) <= 1, e
        out.append(v[0] if v else None)
    return out


def assert_isolated(e):
    """No upstream ever received a request of a tenant it must not serve."""
    for up in e.shared:
        got = logged_tenants(up)
        assert "acme" not in got and "beta" not in got, (up.name, got)
    assert set(logged_tenants(e.acme_up)) <= {"acme"}, logged_tenants(e.acme_up)
    assert set(logged_tenants(e.beta_up)) <= {"beta"}, logged_tenants(e.beta_up)


def test_pinned_tenant_reaches_only_its_dedicated_upstream(env):
    paths = ["/", "/api/x", "/opt/y", "/restricted/z", "/acme-only/w"]
    for p in paths:
        r = call(env, "acme", p + "?n=1")
        assert served_by(r) == "acme-dedicated", (p, r)
        assert iu.exact(iu.echo_headers(r.json()), "X-Tenant-ID") == ["acme"]
    for p in ["/", "/api/x", "/opt/y", "/acme-only/w"]:
        r = call(env, "beta", p)
        assert served_by(r) == "beta-dedicated", (p, r)
    assert len(env.acme_up.requests()) == len(paths)
    assert len(env.beta_up.requests()) == 4
    assert all(up.requests() == [] for up in env.shared), [up.requests() for up in env.shared]
    assert_isolated(env)


def test_other_tenants_never_reach_a_dedicated_upstream(env):
    for t in ("globex", "initech"):
        for p in ("/", "/api/x", "/opt/y"):
            r = call(env, t, p)
            assert served_by(r) in SHARED, (t, p, r)
            assert iu.exact(iu.echo_headers(r.json()), "X-Tenant-ID") == [t]
        # a route that points at acme's dedicated upstream refuses them
        r = call(env, t, "/acme-only/data")
        assert r.status == 403, (t, r)
    # anonymous, on an auth: none route that points at a dedicated upstream
    r = call(env, None, "/public-dedicated/x")
    assert r.status == 403, r
    r = call(env, "globex", "/public-dedicated/x")  # the session is not used on auth: none
    assert r.status == 403, r
    assert env.acme_up.requests() == [] and env.beta_up.requests() == []
    assert_isolated(env)


def test_pinned_tenant_on_other_tenants_route_goes_to_its_own(env):
    """beta on a route whose upstream is acme's dedicated one: beta's own, never acme's."""
    r = call(env, "beta", "/acme-only/x")
    assert served_by(r) == "beta-dedicated", r
    assert env.acme_up.requests() == []
    assert_isolated(env)


def test_spoofed_tenant_header_does_not_route(env):
    spoof = [("X-Tenant-ID", "acme"), ("X_Tenant_ID", "acme"), ("x.tenant.id", "acme")]
    r = call(env, "globex", "/api", spoof)
    assert served_by(r) in SHARED
    assert iu.loose(iu.echo_headers(r.json()), "X-Tenant-ID") == ["globex"]
    r = call(env, None, "/opt/api", spoof)
    assert served_by(r) in SHARED
    assert iu.loose(iu.echo_headers(r.json()), "X-Tenant-ID") == []
    r = call(env, None, "/acme-only/api", spoof)
    assert r.status == 401, r
    r = call(env, None, "/public/api", spoof)
    assert served_by(r) in SHARED
    assert env.acme_up.requests() == []
    assert_isolated(env)


def test_tenant_restricted_route(env):
    # listed tenants pass (acme still to its dedicated upstream)
    assert served_by(call(env, "acme", "/restricted/a")) == "acme-dedicated"
    assert served_by(call(env, "globex", "/restricted/a")) in SHARED
    # others and anonymous are refused with 403, and nothing is forwarded
    before = sum(len(u.requests()) for u in env.all_ups)
    for t in ("beta", "initech", None):
        r = call(env, t, "/restricted/a", [("X-Tenant-ID", "globex")])
        assert r.status == 403, (t, r)
        assert r.header("Strict-Transport-Security"), r
    r = call(env, "acme", "/restricted-required/a")
    assert r.status == 403, r
    r = call(env, None, "/restricted-required/a", [("X-Tenant-ID", "globex")])
    assert r.status == 401, r
    assert sum(len(u.requests()) for u in env.all_ups) == before
    assert served_by(call(env, "globex", "/restricted-required/a")) in SHARED
    assert_isolated(env)
    # every refusal is a cross-tenant attempt on the audit trail, with who and where
    ev = [e for e in env.moat.audit_log() if e.get("event") == "tenant_refused"]
    assert [e["tenant"] for e in ev] == ["beta", "initech", "", "acme"], ev
    assert all(e["reason"] == "tenant not allowed on this route" and e["path"].startswith(
        "/restricted") and e["route"].startswith("/restricted") for e in ev), ev


def test_dedicated_upstream_refusal_is_audited(env):
    assert call(env, "globex", "/acme-only/data").status == 403
    ev = [e for e in env.moat.audit_log() if e.get("event") == "tenant_refused"]
    assert len(ev) == 1 and ev[0]["tenant"] == "globex", ev
    assert ev[0]["reason"] == "dedicated upstream of another tenant", ev
    assert ev[0]["upstream"] == "acme-dedicated", ev


def test_auth_none_route_carries_no_tenant_headers(env, tmp_path):
    spoof = [("X-Tenant-ID", "acme"), ("X-User-ID", "alice"), ("X-Session-MFA", "1"),
             ("X_Tenant_ID", "acme"), ("Cookie", "session=" + env.tok["acme"])]
    for t in ("acme", "globex", None):
        r = call(env, t, "/public/page", spoof)
        j = r.json()
        assert served_by(r) in SHARED, r
        h = iu.echo_headers(j)
        for name in iu.IDENTITY_HEADERS:
            assert iu.loose(h, name) == [], (t, name, h)
        rc, out = iu.run_verifier(iu.dump_from_echo(j), env.key, tmp_path)
        assert rc == 0, out
    for up in env.shared:
        assert set(logged_tenants(up)) <= {None}, logged_tenants(up)


def test_keepalive_connection_mixing_tenants(env):
    """Requests of different tenants on one client connection each go to their place."""
    plan = ["acme", "globex", "beta", None, "acme", "initech", "acme", "beta", None, "globex"]
    want = {"acme": ("acme-dedicated",), "beta": ("beta-dedicated",)}
    with iu.Conn.tls(env.port) as c:
        for i, t in enumerate(plan):
            hdrs = [bearer(env.tok[t])] if t else [("X-Tenant-ID", "acme")]
            c.request("GET", "/opt/k?i=%d" % i, headers=hdrs)
            r = c.read_response()
            assert r.status == 200, (i, t, r)
            j = r.json()
            assert j["upstream"] in want.get(t, SHARED), (i, t, j["upstream"])
            assert iu.loose(iu.echo_headers(j), "X-Tenant-ID") == ([t] if t else [])
    assert_isolated(env)


def test_concurrent_tenants_stay_isolated(env):
    """Many tenants at once over many connections (2 workers, upstream keep-alive)."""
    plan = [("acme", "beta", "globex", "initech", None)[i % 5] for i in range(100)]

    def one(i_t):
        i, t = i_t
        hdrs = [bearer(env.tok[t])] if t else []
        r = iu.request(env.port, "GET", "/opt/c?i=%d" % i, hdrs)
        assert r is not None and r.status == 200, (i, t, r)
        j = r.json()
        return t, j["upstream"], iu.loose(iu.echo_headers(j), "X-Tenant-ID")

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, enumerate(plan)))
    for t, up, tenant_hdr in results:
        if t == "acme":
            assert up == "acme-dedicated"
        elif t == "beta":
            assert up == "beta-dedicated"
        else:
            assert up in SHARED, (t, up)
        assert tenant_hdr == ([t] if t else []), (t, tenant_hdr)
    assert len(env.acme_up.requests()) == 20 and len(env.beta_up.requests()) == 20
    assert sum(len(u.requests()) for u in env.shared) == 60
    assert_isolated(env)


def test_access_log_names_the_upstream(env):
    call(env, "acme", "/al/a")
    call(env, "globex", "/al/g")
    lines = env.moat.wait_access_log(2, pred=lambda l: l.get("path", "").startswith("/al/"))
    by_path = {l["path"]: l for l in lines}
    assert by_path["/al/a"]["upstream"] == "acme-dedicated", by_path
    assert by_path["/al/g"]["upstream"] == "app", by_path
    assert by_path["/al/a"]["upstream_addr"] == env.acme_up.addr, by_path


def test_dedicated_upstream_down_never_falls_back_to_shared(env):
    env.acme_up.stop()
    for p in ("/", "/opt/x", "/restricted/y"):
        r = call(env, "acme", p)
        assert r.status in (502, 503, 504), (p, r)
    assert all(up.requests() == [] for up in env.shared)
    # the others are unaffected
    assert served_by(call(env, "globex", "/")) in SHARED
    assert served_by(call(env, "beta", "/")) == "beta-dedicated"
    assert_isolated(env)


def test_pinning_by_reload(env, upstream):
    """A tenant pinned by a config reload goes only to its new upstream from then on."""
    globex_up = upstream("globex-dedicated")
    assert served_by(call(env, "globex", "/x")) in SHARED
    cfg = json.loads(open(env.moat.config_path).read())
    cfg["upstreams"]["globex-dedicated"] = {"servers": [globex_up.addr]}
    cfg["tenants"]["globex"] = {"upstream": "globex-dedicated"}
    with open(env.moat.config_path, "w") as f:
        json.dump(cfg, f)
    env.moat.send_signal(signal.SIGHUP)
    got = iu.moatctl.wait_until(
        lambda: served_by(call(env, "globex", "/y")) == "globex-dedicated", 10, interval=0.2)
    assert got, "globex not pinned after reload"

    def globex_on_shared():
        return sum(1 for u in env.shared for t in logged_tenants(u) if t == "globex")
    before = globex_on_shared()
    for _ in range(5):
        assert served_by(call(env, "globex", "/z")) == "globex-dedicated"
        assert served_by(call(env, "initech", "/z")) in SHARED
    assert globex_on_shared() == before
    assert set(logged_tenants(globex_up)) == {"globex"}, logged_tenants(globex_up)
    # the new dedicated upstream is closed to everyone else
    cfg["routes"].insert(0, {"match": {"path_prefix": "/g"}, "auth": "required",
                             "upstream": "globex-dedicated"})
    with open(env.moat.config_path, "w") as f:
        json.dump(cfg, f)
    env.moat.send_signal(signal.SIGHUP)
    assert iu.moatctl.wait_until(lambda: call(env, "initech", "/g/1").status == 403, 10,
                                 interval=0.2), "route to globex-dedicated not refused"
    assert call(env, None, "/g/1").status == 401
    assert served_by(call(env, "acme", "/g/1")) == "acme-dedicated"
    assert served_by(call(env, "globex", "/g/1")) == "globex-dedicated"
    assert set(logged_tenants(globex_up)) == {"globex"}, logged_tenants(globex_up)
    assert env.moat.alive()
    assert_isolated(env)
