"""Redis Sentinel (redis.mode: sentinel): moat knows only the sentinels, asks them for
the master, and follows a failover (SENTINEL FAILOVER, or the master SIGKILLed) with a
bounded number of 503s: never a 401 for a valid session, never a 200 for an unknown
token. Sessions deleted on the new master stop working, global rate limits keep their
count, and with every sentinel down moat fails closed.

Each test starts a master, a replica and three sentinels (quorum 2, down-after
1000 ms) through the redis_sentinels fixture; every process is stopped by PID."""

import os
import threading
import time

import moatctl
import rlutil
from authutil import Client, auth_overrides, get, identity, poll, wait_sessions_ready
from moatctl import metrics
from redisutil import call as rcall
from redisutil import client_names, delete_session, new_token, put_session, session_key

MASTER = "mymaster"

# ---- time bounds (seconds unless said otherwise) ------------------------------------

# redis.timeout and redis.connect_timeout of these tests: each sentinel gets this long
# to answer, and a master that stopped answering is noticed within it.
REDIS_TIMEOUT = "500ms"
REDIS_TIMEOUT_S = 0.5
# sessions.cache_ttl: small, so that a lookup reaches Redis about every second.
CACHE_TTL = "1s"
CACHE_TTL_S = 1.0
# The request loop: one authenticated request every LOOP_INTERVAL (~20 req/s) on a
# kept-alive connection, for LOOP_SECONDS; the failover is asked for LOOP_LEAD in.
LOOP_INTERVAL = 0.05
LOOP_SECONDS = 20.0
LOOP_LEAD = 3.0
# An unknown token is checked every UNKNOWN_EVERY-th request of the loop.
UNKNOWN_EVERY = 5
# After the sentinels agree on the new master, every valid request is 200 again within
# this: the +switch-master message (or the next reconnect, backoff <= 2 s) makes moat
# resolve again, then one connect and handshake.
RECOVERY_AFTER_SWITCH = 5.0
# SENTINEL FAILOVER: the sentinels report the new master within this.
FAILOVER_ELECTED = 15.0
# SIGKILL: down-after-milliseconds (1 s) + the vote and the promotion.
KILL_ELECTED = 20.0
# Of the valid requests of the loop, at most this share is not 200 (all of them 503).
# SENTINEL FAILOVER: the old master is demoted and keeps answering reads until moat
# moves, so the window is at most the reconnect (measured: 0 of ~320).
MAX_NON200_FAILOVER = 0.06
# SIGKILL: the master is gone for down-after (1 s) + election (1-3 s) + recovery
# (measured: ~6 %, the switch 2.3 s after the kill).
MAX_NON200_KILL = 0.25
# Every sentinel down: a request fails closed (503) within the command timeout, plus
# slack for a loaded machine.
ALL_DOWN_503_WITHIN = REDIS_TIMEOUT_S + 2.0
# Generous deadline for moat's clients to show up on a Redis (CLIENT LIST).
CLIENTS_CONNECTED = 15.0


def sentinel_overrides(ss, redis=None, sessions=None, **top):
    """auth_overrides() with mode: sentinel and the sentinels of ss (no redis.address)."""
    r = {"mode": "sentinel", "timeout": REDIS_TIMEOUT, "connect_timeout": REDIS_TIMEOUT,
         "sentinel": {"addresses": ss.addresses, "master_name": ss.name}}
    r.update(redis or {})
    s = {"cache_ttl": CACHE_TTL}
    s.update(sessions or {})
    ov = auth_overrides(None, redis=r, sessions=s, **top)
    del ov["redis"]["address"]
    return ov


def wait_clients_on(redis, names, timeout=CLIENTS_CONNECTED):
    """Waits until redis' CLIENT LIST shows at least the given count of each name."""
    def ok():
        got = client_names(redis)
        return all(got.count(n) >= k for n, k in names.items())
    assert moatctl.wait_until(ok, timeout, interval=0.1), \
        "clients on %s: %r (wanted %r)" % (redis.addr, client_names(redis), names)


