"""Local (instance-wide) rate limits, end to end: exactness under concurrency across
workers, refill, Retry-After, the draft-ietf-httpapi-ratelimit-headers-08 fields on
429 and on allowed responses, keys, and the rate_limited audit event.

Every moat here runs with workers: 2, so a per-worker table would let twice the
burst through and fail the exact counts."""

import time

import moatctl
import rlutil
from rlutil import Client, policy, retry_after, rl_route, state


def _moat(start_moat, upstream, routes, **kw):
    up = upstream("app")
    m = start_moat(rlutil.overrides(routes, **kw), upstream=up)
    return m, up


def test_local_limit_exact_under_concurrency(upstream, start_moat):
    """burst 50, rate 1/h, 200 requests released at once on 200 connections spread by
    SO_REUSEPORT over 2 workers: exactly 50 pass, 150 get 429, the upstream sees 50."""
    m, up = _moat(start_moat, upstream,
                  [rl_route("/api", [{"key": "ip", "rate": "1/h", "burst": 50, "id": "conc"}])])
    results = rlutil.parallel_requests(m.https_port, 200, "/api/x")
    bad = [r for r in results if not hasattr(r, "status")]
    assert not bad, "requests failed: %r" % bad[:5]
    statuses = [r.status for r in results]
    assert statuses.count(200) == 50, "200s: %d, 429s: %d, others: %r" % (
        statuses.count(200), statuses.count(429),
        sorted({s for s in statuses if s not in (200, 429)}))
    assert statuses.count(429) == 150
    ok = [r for r in results if r.status == 200]
    # every allowed response says how many are left; all 50 values 0..49 appear once
    assert sorted(state(r)[1] for r in ok) == list(range(50))
    for r in results:
        if r.status == 429:
            assert retry_after(r) >= 3500, r  # 1/h: about an hour
    reached = moatctl.wait_until(lambda: len(up.requests()) >= 50, 5)
    assert len(up.requests()) == 50, "upstream got %d requests" % len(up.requests())
    assert reached


def test_refill_after_429(upstream, start_moat):
    """rate 10/s, burst 1: once limited, a request 150 ms later passes (T = 100 ms).
    The count over a burst of traffic is bounded by burst + elapsed * rate."""
    m, _ = _moat(start_moat, upstream,
                 [rl_route("/r", [{"key": "ip", "rate": "10/s", "burst": 1, "id": "refill"}])])
    with Client(m.https_port) as c:
        for _round in range(3):
            # hammer until limited (bounded): the first passes, one soon after is refused
            t0 = time.monotonic()
            got = []
            for _ in range(200):
                r = c.get("/r")
                got.append(r.status)
                if r.status == 429:
                    assert retry_after(r) == 1, r  # ceil(<= 100 ms)
                    assert state(r)[1] == 0
                    break
            elapsed = time.monotonic() - t0
            assert 429 in got, "never limited in %d requests: %r" % (len(got), got)
            # GCRA bound: at most burst + elapsed/T (+1 for rounding) passed
            assert got.count(200) <= 1 + int(elapsed / 0.1) + 1, (got, elapsed)
            time.sleep(0.15)  # > T: generous, only the lower bound of sleep matters
            r = c.get("/r")
            assert r.status == 200, "still limited 150 ms after a 429: %r" % r


def test_retry_after_and_headers_on_429(upstream, start_moat):
    """rate 1/m, burst 1: the 429 carries Retry-After ~60 s and the draft-08 fields;
    hammering does not push Retry-After up (rejections consume nothing)."""
    m, up = _moat(start_moat, upstream,
                  [rl_route("/m", [{"key": "ip", "rate": "1/m", "burst": 1, "id": "perminute"}],
                            headers=False)])
    with Client(m.https_port) as c:
        assert c.get("/m").status == 200
        first = c.get("/m")
        assert first.status == 429, first
        ra = retry_after(first)
        assert 55 <= ra <= 60, first
        assert policy(first) == ("perminute", 1, 60)
        rid, rem, t = state(first)
        assert (rid, rem) == ("perminute", 0)
        assert 55 <= t <= 60, first
        last = ra
        for _ in range(20):
            r = c.get("/m")
            assert r.status == 429, r
            assert retry_after(r) <= last, "Retry-After grew: %d -> %r" % (last, r)
            last = retry_after(r)
        assert len(up.requests()) == 1


