"""Global rate limits (scope: global) against a real redis-server: one limit shared by
two moat instances, the state and heartbeat in Redis, per-tenant overrides without
reload, keys that never hold a raw secret."""

import hashlib
import os
import signal
import socket
import threading
import time


import moatctl
import rlutil
from moatctl import bearer
from redisutil import call as rcall
from redisutil import put_session
from rlutil import Client, policy, retry_after, rl_route, state



# Generous Redis timeouts: these tests are about exact shared counts, and a decision
# that times out on a loaded box falls back to the local table (checked below).
RL_SETTINGS = {"redis_timeout": "2s", "heartbeat": "300ms"}


def _no_outage(*moats):
    for m in moats:
        ev = moatctl.audit_events(m, "ratelimit_store_unavailable")
        assert not ev, "Redis was unavailable during the test (%s): %r\n%s" % (
            m.config_path, ev, m.stderr())


def wait_instances(redis, n, timeout=10):
    got = moatctl.wait_until(lambda: rcall(redis, "ZCARD", "moat:rl:instances") == n, timeout)
    assert got, "moat:rl:instances: %r" % rcall(redis, "ZRANGE", "moat:rl:instances", 0, -1)


def test_two_instances_share_one_global_limit(upstream, fleet, redis_server):
    """burst 200, rate 1/h, 400 requests alternating between two instances (4 clients
    in parallel): 200 pass (+-2 %), and the remaining count is one sequence."""
    up = upstream("app")
    rule = {"key": "ip", "rate": "1/h", "burst": 200, "scope": "global", "id": "shared"}
    ov = rlutil.overrides([rl_route("/g", [rule])], redis=redis_server, ratelimit=RL_SETTINGS)
    a = fleet.start(ov, up, "a")
    b = fleet.start(ov, up, "b")
    wait_instances(redis_server, 2)
    results = []
    lock = threading.Lock()

    def client(k):
        with Client(a.https_port) as ca, Client(b.https_port) as cb:
            for i in range(100):
                r = (ca if i % 2 == 0 else cb).get("/g")
                with lock:
                    results.append(r)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert len(results) == 400
    statuses = [r.status for r in results]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    passed = statuses.count(200)
    assert abs(passed - 200) <= 4, "passed %d of 400 (burst 200)" % passed
    _no_outage(a, b)
    # both instances took part in passing and refusing
    remaining = sorted(state(r)[1] for r in results if r.status == 200)
    assert remaining == list(range(200 - passed, 200)), remaining[:10]
    for r in results:
        if r.status == 429:
            assert retry_after(r) >= 3500 and policy(r) == ("shared", 200, 720000), r
    ttl = rcall(redis_server, "PTTL", "moat:rl:shared:127.0.0.1")
    assert isinstance(ttl, int) and 0 < ttl <= 200 * 3600 * 1000, ttl


def test_global_limit_exact_under_concurrency(upstream, fleet, redis_server):
    """burst 50, rate 1/h, global: 200 requests released at once over 200 connections
    to two instances (2 workers each, 4 Redis connections): exactly 50 pass."""
    up = upstream("app")
    rule = {"key": "ip", "rate": "1/h", "burst": 50, "scope": "global", "id": "gconc"}
    ov = rlutil.overrides([rl_route("/g", [rule])], redis=redis_server, ratelimit=RL_SETTINGS)
    a = fleet.start(ov, up, "a")
    b = fleet.start(ov, up, "b")
    wait_instances(redis_server, 2)
    results = rlutil.parallel_requests([a.https_port, b.https_port], 200, "/g")
    bad = [r for r in results if not hasattr(r, "status")]
    assert not bad, "requests failed: %r" % bad[:5]
    statuses = [r.status for r in results]
    assert (statuses.count(200), statuses.count(429)) == (50, 150), sorted(set(statuses))
    assert sorted(state(r)[1] for r in results if r.status == 200) == list(range(50))
    _no_outage(a, b)