def start_moat_on(start_moat, upstream, ss, workers=2, **kw):
    up = upstream("app")
    m = start_moat(sentinel_overrides(ss, workers=workers, **kw), upstream=up)
    wait_sessions_ready(m, ss.primary, workers=workers)
    return m


# ---- basics --------------------------------------------------------------------------

def test_sentinel_mode_authenticates(upstream, start_moat, redis_sentinels):
    ss = redis_sentinels()
    m = start_moat_on(start_moat, upstream, ss)
    tok = put_session(ss.primary, tenant="acme", user="alice")
    assert identity(get(m.https_port, "/echo", token=tok))["X-User-ID"] == ["alice"]
    assert get(m.https_port, "/echo", token=new_token()).status == 401
    assert "redis: master %s is 127.0.0.1:%d" % (MASTER, ss.primary.port) in m.stderr()
    assert metrics(m).get("moat_redis_sentinel_queries_total", 0) >= 2  # one per worker
    # nothing reached the replica: ROLE checked the address
    assert "moat" not in client_names(ss.replica)


# ---- failover under load --------------------------------------------------------------

class Loop(threading.Thread):
    """~20 req/s on one kept-alive connection: the valid token, and every
    UNKNOWN_EVERY-th request a fresh unknown one. Records (t, kind, status)."""

    def __init__(self, port, token):
        super().__init__(daemon=True)
        self.port = port
        self.token = token
        self.results = []
        self.error = None
        self.stop_at = time.monotonic() + LOOP_SECONDS

    def run(self):
        try:
            with Client(self.port) as c:
                i = 0
                while time.monotonic() < self.stop_at:
                    t0 = time.monotonic()
                    unknown = i % UNKNOWN_EVERY == UNKNOWN_EVERY - 1
                    r = c.get("/echo", token=new_token() if unknown else self.token)
                    self.results.append((t0, "unknown" if unknown else "valid", r.status))
                    i += 1
                    # pacing of the loop, not a wait for a condition
                    time.sleep(max(0.0, LOOP_INTERVAL - (time.monotonic() - t0)))
        except Exception as e:  # reported by the test
            self.error = e


def run_failover(m, ss, action, elected_within):
    """Runs the loop, calls action() LOOP_LEAD into it, waits for the sentinels to agree on
    a new master. Returns (loop, t_action, t_switch, new_master)."""
    old = ss.primary
    tok = put_session(old, tenant="acme", user="alice")
    # the session reached the replica (which becomes the master)
    assert moatctl.wait_until(lambda: rcall(ss.replica, "EXISTS", session_key(tok)) == 1, 5.0)
    loop = Loop(m.https_port, tok)
    loop.start()
    assert moatctl.wait_until(lambda: len(loop.results) > 0 or loop.error, 10.0)
    time.sleep(LOOP_LEAD)  # steady state before the failover: part of the scenario
    t_action = time.monotonic()
    action()
    new = [None]

    def switched():
        a = ss.agreed_master()
        if a is not None and a is not old:
            new[0] = a
            return True
        return False
    assert moatctl.wait_until(switched, elected_within, interval=0.05), \
        "no new master within %.0fs:\n%s" % (elected_within, ss.sentinels[0].log()[-3000:])
    t_switch = time.monotonic()
    loop.join(LOOP_SECONDS + 30)
    assert not loop.is_alive() and loop.error is None, loop.error
    return loop, t_action, t_switch, new[0]


def check_loop(m, loop, t_action, t_switch, max_share, label):
    valid = [(t, s) for t, k, s in loop.results if k == "valid"]
    unknown = [(t, s) for t, k, s in loop.results if k == "unknown"]
    assert len(valid) >= 0.5 * LOOP_SECONDS / LOOP_INTERVAL * (UNKNOWN_EVERY - 1) / UNKNOWN_EVERY, \
        "the loop ran too slowly: %d valid requests" % len(valid)
    statuses = {s for _, s in valid}
    assert statuses <= {200, 503}, "valid session got %r" % sorted(statuses)
    assert {s for _, s in unknown} <= {401, 503}, \
        "unknown token got %r" % sorted({s for _, s in unknown})
    non200 = [(t, s) for t, s in valid if s != 200]
    share = len(non200) / len(valid)
    late = [round(t - t_switch, 2) for t, s in non200 if t > t_switch + RECOVERY_AFTER_SWITCH]
    assert not late, "503 later than %.0fs after the switch: %r" % (RECOVERY_AFTER_SWITCH, late)
    last_bad = max((t for t, _ in non200), default=t_action)
    report = ("%s: %d valid requests, %d not 200 (%.1f%%), %d unknown-token checks; "
              "switch %.2fs after the action, last 503 %.2fs after the switch"
              % (label, len(valid), len(non200), 100 * share, len(unknown),
                 t_switch - t_action, last_bad - t_switch))
    print(report)
    with open(os.path.join(os.path.dirname(m.config_path), "failover-report.txt"), "a") as f:
        f.write(report + "\n")
    assert share <= max_share, report
    return report