def test_allowed_responses_carry_ratelimit_headers(upstream, start_moat):
    """ratelimit_headers: true puts RateLimit-Policy/RateLimit on allowed responses;
    with two rules the most restrictive one is reported; false or absent: none."""
    m, _ = _moat(start_moat, upstream, [
        rl_route("/h", [{"key": "ip", "rate": "1/m", "burst": 5, "id": "wide"},
                        {"key": "header:X-Api-Key", "rate": "1/m", "burst": 3, "id": "narrow"}]),
        rl_route("/n", [{"key": "ip", "rate": "1/m", "burst": 5, "id": "quiet"}],
                 headers=False),
    ])
    with Client(m.https_port) as c:
        r = c.get("/h", [("X-Api-Key", "k1")])
        assert r.status == 200
        assert policy(r) == ("narrow", 3, 180)
        assert state(r) == ("narrow", 2, 60)
        r = c.get("/h", [("X-Api-Key", "k1")])
        assert state(r) == ("narrow", 1, 120)
        # a fresh key: ip rule 2 left, narrow 2 left (a tie: either may be named)
        r = c.get("/h", [("X-Api-Key", "k2")])
        assert r.status == 200
        assert state(r)[1] == 2, r
        r = c.get("/h", [("X-Api-Key", "k3")])
        assert state(r)[0:2] == ("wide", 1), r  # ip: 4th of 5
        r = c.get("/n")
        assert r.status == 200
        assert r.header("RateLimit") is None and r.header("RateLimit-Policy") is None, r
        r = c.get("/other")
        assert r.header("RateLimit") is None, r


def test_header_key_buckets(upstream, start_moat):
    """header:X-Api-Key: each value has its own bucket; requests without the header
    share one bucket (omitting it is no way around the limit)."""
    m, _ = _moat(start_moat, upstream, [
        rl_route("/k", [{"key": "header:X-Api-Key", "rate": "1/h", "burst": 2, "id": "bykey"}]),
    ])
    with Client(m.https_port) as c:
        for key in ("alpha", "beta"):
            got = [c.get("/k", [("X-Api-Key", key)]).status for _ in range(3)]
            assert got == [200, 200, 429], (key, got)
        got = [c.get("/k").status for _ in range(3)]
        assert got == [200, 200, 429], got


def test_ip_rules_are_per_client_ip(upstream, start_moat):
    """key: ip counts per client address: 127.0.0.2 is not limited by 127.0.0.1."""
    m, _ = _moat(start_moat, upstream,
                 [rl_route("/ip", [{"key": "ip", "rate": "1/h", "burst": 2, "id": "perip"}])])
    with Client(m.https_port) as a, Client(m.https_port, source="127.0.0.2") as b:
        assert [a.get("/ip").status for _ in range(3)] == [200, 200, 429]
        assert [b.get("/ip").status for _ in range(3)] == [200, 200, 429]


def test_rate_limited_audit_once_per_rule_key_minute(upstream, start_moat):
    """Many rejections of one rule+key within a minute give one audit event; another
    key (client IP) gives its own."""
    m, _ = _moat(start_moat, upstream,
                 [rl_route("/a", [{"key": "ip", "rate": "1/h", "burst": 1, "id": "audited"}])])
    rlutil.not_near_minute_boundary()
    for src in ("127.0.0.1", "127.0.0.2"):
        with Client(m.https_port, source=src) as c:
            statuses = [c.get("/a").status for _ in range(15)]
            assert statuses == [200] + [429] * 14, statuses
    moatctl.wait_until(lambda: len(moatctl.audit_events(m, "rate_limited")) >= 2, 5)
    time.sleep(0.3)  # anything else would have been written by now
    ev = moatctl.audit_events(m, "rate_limited")
    assert len(ev) == 2, ev
    assert sorted(e.get("key") for e in ev) == ["127.0.0.1", "127.0.0.2"], ev
    for e in ev:
        assert e.get("rule") == "audited" and e.get("scope") == "local", e
        assert e.get("path") == "/a", e
    decisions = moatctl.metric_sum(moatctl.metrics(m), "moat_ratelimit_decisions_total",
                                   result="rejected")
    assert decisions == 28


def test_state_survives_reload_and_rate_change_rescales(upstream, start_moat):
    """SIGHUP with the same rules keeps the buckets (rules are keyed by id); a reload that
    raises the rate applies from the next request (the debt is rescaled, not reset)."""
    rule = {"key": "ip", "rate": "1/h", "burst": 2, "id": "reloaded"}
    m, _ = _moat(start_moat, upstream, [rl_route("/rl", [rule])])
    with Client(m.https_port) as c:
        assert [c.get("/rl").status for _ in range(3)] == [200, 200, 429]
    rlutil.reload(m, {"hsts": {"max_age": 600}}, 2)  # something else changes
    with Client(m.https_port) as c:
        r = c.get("/rl")
        assert r.status == 429 and retry_after(r) > 1700, r
    fast = dict(rule, rate="1000/s")
    rlutil.reload(m, {"routes": [rl_route("/rl", [fast])] + m.cfg["routes"][1:]}, 3)
    time.sleep(0.05)  # the owed requests at 1000/s: ~2 ms
    with Client(m.https_port) as c:
        r = c.get("/rl")
        if r.status == 429:  # rescaled debt still a few ms when this request came
            assert retry_after(r) == 1, r
            time.sleep(0.05)
            r = c.get("/rl")
        assert r.status == 200, r
    assert m.alive()