class Monitor:
    """Records the commands Redis runs (MONITOR) on a background thread."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=30)
        self.sock.sendall(b"MONITOR\r\n")
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.data += chunk
        except OSError:
            return

    def lines(self, needle):
        """Stops monitoring; the recorded command lines that contain needle."""
        time.sleep(0.2)
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        return [ln for ln in self.data.split(b"\r\n") if needle in ln]


def test_requests_for_one_key_share_redis_calls(upstream, fleet, redis_server):
    """While a decision for a key is in flight, later requests for that key wait and
    go together as the next call (n requests, the first that fit pass). Redis is paused
    so that all 40 requests arrive during the first call: at most two script calls
    decide them, still exactly burst 10 pass, in order, and the rejected ones consume
    nothing."""
    up = upstream("app")
    rule = {"key": "ip", "rate": "1/h", "burst": 10, "scope": "global", "id": "gbatch"}
    warm = dict(rule, id="gwarm")
    ov = rlutil.overrides([rl_route("/g", [rule]), rl_route("/w", [warm])], redis=redis_server,
                          ratelimit=RL_SETTINGS, workers=1)
    a = fleet.start(ov, up, "a")
    wait_instances(redis_server, 1)
    with Client(a.https_port) as c:  # loads the script: no NOSCRIPT retry below
        assert c.get("/w").status == 200
    mon = Monitor(redis_server)

    def pause():  # the heartbeat, the first decision and the rest all wait 400 ms
        assert rcall(redis_server, "CLIENT", "PAUSE", "400", "ALL") == "OK"

    results = rlutil.parallel_requests(a.https_port, 40, "/g", ready=pause)
    bad = [r for r in results if not hasattr(r, "status")]
    assert not bad, "requests failed: %r" % bad[:5]
    statuses = [r.status for r in results]
    assert (statuses.count(200), statuses.count(429)) == (10, 30), sorted(set(statuses))
    assert sorted(state(r)[1] for r in results if r.status == 200) == list(range(10))
    calls = mon.lines(b'"moat:rl:gbatch:127.0.0.1"')
    # the requests of the first loop turn, then all that came while that call waited
    ns = [int(ln.split(b'" "')[7]) for ln in calls if b'"EVALSHA"' in ln or b'"EVAL"' in ln]
    assert 1 <= len(ns) <= 2 and sum(ns) == 40, calls
    # 30 rejected in a batch consumed nothing: the bucket is exactly 10 deep
    tat, iv = (int(x) for x in rcall(redis_server, "GET", "moat:rl:gbatch:127.0.0.1").split(b":"))
    now_us = int(time.time() * 1e6)
    assert iv == 3600 * 10**6 and abs((tat - now_us) - 10 * iv) < 60 * 10**6, (tat, now_us)
    _no_outage(a)


def test_requests_for_many_keys_share_a_redis_call(upstream, fleet, redis_server):
    """Decisions for different keys made in one event-loop turn go to Redis as one
    script call, one group per key, and each verdict reaches its own request. moat is
    stopped while 30 requests with 30 X-Client keys arrive (half of the keys already
    used up), so it reads them all in one or two turns: at most two calls decide
    them, and exactly the fresh half passes."""
    up = upstream("app")
    rule = {"key": "header:X-Client", "rate": "1/h", "burst": 2, "scope": "global",
            "id": "gkeys"}
    ov = rlutil.overrides([rl_route("/g", [rule])], redis=redis_server, ratelimit=RL_SETTINGS,
                          workers=1)
    a = fleet.start(ov, up, "a")
    wait_instances(redis_server, 1)
    with Client(a.https_port) as c:  # keys c0..c14 used up (and the script loaded)
        for i in range(15):
            for _ in range(2):
                assert c.get("/g", [("X-Client", "c%d" % i)]).status == 200
    mon = Monitor(redis_server)

    def stop():
        os.kill(a.pid, signal.SIGSTOP)
        threading.Timer(1.0, os.kill, (a.pid, signal.SIGCONT)).start()

    try:
        results = rlutil.parallel_requests(a.https_port, 30, "/g", ready=stop,
                                           headers=lambda i: [("X-Client", "c%d" % i)])
    finally:
        os.kill(a.pid, signal.SIGCONT)
    statuses = [getattr(r, "status", r) for r in results]
    assert statuses == [429] * 15 + [200] * 15, statuses
    assert all(state(r)[1] == 1 for r in results[15:]), [state(r) for r in results[15:]]
    calls = [ln for ln in mon.lines(b'"moat:rl:gkeys:#')
             if b'"EVALSHA"' in ln or b'"EVAL"' in ln]
    groups = [int(ln.split(b'" "')[2]) // 2 for ln in calls]
    assert 1 <= len(calls) <= 2 and sum(groups) == 30, calls
    _no_outage(a)


def test_global_state_and_heartbeat_in_redis(upstream, fleet, redis_server):
    """The state key is moat:rl:<id>:<key> with a PX equal to the reset time; the
    heartbeat set counts live instances; a header key (an API key: a secret) is stored
    as a digest, never verbatim."""
    up = upstream("app")
    ov = rlutil.overrides([
        rl_route("/s", [{"key": "ip", "rate": "1/s", "burst": 5, "scope": "global",
                         "id": "st"}]),
        rl_route("/k", [{"key": "header:X-Api-Key", "rate": "1/m", "burst": 3,
                         "scope": "global", "id": "apikey"}]),
    ], redis=redis_server, ratelimit=RL_SETTINGS)
    a = fleet.start(ov, up, "a")
    b = fleet.start(ov, up, "b")
    wait_instances(redis_server, 2)
    members = rcall(redis_server, "ZRANGE", "moat:rl:instances", 0, -1)
    assert len(set(members)) == 2, members
    assert 0 < rcall(redis_server, "PTTL", "moat:rl:instances") <= 2 * 3 * 300 + 50
    with Client(a.https_port) as c:
        for i in range(3):
            r = c.get("/s")
            assert r.status == 200 and state(r)[1] == 4 - i, r
        ttl = rcall(redis_server, "PTTL", "moat:rl:st:127.0.0.1")
        assert 1000 < ttl <= 3000, ttl  # 3 used at 1/s: full again in <= 3 s
        val = rcall(redis_server, "GET", "moat:rl:st:127.0.0.1")
        tat, interval = val.split(b":")
        assert int(interval) == 1000000, val
        # the key vanishes once the bucket is full again (bounded wait)
        assert moatctl.wait_until(
            lambda: rcall(redis_server, "EXISTS", "moat:rl:st:127.0.0.1") == 0, 6)

        secret = "sk_live_" + "Zq9" * 10
        r = c.get("/k", [("X-Api-Key", secret)])
        assert r.status == 200 and state(r) == ("apikey", 2, 60), r
    with Client(b.https_port) as c:
        r = c.get("/k", [("X-Api-Key", secret)])
        assert r.status == 200 and state(r)[1] == 1, r  # shared with instance a
    keys = [k.decode() for k in rcall(redis_server, "KEYS", "moat:rl:apikey:*")]
    assert len(keys) == 1, keys
    assert secret not in keys[0], "raw API key in a Redis key name: %s" % keys[0]
    # exactly this name: instances of different versions share it during a rolling upgrade
    assert keys[0] == "moat:rl:apikey:#" + hashlib.sha256(secret.encode()).hexdigest()[:32], keys
    _no_outage(a, b)


def _passes_after_override(c, token):
    """The first request after an override to a fast rate is allowed, or refused with
    the rescaled debt (<= 1 ms: Retry-After 1); 50 ms later one passes."""
    r = c.get("/t", [bearer(token)])
    if r.status == 429:
        assert retry_after(r) == 1 and state(r)[2] <= 1, "override ignored: %r" % r
        time.sleep(0.05)  # > the debt
        r = c.get("/t", [bearer(token)])
    assert r.status == 200, "override ignored: %r" % r


def test_tenant_override_takes_effect_without_reload(upstream, fleet, redis_server):
    """key: tenant, rate 1/h, burst 1: the tenant is exhausted (Retry-After ~1 h);
    HSET moat:rl:override:<id> <tenant> 1000/s applies on the next request, without a
    reload; another tenant keeps the default; HDEL restores it.

    docs/ratelimit.md: an override rescales the outstanding debt (one request owed at
    1/h becomes one owed at 1000/s, 1 ms), so the next request is either allowed or
    told to retry in 1 ms (Retry-After: 1, the smallest delta-seconds); never ~1 h."""
    up = upstream("app")
    ov = rlutil.overrides(
        [rl_route("/t", [{"key": "tenant", "rate": "1/h", "burst": 1, "scope": "global",
                          "id": "tenant-api"}], auth="required")],
        redis=redis_server, ratelimit=RL_SETTINGS)
    m = fleet.start(ov, up, "a")
    acme = put_session(redis_server, tenant="acme", user="u1", mfa=1)
    acme2 = put_session(redis_server, tenant="acme", user="u2", mfa=1)
    globex = put_session(redis_server, tenant="globex", user="u1", mfa=1)
    with Client(m.https_port) as c:
        assert c.get("/t", [bearer(acme)]).status == 200
        r = c.get("/t", [bearer(acme2)])  # same tenant, other session: same bucket
        assert r.status == 429 and retry_after(r) > 3000, r
        assert c.get("/t", [bearer(globex)]).status == 200
        assert c.get("/t", [bearer(globex)]).status == 429

        assert rcall(redis_server, "HSET", "moat:rl:override:tenant-api", "acme", "1000/s") == 1
        _passes_after_override(c, acme)
        # 1000/s, burst 1: a few spaced requests all pass
        for _ in range(3):
            time.sleep(0.01)
            assert c.get("/t", [bearer(acme2)]).status == 200
        # globex has no override
        r = c.get("/t", [bearer(globex)])
        assert r.status == 429 and retry_after(r) > 3000, r

        assert rcall(redis_server, "HDEL", "moat:rl:override:tenant-api", "acme") == 1
        # back to 1/h: a 429 comes back at once (at 1000/s these would pass). Its
        # Retry-After is the outstanding debt rescaled to 1/h (docs/ratelimit.md), so any
        # part of an hour, depending on how much of the last 1 ms had passed.
        got = [c.get("/t", [bearer(acme)]) for _ in range(2)]
        assert 429 in [g.status for g in got], got
        assert all(1 <= retry_after(g) <= 3600 for g in got if g.status == 429), got
    # per second as a plain number works too
    assert rcall(redis_server, "HSET", "moat:rl:override:tenant-api", "globex", "500") == 1
    with Client(m.https_port) as c:
        _passes_after_override(c, globex)
    # no reload happened: one process, never signalled
    assert m.alive()
    _no_outage(m)


def test_session_key_is_token_hash(upstream, fleet, redis_server):
    """key: session, global: the Redis key is the hex SHA-256 of the token (the same as
    the session key), never the raw token; two sessions of one tenant count apart."""
    up = upstream("app")
    ov = rlutil.overrides(
        [rl_route("/p", [{"key": "session", "rate": "1/h", "burst": 2, "scope": "global",
                          "id": "persess"}], auth="required")],
        redis=redis_server, ratelimit=RL_SETTINGS)
    m = fleet.start(ov, up, "a")
    t1 = put_session(redis_server, tenant="acme", user="u1", mfa=1)
    t2 = put_session(redis_server, tenant="acme", user="u2", mfa=1)
    with Client(m.https_port) as c:
        assert [c.get("/p", [bearer(t1)]).status for _ in range(3)] == [200, 200, 429]
        assert [c.get("/p", [bearer(t2)]).status for _ in range(3)] == [200, 200, 429]
        # no session: not counted by a session rule (auth answers 401 first)
        assert c.get("/p").status == 401
    keys = sorted(k.decode() for k in rcall(redis_server, "KEYS", "moat:rl:persess:*"))
    want = sorted("moat:rl:persess:" + hashlib.sha256(t.encode()).hexdigest() for t in (t1, t2))
    assert keys == want
    _no_outage(m)


def test_graceful_stop_leaves_heartbeat_set(upstream, fleet, redis_server):
    """docs/ratelimit.md: on graceful shutdown an instance removes itself from
    moat:rl:instances so the others see N drop at once (not after 3 missed beats)."""
    up = upstream("app")
    ov = rlutil.overrides(
        [rl_route("/g", [{"key": "ip", "rate": "1/s", "burst": 5, "scope": "global"}])],
        redis=redis_server, ratelimit={"redis_timeout": "2s", "heartbeat": "2s"})
    a = fleet.start(ov, up, "a")
    b = fleet.start(ov, up, "b")
    wait_instances(redis_server, 2, timeout=15)
    assert b.stop() == 0
    # liveness is 3 beats (6 s) and b beat at most 2 s ago: only an explicit ZREM
    # removes b within the 3 s below
    assert moatctl.wait_until(lambda: rcall(redis_server, "ZCARD", "moat:rl:instances") == 1, 3), \
        "a stopped instance must ZREM itself from moat:rl:instances (docs/ratelimit.md)"
    assert a.alive()
