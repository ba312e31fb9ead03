"""Global rules when Redis goes away: on_store_error local (rate/N, N = live instances
from the heartbeat), deny (503) and allow; one audit event per outage; decisions fail
fast (circuit breaker) instead of waiting for ratelimit.redis_timeout; recovery when
Redis comes back (the script is loaded again after the restart)."""

import os
import signal
import time

import pytest

import moatctl
import rlutil
from redisutil import call as rcall
from rlutil import Client, retry_after, rl_route, state



@pytest.fixture
def redis_proc(redis_factory):
    """Like the redis_server fixture (moat waits for its workers to connect), but the
    test may kill, stop (SIGSTOP) and restart it: redis_factory stops every incarnation
    by PID at teardown, SIGCONT first."""
    def make(port=None):
        return redis_factory(port=port, moat_waits=True)
    return make


REDIS_TIMEOUT_MS = 300
HEARTBEAT_MS = 300

ROUTES = [
    rl_route("/local", [{"key": "ip", "rate": "1/h", "burst": 10, "scope": "global",
                         "on_store_error": "local", "id": "fb-local"}]),
    rl_route("/deny", [{"key": "ip", "rate": "1/h", "burst": 10, "scope": "global",
                        "on_store_error": "deny", "id": "fb-deny"}]),
    rl_route("/allow", [{"key": "ip", "rate": "1/h", "burst": 10, "scope": "global",
                         "on_store_error": "allow", "id": "fb-allow"}]),
    rl_route("/default", [{"key": "ip", "rate": "1/h", "burst": 4, "scope": "global",
                           "id": "fb-default"}]),  # on_store_error defaults to local
    rl_route("/probe", [{"key": "ip", "rate": "1/h", "burst": 100000, "scope": "global",
                         "on_store_error": "deny", "id": "fb-probe"}]),
    rl_route("/many", [{"key": "ip", "rate": "1/h", "burst": 100000, "scope": "global",
                        "on_store_error": "local", "id": "fb-many"}]),
]


def _config(redis):
    return rlutil.overrides(
        ROUTES, redis=redis,
        ratelimit={"redis_timeout": "%dms" % REDIS_TIMEOUT_MS,
                   "heartbeat": "%dms" % HEARTBEAT_MS})


def _two_instances(upstream, fleet, redis):
    up = upstream("app")
    a = fleet.start(_config(redis), up, "a")
    b = fleet.start(_config(redis), up, "b")
    assert moatctl.wait_until(lambda: rcall(redis, "ZCARD", "moat:rl:instances") == 2, 10)
    # every instance must have beaten at least once since both were in the set, so each
    # knows N = 2 (3 beats: generous for a loaded box; liveness is 3 beats too)
    time.sleep(4 * HEARTBEAT_MS / 1000.0)
    assert rcall(redis, "ZCARD", "moat:rl:instances") == 2
    # sanity: global decisions work through Redis before the outage
    with Client(a.https_port) as c:
        r = c.get("/allow")
        assert r.status == 200 and state(r)[1] == 9, r
    assert rcall(redis, "EXISTS", "moat:rl:fb-allow:127.0.0.1") == 1
    return up, a, b


def _kill(redis):
    os.kill(redis.proc.pid, signal.SIGKILL)
    redis.proc.wait(10)


def test_redis_killed_local_fallback_splits_burst(upstream, fleet, redis_proc):
    """Two live instances, Redis killed: each enforces burst/2 (rate/2) locally, so the
    fleet together still lets about one burst through; one audit event per instance."""
    redis = redis_proc()
    up, a, b = _two_instances(upstream, fleet, redis)
    _kill(redis)
    for m in (a, b):
        with Client(m.https_port) as c:
            got = [c.get("/local") for _ in range(10)]
        statuses = [r.status for r in got]
        assert statuses == [200] * 5 + [429] * 5, (m.config_path, statuses)
        # the fallback decision speaks for the same rule, with its local numbers
        assert [state(r)[1] for r in got[:5]] == [4, 3, 2, 1, 0], got[:5]
        assert all(retry_after(r) > 3000 for r in got[5:]), got[5:]
        with Client(m.https_port) as c:
            statuses = [c.get("/default").status for _ in range(4)]
        assert statuses == [200, 200, 429, 429], (m.config_path, statuses)
    for m in (a, b):
        moatctl.wait_until(lambda: moatctl.audit_events(m, "ratelimit_store_unavailable"), 5)
    time.sleep(0.2)
    for m in (a, b):
        ev = moatctl.audit_events(m, "ratelimit_store_unavailable")
        assert len(ev) == 1, ev


def test_redis_killed_deny_and_allow(upstream, fleet, redis_proc):
    """on_store_error deny answers 503 (Retry-After) without reaching the upstream;
    allow lets everything through, also past the burst."""
    redis = redis_proc()
    up, a, _b = _two_instances(upstream, fleet, redis)
    _kill(redis)
    before = len(up.requests())
    with Client(a.https_port) as c:
        for _ in range(5):
            r = c.get("/deny")
            assert r.status == 503, r
            assert r.header("Retry-After") is not None, r
        got = [c.get("/allow").status for _ in range(30)]
        assert got == [200] * 30, got
    moatctl.wait_until(lambda: len(up.requests()) >= before + 30, 5)
    assert len(up.requests()) == before + 30  # none of the 503s went upstream
    ev = moatctl.audit_events(a, "ratelimit_store_unavailable")
    assert len(ev) == 1, ev


def _latencies(port, path, n):
    out = []
    with Client(port) as c:
        c.get("/nolimit")  # connect first (no rate limit): handshakes are not measured
        for _ in range(n):
            t0 = time.monotonic()
            r = c.get(path)
            out.append(time.monotonic() - t0)
            assert r.status == 200, r
    return out