def test_failover_under_load(upstream, start_moat, redis_sentinels):
    ss = redis_sentinels()
    m = start_moat_on(start_moat, upstream, ss)
    loop, t_action, t_switch, new = run_failover(
        m, ss, lambda: rcall(ss.sentinels[0], "SENTINEL", "FAILOVER", MASTER), FAILOVER_ELECTED)
    assert new is ss.replica
    check_loop(m, loop, t_action, t_switch, MAX_NON200_FAILOVER, "SENTINEL FAILOVER")
    assert moatctl.wait_until(
        lambda: "redis: master %s is now 127.0.0.1:%d (was 127.0.0.1:%d)"
        % (MASTER, ss.replica.port, ss.primary.port) in m.stderr(), 5.0), m.stderr()
    assert metrics(m).get("moat_redis_failovers_total", 0) >= 1


def test_master_killed_under_load(upstream, start_moat, redis_sentinels):
    ss = redis_sentinels()
    m = start_moat_on(start_moat, upstream, ss)
    loop, t_action, t_switch, new = run_failover(m, ss, ss.primary.kill, KILL_ELECTED)
    assert new is ss.replica
    check_loop(m, loop, t_action, t_switch, MAX_NON200_KILL, "master SIGKILLed")
    assert "redis: master %s is now 127.0.0.1:%d" % (MASTER, ss.replica.port) in m.stderr()


# ---- after a failover -------------------------------------------------------------------

def failover_and_wait(ss, m, names):
    old = ss.primary
    rcall(ss.sentinels[0], "SENTINEL", "FAILOVER", MASTER)
    assert moatctl.wait_until(lambda: ss.agreed_master() is ss.replica, FAILOVER_ELECTED,
                              interval=0.1)
    wait_clients_on(ss.replica, names)
    return old


def test_session_deleted_on_new_master(upstream, start_moat, redis_sentinels):
    ss = redis_sentinels()
    m = start_moat_on(start_moat, upstream, ss, workers=1)
    tok = put_session(ss.primary, tenant="acme", user="alice")
    failover_and_wait(ss, m, {"moat": 1})
    with Client(m.https_port) as c:
        ok, _ = poll(lambda: c.get("/echo", token=tok).status == 200, RECOVERY_AFTER_SWITCH)
        assert ok, "the session did not work on the new master"
        delete_session(ss.replica, tok)
        # the cached decision lives at most cache_ttl; a little slack for the loop
        gone, elapsed = poll(lambda: c.get("/echo", token=tok).status == 401,
                             CACHE_TTL_S + 1.0)
        assert gone, "deleted session still accepted %.1fs later" % elapsed


def test_push_revocation_follows_the_new_master(upstream, start_moat, redis_sentinels):
    """The revocation connection moves too (its reconnect drops the cache), and a
    deletion on the new master is pushed: with cache_ttl 5m it stops at once."""
    ss = redis_sentinels()
    m = start_moat_on(start_moat, upstream, ss, workers=1,
                      sessions={"push_revocation": True, "cache_ttl": "5m"})
    tok = put_session(ss.primary, tenant="acme", user="alice")
    failover_and_wait(ss, m, {"moat": 1, "moat-revocation": 1})
    with Client(m.https_port) as c:
        ok, _ = poll(lambda: c.get("/echo", token=tok).status == 200, RECOVERY_AFTER_SWITCH)
        assert ok
        # the tracking channel reports live after SUBSCRIBE's confirmation
        assert moatctl.wait_until(
            lambda: c.get("/echo", token=tok).status == 200
            and metrics(m).get("moat_auth_cache_hits_total", 0) > 0, 5.0)
        delete_session(ss.replica, tok)
        gone, elapsed = poll(lambda: c.get("/echo", token=tok).status == 401, 2.0)
        assert gone, "revocation did not reach moat from the new master"


