"""conf/redis-acl.conf and readiness: every Redis of the suite runs moat as that file's
user (redisutil), so the other Redis tests prove it is complete; these tests take one
permission away and check that /readyz says so (503, the command and the feature named)
until the ACL is fixed, and that the next request that succeeds makes moat ready again."""

import http.client

import pytest

import moatctl
from authutil import auth_overrides, get
from redisutil import MOAT_USER, acl_rules, new_token, put_session
from redisutil import call as rcall
from rlutil import one_shot, rl_route


def readyz(m):
    """(status, body) of moat's /readyz."""
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
    try:
        c.request("GET", "/readyz")
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def test_the_file_names_every_feature():
    """Both users exist in the file, and the user starts from nothing (reset)."""
    data = acl_rules(MOAT_USER)
    assert data[:2] == ["reset", "on"], data
    for rule in ("+hgetall", "~moat:sess:*", "+evalsha", "+eval", "~moat:rl:*", "+time",
                 "+client|tracking", "&__redis__:invalidate", "+role", "+cluster|slots",
                 "+asking"):
        assert rule in data, rule
    sentinel = acl_rules("moat-sentinel")
    assert "+sentinel|get-master-addr-by-name" in sentinel and "&+switch-master" in sentinel


def test_refused_hgetall_makes_moat_unready(upstream, start_moat, redis_factory):
    r = redis_factory(acl_without=["+hgetall"], moat_waits=True)
    up = upstream("app")
    m = start_moat(auth_overrides(r.addr), upstream=up)
    assert moatctl.wait_until(lambda: readyz(m)[0] == 200, 10), readyz(m)
    tok = put_session(r)
    assert get(m.https_port, "/echo", token=tok).status == 503
    st, body = readyz(m)
    assert st == 503 and "redis: NOPERM for hgetall (sessions)" in body, (st, body)
    rcall(r, "ACL", "SETUSER", MOAT_USER, "+hgetall")

    def fixed():  # each worker that saw the refusal clears it with its next success
        return get(m.https_port, "/echo", token=tok).status == 200 and readyz(m)[0] == 200
    assert moatctl.wait_until(fixed, 10), readyz(m)
    assert readyz(m)[1] == "ready\n"


RULE = {"key": "ip", "rate": "100/s", "burst": 100, "scope": "global", "id": "acl"}


@pytest.mark.parametrize("missing,reason", [
    ("+evalsha", "redis: NOPERM for evalsha (global rate limits)"),
    # a fresh Redis has no script: EVALSHA answers NOSCRIPT and EVAL is refused, as
    # after a Redis restart
    ("+eval", "redis: NOPERM for eval (global rate limits after a Redis restart)"),
    ("+time", "redis: a command of the rate-limit script refused by the ACL"),
], ids=["evalsha", "eval", "script_command"])
def test_refused_rate_limit_script_makes_moat_unready(upstream, start_moat, redis_factory,
                                                      missing, reason):
    r = redis_factory(acl_without=[missing], moat_waits=True)
    up = upstream("app")
    ov = auth_overrides(r.addr)
    ov["routes"] = [rl_route("/rl", [RULE])] + ov["routes"]
    m = start_moat(ov, upstream=up)
    assert moatctl.wait_until(lambda: readyz(m)[0] == 200, 10), readyz(m)
    # on_store_error: local, so the request itself still passes
    assert one_shot(m.https_port, "/rl/x").status == 200
    assert moatctl.wait_until(lambda: reason in readyz(m)[1], 5), readyz(m)
    assert readyz(m)[0] == 503
    rcall(r, "ACL", "SETUSER", MOAT_USER, missing)

    def fixed():
        return one_shot(m.https_port, "/rl/x").status == 200 and readyz(m)[0] == 200
    assert moatctl.wait_until(fixed, 10), readyz(m)


def test_refused_tracking_makes_moat_unready_until_reconnected(upstream, start_moat,
                                                               redis_factory):
    """CLIENT TRACKING is sent once per connection: after the ACL is fixed, readiness
    returns with the next connection (here: CLIENT KILL USER moat)."""
    r = redis_factory(acl_without=["+client|tracking"], moat_waits=True)
    up = upstream("app")
    m = start_moat(auth_overrides(r.addr, sessions={"push_revocation": True}), upstream=up)
    reason = "redis: NOPERM for client|tracking (push revocation)"
    assert moatctl.wait_until(lambda: reason in readyz(m)[1], 10), readyz(m)
    assert readyz(m)[0] == 503
    # sessions themselves work (the cache is bypassed)
    assert get(m.https_port, "/echo", token=put_session(r)).status == 200
    rcall(r, "ACL", "SETUSER", MOAT_USER, "+client|tracking")
    rcall(r, "CLIENT", "KILL", "USER", MOAT_USER)
    assert moatctl.wait_until(lambda: readyz(m)[0] == 200, 15), readyz(m)
    assert get(m.https_port, "/echo", token=new_token()).status == 401
