"""Global rules against a Redis that answers the rate-limit script with replies of the
wrong shape: no reply is trusted as a verdict, each one falls back to on_store_error
(deny: 503, allow: 200), the fallback is counted, the log gets one line, not one per
request, and moat keeps running."""

import time

import pytest

import moatctl
import rlutil
from rlutil import Client, rl_route

ROUTES = [
    rl_route("/deny", [{"key": "ip", "rate": "1/h", "burst": 1000, "scope": "global",
                        "on_store_error": "deny", "id": "bad-deny"}]),
    rl_route("/allow", [{"key": "ip", "rate": "1/h", "burst": 1000, "scope": "global",
                         "on_store_error": "allow", "id": "bad-allow"}]),
]

# Well-framed RESP that is not the script's reply: {k, remaining, retry_ms, reset_ms, ovs}
# with 0 <= k <= n.
BAD_REPLIES = {
    "short array": b"*3\r\n:1\r\n:2\r\n:3\r\n",
    "negative k": b"*5\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n",
    "k above n": b"*5\r\n:99\r\n:0\r\n:0\r\n:0\r\n:0\r\n",
    "negative retry": b"*5\r\n:1\r\n:0\r\n:-5\r\n:0\r\n:0\r\n",
    "string element": b"*5\r\n$1\r\n1\r\n:0\r\n:0\r\n:0\r\n:0\r\n",
    "nested array": b"*5\r\n*1\r\n:1\r\n:0\r\n:0\r\n:0\r\n:0\r\n",
    "nil elements": b"*5\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n",
    "integer": b":1\r\n",
    "status": b"+OK\r\n",
    "error": b"-ERR moat-rl: bad arguments\r\n",
    "noscript twice": b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    "nil": b"$-1\r\n",
    "nil array": b"*-1\r\n",
    "empty array": b"*0\r\n",
}


def _fallbacks(m):
    return moatctl.metrics(m).get("moat_ratelimit_store_fallbacks_total", 0)


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_bad_script_reply_is_never_a_verdict(upstream, fleet, fake_redis, name):
    reply = BAD_REPLIES[name]
    fake = fake_redis("scripted", replies={b"EVALSHA": reply, b"EVAL": reply})
    up = upstream("app")
    ov = rlutil.overrides(ROUTES, redis=fake, workers=1,
                          ratelimit={"redis_timeout": "2s", "heartbeat": "300ms"})
    m = fleet.start(ov, up, "m")
    deadline = time.monotonic() + 10
    while not any(c[0].upper() == "EVALSHA" or c[0].upper() == "EVAL"
                  for c in fake.commands) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first heartbeat: the rate-limit connection is up
    before = _fallbacks(m)
    with Client(m.https_port) as c:
        for _ in range(3):
            r = c.get("/deny")
            assert r.status == 503, (name, r)
            assert r.header("Retry-After") is not None, r
        got = [c.get("/allow").status for _ in range(3)]
        assert got == [200] * 3, (name, got)
    assert _fallbacks(m) >= before + 6, (name, before, moatctl.metrics(m))
    gcra = [c for c in fake.commands if c[0].upper() in ("EVALSHA", "EVAL")
            and len(c) > 3 and c[3].startswith("moat:rl:bad-")]
    assert gcra, "no script call reached the fake Redis: %r" % fake.commands[-5:]
    assert m.proc.poll() is None, m.stderr()
    # logged, but once for the 6 (log_msg_limited): a broken Redis cannot flood the log
    assert m.stderr().count("ratelimit: unexpected reply from Redis") == 1, m.stderr()
