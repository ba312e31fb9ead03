"""X-Moat-Signature end to end: what the upstream receives verifies with the shipped
verifier (scripts/verify-signature.py, run as a program), and stops verifying when
any signed part is altered: tenant, user, MFA, request id, method, target, host, t.
"""

import re
import time

import pytest

import identutil as iu
from moatctl import bearer
from redisutil import put_session

SIG = re.compile(r"^t=(\d+),v1=([0-9a-f]{64})$")


@pytest.fixture
def gw(tmp_path, redis_server, upstream, moat_factory):
    up = upstream("app")
    key = iu.make_signing_key(tmp_path)
    routes = [
        {"match": {"path_prefix": "/anon"}, "auth": "none", "upstream": "app"},
        {"match": {"path_prefix": "/opt"}, "auth": "optional", "upstream": "app"},
        {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"},
    ]
    m = moat_factory(iu.identity_overrides(redis=redis_server, upstreams={"app": up},
                                           routes=routes, signing_key=key))

    class G:
        pass
    g = G()
    g.moat, g.up, g.key, g.port = m, up, key, m.https_port
    g.token = put_session(redis_server, tenant="acme", user="alice", mfa=True)
    g.auth = ("Authorization", "Bearer " + g.token)
    return g


def verify(gw, dump, tmp_path, key=None, extra=()):
    return iu.run_verifier(dump, key or gw.key, tmp_path, extra)


TARGET = "/api/v1/projects?page=2&sort=name"


def test_signature_verifies_over_what_upstream_received(gw, tmp_path):
    t0 = int(time.time())
    r, j = iu.get_json(gw.port, TARGET, [gw.auth], host="app.example.com")
    h = iu.echo_headers(j)
    assert j["target"] == TARGET
    sig = iu.exact(h, "X-Moat-Signature")
    assert len(sig) == 1 and SIG.match(sig[0]), h
    t = int(SIG.match(sig[0]).group(1))
    assert t0 - 2 <= t <= time.time() + 2, (t0, t)
    assert iu.exact(h, "X-Tenant-ID") == ["acme"]
    assert iu.exact(h, "X-User-ID") == ["alice"]
    assert iu.exact(h, "X-Session-MFA") == ["1"]
    rc, out = verify(gw, iu.dump_from_echo(j), tmp_path, extra=["--max-skew", "30"])
    assert rc == 0, out
    # the upstream's own request log (path + query, as the verifier also accepts)
    logged = gw.up.requests()[-1]
    rc, out = verify(gw, {"method": logged["method"], "path": logged["path"],
                          "query": logged["query"], "headers": logged["headers"]}, tmp_path)
    assert rc == 0, out
    # the signature is bound to time: far outside the window it fails
    rc, out = verify(gw, iu.dump_from_echo(j), tmp_path, extra=["--now", str(t + 3600)])
    assert rc == 1, out
    # and to the key
    other = iu.make_signing_key(tmp_path, "other.key")
    rc, out = verify(gw, iu.dump_from_echo(j), tmp_path, key=other)
    assert rc == 1, out


# (description, function(dump) -> altered dump)
def _hdr(name, value):
    return lambda d: dict(d, headers=iu.replace_header(d["headers"], name, value))


def _add(name, value):
    return lambda d: dict(d, headers=d["headers"] + [[name, value]])


def _drop(name):
    return lambda d: dict(d, headers=[h for h in d["headers"] if h[0].lower() != name.lower()])


def _sig(fn):
    def alter(d):
        v = [h[1] for h in d["headers"] if h[0].lower() == "x-moat-signature"][0]
        t, mac = SIG.match(v).groups()
        return _hdr("X-Moat-Signature", fn(t, mac))(d)
    return alter


ALTERATIONS = {
    "tenant": _hdr("X-Tenant-ID", "globex"),
    "tenant_case": _hdr("X-Tenant-ID", "ACME"),
    "tenant_removed": _drop("X-Tenant-ID"),
    "user": _hdr("X-User-ID", "mallory"),
    "user_removed": _drop("X-User-ID"),
    "mfa": _hdr("X-Session-MFA", "0"),
    "mfa_removed": _drop("X-Session-MFA"),
    "request_id": _hdr("X-Request-ID", "0" * 32),
    "request_id_removed": _drop("X-Request-ID"),
    "host": _hdr("Host", "other.example.com"),
    "host_port": _hdr("Host", "app.example.com:8443"),
    "method": lambda d: dict(d, method="POST"),
    "method_case": lambda d: dict(d, method="get"),
    "target_path": lambda d: dict(d, target=d["target"].replace("projects", "users")),
    "target_query": lambda d: dict(d, target=d["target"].replace("page=2", "page=3")),
    "target_no_query": lambda d: dict(d, target=d["target"].split("?")[0]),
    "t": _sig(lambda t, mac: "t=%d,v1=%s" % (int(t) + 1, mac)),
    "v1": _sig(lambda t, mac: "t=%s,v1=%s" % (t, ("1" if mac[0] != "1" else "2") + mac[1:])),
    "signature_removed": _drop("X-Moat-Signature"),
    "second_tenant_spelling": _add("X_Tenant_ID", "acme"),
    "second_tenant": _add("X-Tenant-ID", "globex"),
}


@pytest.mark.parametrize("what", sorted(ALTERATIONS))
def test_any_alteration_breaks_the_signature(gw, tmp_path, what):
    _, j = iu.get_json(gw.port, TARGET, [gw.auth], host="app.example.com")
    dump = iu.dump_from_echo(j)
    rc, out = verify(gw, dump, tmp_path)
    assert rc == 0, out
    rc, out = verify(gw, ALTERATIONS[what](dump), tmp_path)
    assert rc == 1, "verification still passes after altering %s: %s" % (what, out)


def test_host_case_is_not_signed(gw, tmp_path):
    """Field 5 is the lower-cased Host: a Host case change keeps the signature valid."""
    _, j = iu.get_json(gw.port, "/x", [gw.auth], host="App.Example.COM")
    assert iu.exact(iu.echo_headers(j), "Host") == ["App.Example.COM"]
    dump = iu.dump_from_echo(j)
    assert verify(gw, dump, tmp_path)[0] == 0
    assert verify(gw, _hdr("Host", "app.example.com")(dump), tmp_path)[0] == 0


@pytest.mark.parametrize("target,other", [
    ("/raw/c%40d%2Bx?x=%20y&z=a+b&z=%2F", "/raw/c@d+x?x= y&z=a b&z=/"),
    ("/raw/c%2bd", "/raw/c%2Bd"),
    ("/raw?z=%2f", "/raw?z=%2F"),
    ("/p?q=1&q=2;param", "/p?q=2&q=1;param"),
    ("/?", "/"),
    ("/items?", "/items"),
    ("/" + "x" * 1500, "/" + "x" * 1499),
])
def test_raw_target_signed_as_sent(gw, tmp_path, target, other):
    """The target is signed byte for byte as sent: a decoded, re-encoded or reordered
    form of it does not verify."""
    _, j = iu.get_json(gw.port, target, [gw.auth])
    assert j["target"] == target, j["target"]
    assert verify(gw, iu.dump_from_echo(j), tmp_path)[0] == 0
    assert verify(gw, iu.dump_from_echo(j, target=other), tmp_path)[0] == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_methods_and_bodies(gw, tmp_path, method):
    r = iu.request(gw.port, method, "/items/7", [gw.auth], body=b'{"a": 1}')
    assert r is not None and r.status == 200, r
    j = r.json()
    assert j["method"] == method and j["body_length"] == 8
    dump = iu.dump_from_echo(j)
    assert verify(gw, dump, tmp_path)[0] == 0
    assert verify(gw, dict(dump, method="GET"), tmp_path)[0] == 1


def test_anonymous_requests_signed_with_empty_identity(gw, tmp_path):
    for path in ("/opt/x", "/anon/x"):
        _, j = iu.get_json(gw.port, path, [("X-Tenant-ID", "acme"), ("X-User-ID", "alice"),
                                           ("X-Session-MFA", "1")])
        h = iu.echo_headers(j)
        assert all(iu.loose(h, n) == [] for n in iu.IDENTITY_HEADERS), h
        dump = iu.dump_from_echo(j)
        assert verify(gw, dump, tmp_path)[0] == 0
        # an anonymous request cannot be turned into acme's by adding headers
        forged = _add("X-Session-MFA", "1")(_add("X-User-ID", "alice")(
            _add("X-Tenant-ID", "acme")(dump)))
        assert verify(gw, forged, tmp_path)[0] == 1


def test_signatures_differ_per_request(gw, tmp_path):
    seen = set()
    for _ in range(3):
        _, j = iu.get_json(gw.port, "/same", [gw.auth])
        h = iu.echo_headers(j)
        seen.add((iu.exact(h, "X-Request-ID")[0], iu.exact(h, "X-Moat-Signature")[0]))
        assert verify(gw, iu.dump_from_echo(j), tmp_path)[0] == 0
    assert len({rid for rid, _ in seen}) == 3 and len({s for _, s in seen}) == 3


def test_cli_header_mode(gw, tmp_path):
    """The --method/--target/--header form of the verifier agrees with --json."""
    import subprocess
    _, j = iu.get_json(gw.port, TARGET, [gw.auth])
    args = [iu.moatctl.PYTHON, iu.VERIFIER, "--key-file", gw.key, "--method", j["method"],
            "--target", j["target"]]
    for k, v in j["headers"]:
        args += ["--header", "%s: %s" % (k, v)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    bad = [a.replace("X-Tenant-ID: acme", "X-Tenant-ID: globex") for a in args]
    p = subprocess.run(bad, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p.stdout + p.stderr


def test_no_signature_without_key(tmp_path, redis_server, upstream,
                                  moat_factory):
    up = upstream("app")
    m = moat_factory(iu.identity_overrides(
        redis=redis_server, upstreams={"app": up},
        routes=[{"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"}]))
    tok = put_session(redis_server, tenant="acme", user="alice", mfa=True)
    _, j = iu.get_json(m.https_port, "/x", [bearer(tok),
                                            ("X-Moat-Signature", "t=1,v1=" + "0" * 64)])
    h = iu.echo_headers(j)
    assert iu.loose_prefix(h, "X-Moat-") == [], h
    assert iu.exact(h, "X-Tenant-ID") == ["acme"]


def test_key_rotation_signs_with_current_key_only(tmp_path, redis_server,
                                                  upstream, moat_factory):
    up = upstream("app")
    old = iu.make_signing_key(tmp_path, "old.key")
    new = iu.make_signing_key(tmp_path, "new.key")
    m = moat_factory(iu.identity_overrides(
        redis=redis_server, upstreams={"app": up},
        identity={"signing_key_file": new, "previous_signing_key_file": old},
        routes=[{"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"}]))
    tok = put_session(redis_server, tenant="acme", user="alice", mfa=True)
    _, j = iu.get_json(m.https_port, "/x", [bearer(tok)])
    dump = iu.dump_from_echo(j)
    assert iu.run_verifier(dump, new, tmp_path)[0] == 0
    assert iu.run_verifier(dump, old, tmp_path)[0] == 1
    assert iu.run_verifier(dump, old, tmp_path, ["--previous-key-file", new])[0] == 0


def test_http10_without_host_still_verifies(gw, tmp_path):
    """HTTP/1.0 may omit Host; moat then writes one for the upstream. What the upstream
    receives must still verify (or the request must be refused), never a signature over a
    Host other than the one the upstream sees."""
    r = iu.raw_request(gw.port, ["GET /x HTTP/1.0", "Authorization: Bearer " + gw.token])
    assert r is not None, "no answer"
    if r.status != 200:
        assert r.status == 400, r
        return
    j = r.json()
    hosts = iu.exact(iu.echo_headers(j), "Host")
    rc, out = verify(gw, iu.dump_from_echo(j), tmp_path)
    assert rc == 0, "upstream got Host %r; verifier: %s" % (hosts, out)