@pytest.mark.parametrize("how", ["kill", "hang"])
def test_outage_fails_fast(upstream, fleet, redis_proc, how):
    """After Redis is killed (connection refused) or hangs (SIGSTOP: connections are
    accepted by the kernel, nothing answers), requests on global rules do not wait for
    ratelimit.redis_timeout (300 ms) each: the client stops asking while Redis is down.
    Measured: p99 of 100 sequential requests after the outage starts. A hung Redis may
    cost the first request the full timeout (that is how it is detected), which p99 of
    100 leaves out. The bound (200 ms, 2/3 of the timeout) is generous for a loaded
    2-core box, where a request through moat takes a few ms."""
    redis = redis_proc()
    up, a, _b = _two_instances(upstream, fleet, redis)
    if how == "kill":
        _kill(redis)
    else:
        os.kill(redis.proc.pid, signal.SIGSTOP)
    lat = _latencies(a.https_port, "/many", 100)
    p50 = rlutil.percentile(lat, 50)
    p99 = rlutil.percentile(lat, 99)
    slow = sum(1 for x in lat if x >= REDIS_TIMEOUT_MS / 1000.0)
    msg = ("p50 %.1f ms, p99 %.1f ms, %d of 100 took >= the Redis timeout; sorted tail: %s"
           % (p50 * 1000, p99 * 1000, slow, ["%.0f" % (x * 1000) for x in sorted(lat)[-5:]]))
    assert p99 < 0.200 and p50 < 0.100, msg
    assert slow <= 1, msg
    # even the request that detects a hung Redis is bounded by the timeout (+ slack)
    assert max(lat) < REDIS_TIMEOUT_MS / 1000.0 + 1.5, msg
    ev = moatctl.audit_events(a, "ratelimit_store_unavailable")
    assert len(ev) == 1, ev


def test_recovery_after_redis_restart(upstream, fleet, redis_proc):
    """Redis restarted (empty, no scripts loaded): within the reconnect backoff global
    decisions go back to Redis (state keys reappear, the count is shared again), and
    the recovery is audited once."""
    redis = redis_proc()
    up, a, b = _two_instances(upstream, fleet, redis)
    port = redis.port
    _kill(redis)
    with Client(a.https_port) as c:
        assert c.get("/local").status == 200  # local fallback
    redis2 = redis_proc(port=port)

    def back():
        with Client(a.https_port) as c:
            c.get("/allow")
        return rcall(redis2, "EXISTS", "moat:rl:fb-allow:127.0.0.1") == 1

    assert moatctl.wait_until(back, 15, interval=0.2), "moat never used Redis again"
    # every worker of both instances reconnects (each has its own connection and
    # backoff): 10 fresh connections in a row to each instance are decided in Redis
    def all_back():
        for m in (a, b):
            for _ in range(10):
                if rlutil.one_shot(m.https_port, "/probe").status != 200:
                    return False
        return True

    assert moatctl.wait_until(all_back, 20, interval=0.2), "a worker never reconnected"
    assert moatctl.wait_until(lambda: rcall(redis2, "ZCARD", "moat:rl:instances") == 2, 10)
    # the two instances share one bucket again
    with Client(a.https_port) as ca, Client(b.https_port) as cb:
        rs = [(ca if i % 2 else cb).get("/deny") for i in range(12)]
    assert [r.status for r in rs] == [200] * 10 + [429] * 2, rs
    _wait_recovered(a)
    assert len(moatctl.audit_events(a, "ratelimit_store_unavailable")) == 1
    assert len(moatctl.audit_events(a, "ratelimit_store_recovered")) == 1


def _wait_recovered(m):
    """The recovery is audited on the first decision made in Redis after 3 s without
    failures (workers reconnect at different times; one event per outage)."""
    def seen():
        rlutil.one_shot(m.https_port, "/probe")
        return moatctl.audit_events(m, "ratelimit_store_recovered")
    assert moatctl.wait_until(seen, 15, interval=0.25), "recovery never audited"


def test_one_audit_event_per_outage_across_workers(upstream, fleet, redis_proc):
    """Both workers (fresh connections spread by SO_REUSEPORT) see the outage and the
    recovery at slightly different times: still one ratelimit_store_unavailable and one
    ratelimit_store_recovered for the outage, not one per worker or per flap."""
    redis = redis_proc()
    up, a, _b = _two_instances(upstream, fleet, redis)
    port = redis.port
    _kill(redis)
    # long enough (3 s) for the reconnect backoff (capped at 2 s, jittered) to differ
    # between the workers, so they come back at different times
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        assert rlutil.one_shot(a.https_port, "/probe").status == 503
    redis2 = redis_proc(port=port)
    deadline = time.monotonic() + 20
    ok_in_row = 0
    while ok_in_row < 20 and time.monotonic() < deadline:
        st = rlutil.one_shot(a.https_port, "/probe").status
        ok_in_row = ok_in_row + 1 if st == 200 else 0
        time.sleep(0.02)
    assert ok_in_row >= 20, "not every worker came back"
    assert rcall(redis2, "EXISTS", "moat:rl:fb-probe:127.0.0.1") == 1
    _wait_recovered(a)
    for _ in range(10):
        assert rlutil.one_shot(a.https_port, "/probe").status == 200
    down = moatctl.audit_events(a, "ratelimit_store_unavailable")
    up_ev = moatctl.audit_events(a, "ratelimit_store_recovered")
    assert (len(down), len(up_ev)) == (1, 1), (down, up_ev)
