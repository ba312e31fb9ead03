"""Upstream resilience (issue 14): balancing with weights, least requests in flight and
tenant hashing, outlier ejection and the panic threshold, safe retries and their budget,
a server killed and brought back under load, all servers down.

Every upstream here is a real upstream_server.py process; the share each one got is read
from its own request log, never from moat's view of it.
"""

import collections
import json
import signal
import threading
import time
import urllib.request

import pytest

from moatctl import Conn, curl, free_port, wait_until


def pool(ups, **extra):
    """An upstreams.app section over the given Upstreams (or "addr weight=N" strings)."""
    servers = [u if isinstance(u, str) else u.addr for u in ups]
    return {"upstreams": {"app": dict({"servers": servers}, **extra)}}


def served_by(ups, path="/echo"):
    """How many requests for path each upstream received, by name."""
    return {u.name: sum(1 for q in u.requests() if q["path"] == path) for u in ups}


def get_many(port, n, path="/echo", conn=None):
    """n GETs over one keep-alive connection (a new one after a close); statuses in order."""
    statuses = []
    c = conn or Conn.tls(port)
    try:
        for _ in range(n):
            c.request("GET", path)
            r = c.read_response()
            statuses.append(r.status)
            if (r.header("Connection") or "").lower() == "close":
                c.close()
                c = Conn.tls(port)
    finally:
        if conn is None:
            c.close()
    return statuses


def stderr_all(m):
    with open(m.stderr_path, errors="replace") as f:
        return f.read()


def upstreams_json(m):
    with urllib.request.urlopen("http://127.0.0.1:%d/upstreams" % m.admin_port, timeout=10) as r:
        return json.loads(r.read())


# ---- balancing ----------------------------------------------------------------------