def test_global_rate_limit_after_failover(upstream, start_moat, redis_sentinels):
    """burst 20, rate 1/h, scope global: after the failover moat's rate-limit client is
    on the new master and 40 requests pass 20 (+-2)."""
    ss = redis_sentinels()
    rule = {"key": "ip", "rate": "1/h", "burst": 20, "scope": "global", "id": "after"}
    ov = sentinel_overrides(ss, workers=1, ratelimit={"redis_timeout": "2s",
                                                     "heartbeat": "300ms"})
    ov["routes"] = [rlutil.rl_route("/g", [rule])] + ov["routes"]
    up = upstream("app")
    m = start_moat(ov, upstream=up)
    wait_sessions_ready(m, ss.primary, workers=1)
    failover_and_wait(ss, m, {"moat": 1, "moat-ratelimit": 1})
    statuses = []
    with rlutil.Client(m.https_port) as c:
        for _ in range(40):
            statuses.append(c.get("/g").status)
    assert set(statuses) <= {200, 429}, statuses
    assert abs(statuses.count(200) - 20) <= 2, statuses


# ---- everything down ---------------------------------------------------------------------

def test_all_sentinels_down_fails_closed(upstream, start_moat, redis_sentinels):
    ss = redis_sentinels()
    m = start_moat_on(start_moat, upstream, ss, workers=1)
    tok = put_session(ss.primary)
    for s in ss.sentinels:
        s.kill()
    ss.primary.kill()
    ss.replica.kill()
    # the cached decision (cache_ttl 1s) may still pass; then 503 only
    statuses = []
    t_end = time.monotonic() + CACHE_TTL_S + 3.0
    with Client(m.https_port) as c:
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            r = c.get("/echo", token=tok)
            statuses.append(r.status)
            assert time.monotonic() - t0 <= ALL_DOWN_503_WITHIN, "answer took too long"
            u = c.get("/echo", token=new_token())
            assert u.status == 503, u
            time.sleep(LOOP_INTERVAL)  # pacing
        assert statuses[-1] == 503, statuses
        assert set(statuses) <= {200, 503}, statuses
        assert c.get("/echo", token=tok).header("Retry-After")
    assert moatctl.wait_until(lambda: "no sentinel gave the address" in m.stderr(), 10.0), \
        m.stderr()


# ---- config errors -------------------------------------------------------------------------

def config_errors(tmp_path, redis):
    path, _ = moatctl.write_config(tmp_path, {"redis": redis})
    r = moatctl.run_moat(["-t", "-c", path])
    return r.returncode, r.stdout + r.stderr


def test_config_sentinel_needs_addresses_and_name(tmp_path):
    rc, out = config_errors(tmp_path, {"mode": "sentinel"})
    assert rc != 0
    assert "redis.sentinel.addresses: required with mode: sentinel" in out, out
    assert "redis.sentinel.master_name: required with mode: sentinel" in out, out
    assert "moat.yaml:" in out  # file:line:column


def test_config_sentinel_refuses_address(tmp_path):
    rc, out = config_errors(tmp_path, {"mode": "sentinel", "address": "127.0.0.1:6379",
                                       "sentinel": {"addresses": ["127.0.0.1:26379"],
                                                    "master_name": "mymaster"}})
    assert rc != 0 and "redis.address: not used with mode: sentinel" in out, out


def test_config_sentinel_section_needs_mode(tmp_path):
    rc, out = config_errors(tmp_path, {"sentinel": {"addresses": ["127.0.0.1:26379"],
                                                    "master_name": "mymaster"}})
    assert rc != 0 and "redis.sentinel: only used with mode: sentinel" in out, out