def test_weights_are_respected(upstream, start_moat):
    ups = [upstream("w3"), upstream("w1a"), upstream("w1b")]
    servers = ["%s weight=3" % ups[0].addr, ups[1].addr, ups[2].addr]
    m = start_moat(pool(servers))
    n = 300
    # both workers, keep-alive and new connections: the shares hold instance-wide
    statuses = get_many(m.https_port, n // 2)
    statuses += [curl(m.https_port, "/echo").status for _ in range(n // 10)]
    statuses += get_many(m.https_port, n - len(statuses))
    assert statuses == [200] * n
    got = served_by(ups)
    want = {"w3": 0.6 * n, "w1a": 0.2 * n, "w1b": 0.2 * n}
    for name, w in want.items():
        assert abs(got[name] - w) <= 0.1 * w + 3, (got, want)


def test_least_conn_steers_away_from_a_slow_server(upstream, start_moat):
    slow = upstream("slow", args=["--delay-ms", "300"])
    fast = upstream("fast")
    m = start_moat(pool([slow, fast], balance="least_conn"))
    clients = 6
    done = []

    def run():
        done.extend(get_many(m.https_port, 10))

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert done == [200] * (clients * 10)
    got = served_by([slow, fast])
    # round robin would give each half; least_conn sees the slow one's requests pile up
    assert got["fast"] >= 0.75 * sum(got.values()), got


def test_tenant_hash_keeps_a_key_on_one_server(upstream, start_moat):
    ups = [upstream("h1"), upstream("h2"), upstream("h3")]
    m = start_moat(pool(ups, balance="tenant_hash"))
    # anonymous: the key is the client address, the same for every request here
    assert get_many(m.https_port, 30) == [200] * 30
    got = served_by(ups)
    assert sorted(got.values()) == [0, 0, 30], got
    home = max(got, key=got.get)
    # its server gone: the key moves to one other server, and only there
    dead = next(u for u in ups if u.name == home)
    dead.stop()
    statuses = get_many(m.https_port, 30)
    assert statuses.count(200) >= 29, statuses
    after = served_by([u for u in ups if u is not dead])
    assert sorted(after.values())[0] == 0, after


# ---- outlier ejection and panic -----------------------------------------------------


def test_a_failing_server_is_ejected(upstream, start_moat):
    bad = upstream("bad", args=["--fail-status", "500"])
    good = [upstream("g1"), upstream("g2")]
    m = start_moat(dict(pool([bad] + good, outlier={"consecutive_errors": 3,
                                                    "base_ejection": "60s"}), workers=1))
    statuses = get_many(m.https_port, 30)
    assert statuses.count(500) == 3, statuses  # the three errors that ejected it
    before = served_by([bad])["bad"]
    assert get_many(m.https_port, 60) == [200] * 60
    assert served_by([bad])["bad"] == before, "an ejected server got requests"
    state = {s["address"]: s["state"] for s in upstreams_json(m)["pools"][0]["servers"]}
    assert state[bad.addr] == "ejected", state
    assert "ejected for 60000 ms" in m.stderr(), m.stderr()[-2000:]


@pytest.mark.parametrize("panic", [50, 0])
def test_panic_threshold_spreads_over_all(upstream, start_moat, panic):
    bad = [upstream("bad1", args=["--fail-status", "500"]),
           upstream("bad2", args=["--fail-status", "500"])]
    good = upstream("good")
    m = start_moat(dict(pool(bad + [good], panic_threshold=panic,
                             outlier={"consecutive_errors": 2, "base_ejection": "60s",
                                      "max_ejected_percent": 100}), workers=1))
    get_many(m.https_port, 30)  # ejects both bad servers
    assert wait_until(lambda: m.stderr().count("ejected for") >= 2, 5), m.stderr()[-2000:]
    before = served_by(bad)
    statuses = get_many(m.https_port, 60)
    after = served_by(bad)
    to_bad = sum(after.values()) - sum(before.values())
    if panic:
        # 1 of 3 up is below 50 %: traffic goes over all three, the survivor is not crushed
        assert to_bad >= 20, (before, after)
        assert statuses.count(200) >= 15, statuses
    else:
        assert to_bad == 0 and statuses == [200] * 60, (before, after, statuses)


# ---- retries ------------------------------------------------------------------------


def test_post_is_never_retried_once_sent(upstream, start_moat):
    ups = [upstream("p1"), upstream("p2")]
    m = start_moat(dict(pool(ups), workers=1))
    with Conn.tls(m.https_port) as c:
        c.request("GET", "/echo")  # warms a kept-alive upstream connection
        assert c.read_response().status == 200
        for _ in range(4):
            c.request("POST", "/drop", body=b"x")
            assert c.read_response().status == 502
    drops = sum(1 for u in ups for q in u.requests() if q["path"] == "/drop")
    assert drops == 4, drops


def test_retry_budget_caps_retries_in_an_outage(upstream, start_moat):
    """Every server closes every request unanswered: GETs on kept-alive connections would
    each be replayed; the budget (20 %, no minimum) caps the extra load."""
    ups = [upstream("r1"), upstream("r2"), upstream("r3")]
    m = start_moat(dict(pool(ups, retry={"budget_percent": 20, "min_retries": 0,
                                         "window": "60s"}), workers=1))
    # fill the idle pools: concurrent clients leave several kept-alive connections
    threads = [threading.Thread(target=get_many, args=(m.https_port, 5)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    n = 50
    statuses = get_many(m.https_port, n, path="/drop")
    assert set(statuses) == {502}, statuses
    sent = sum(1 for u in ups for q in u.requests() if q["path"] == "/drop")
    # n first attempts, then retries within 20 % of all requests counted in the window
    assert n <= sent <= n + (n + 40) * 0.2 + 2, sent


def test_a_retry_keeps_its_admission_slot(upstream, start_moat):
    """max_in_flight 1: a request whose connect failed and that is retried on the next
    server still holds the pool's only slot, so a second request waits for it."""
    slow = upstream("slow", args=["--delay-ms", "1000"])
    dead = "127.0.0.1:%d" % free_port()
    m = start_moat(dict(pool([dead, slow], admission={"max_in_flight": 1}), workers=1))
    results = []

    def one():
        results.append(curl(m.https_port, "/echo").status)

    t0 = time.monotonic()
    first = threading.Thread(target=one)
    first.start()
    time.sleep(0.2)  # the first is retried on the slow server by now
    one()
    first.join(30)
    assert results == [200, 200], results
    # one after the other: at least two of the server's seconds (load only adds to it)
    assert time.monotonic() - t0 >= 2.0


def test_a_connection_near_its_idle_timeout_is_not_reused(upstream, start_moat):
    """An idle upstream connection is closed after 4 s; within its last 0.5 s it is no
    longer handed to a request: its timer may fire in the same loop turn and time the
    new request out (a 504 seen under load after an admission queue wait of ~4 s)."""
    up = upstream("near")
    m = start_moat(dict(pool([up]), workers=1))
    with Conn.tls(m.https_port) as c:
        c.request("GET", "/echo")
        first = c.read_response().json()["connection_id"]
        c.request("GET", "/echo")
        assert c.read_response().json()["connection_id"] == first  # reused while fresh
        time.sleep(3.75)
        c.request("GET", "/echo")
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["connection_id"] != first


def test_idle_keepalive_closed_by_upstream_is_no_error(upstream, start_moat):
    up = upstream("idle", args=["--idle-timeout", "0.2"])
    m = start_moat(pool([up]))
    with Conn.tls(m.https_port) as c:
        for _ in range(6):
            c.request("GET", "/echo")
            assert c.read_response().status == 200
            time.sleep(0.3)  # the upstream closes the pooled connection meanwhile


# ---- all down -----------------------------------------------------------------------


def test_all_down_is_503_without_a_connect_storm(tmp_path, start_moat):
    ports = [free_port(), free_port()]
    m = start_moat(dict(pool(["127.0.0.1:%d" % p for p in ports]), workers=1))
    assert curl(m.https_port, "/echo").status == 502  # both refused: each marked down
    t0 = time.monotonic()
    r = curl(m.https_port, "/echo")
    assert r.status == 503, r
    assert int(r.header("Retry-After")) >= 1, r
    assert time.monotonic() - t0 < 2


# ---- a server killed and brought back under load ----------------------------------


class Loop(threading.Thread):
    """GETs in a loop until stopped, alternating keep-alive and new connections."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_ = threading.Event()
        self.statuses = collections.Counter()

    def run(self):
        while not self.stop_.is_set():
            try:
                for s in get_many(self.port, 10):
                    self.statuses[s] += 1
                self.statuses[curl(self.port, "/echo").status] += 1
            except OSError as e:
                self.statuses["error: %s" % e] += 1

    def stop(self):
        self.stop_.set()
        self.join(60)


def test_one_killed_is_invisible_and_comes_back_slowly(upstream, start_moat):
    ups = [upstream("k1"), upstream("k2"), upstream("k3")]
    m = start_moat(pool(ups, slow_start="6s",
                        health={"path": "/healthz", "interval": "200ms", "fall": 2, "rise": 2}))
    loops = [Loop(m.https_port) for _ in range(2)]
    for lp in loops:
        lp.start()
    try:
        assert wait_until(lambda: sum(sum(lp.statuses.values()) for lp in loops) >= 100, 60)
        victim = ups[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        count_at_kill = sum(sum(lp.statuses.values()) for lp in loops)
        assert wait_until(lambda: sum(sum(lp.statuses.values()) for lp in loops)
                          >= count_at_kill + 300, 120)
        # the checks see it down too (not only the passive marks of failed connects)
        assert wait_until(lambda: "server %s is down" % victim.addr in stderr_all(m), 30)
        # back on the same port: re-admitted by the checks, its share ramps up
        victim.start()
        assert wait_until(lambda: served_by([victim])[victim.name] > 0, 30)
        t_back = time.monotonic()
        early = served_by(ups)
        wait_until(lambda: time.monotonic() - t_back > 1.5, 5)
        mid = served_by(ups)
        wait_until(lambda: time.monotonic() - t_back > 7, 10)  # slow start is over
        late0 = served_by(ups)
        wait_until(lambda: time.monotonic() - t_back > 9, 5)
        late = served_by(ups)
    finally:
        for lp in loops:
            lp.stop()
    statuses = sum((lp.statuses for lp in loops), collections.Counter())
    # A request already sent to the victim on a connection it had just accepted when it
    # died is not replayed (src/upstream/proxy.c can_retry: a request that kills a
    # server must not be replayed across the fleet); only a kept-alive connection's
    # drop is. That race is rare (1 in 9,448 requests once, under ASan): allowed,
    # and only exactly so.
    logged = m.wait_access_log(statuses[200] + statuses[502], timeout=10)
    bad = [e for e in logged if e.get("status") != 200]
    assert all(e.get("status") == 502 and e.get("upstream_addr") == victim.addr and
               e.get("error") == "upstream closed the connection" for e in bad), bad
    assert len(bad) <= 2 and statuses[200] > 0 and set(statuses) <= {200, 502}, (statuses, bad)
    assert statuses[502] == len(bad), (statuses, bad)

    def share(a, b):
        total = sum(b.values()) - sum(a.values())
        return (b[victim.name] - a[victim.name]) / max(total, 1)

    ramp, steady = share(early, mid), share(late0, late)
    print("[info] returning server's share: %.3f in its first 1.5 s (slow start 6 s), %.3f "
          "after" % (ramp, steady))
    assert steady > 0.2, (late0, late)  # about a third
    # weight 1 ramping from 0.1 over 6 s: about 0.05-0.15 of the traffic in the first 1.5 s
    assert ramp < 0.5 * steady, (ramp, steady)
    err = stderr_all(m)
    assert err.count("server %s is down" % victim.addr) == 1, err[-3000:]
    assert err.count("server %s is up" % victim.addr) == 1, err[-3000:]
