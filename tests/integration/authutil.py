"""Helpers for the session-authentication tests (test_auth_*.py).

Standard library only; builds on moatctl, redisutil (the RESP client, redis-server,
FakeRedis, put_session) and the fixtures of conftest.py (moat_factory / start_moat,
upstream, redis_server, redis_factory, fake_redis, redis_certs):

- moat configs with one route per auth mode (auth_overrides);
- requests over fresh or kept-alive TLS connections;
- the upstream's view of the identity headers;
- wait_sessions_ready(): moat's Redis clients are up and answering.
"""

import time

import moatctl
from redisutil import client_list, client_names, new_token

IDENTITY_HEADERS = ("X-Tenant-ID", "X-User-ID", "X-Session-MFA")


# ---- moat config ---------------------------------------------------------------

ROUTES = [
    {"match": {"path_prefix": "/public"}, "auth": "none", "upstream": "app"},
    {"match": {"path_prefix": "/opt"}, "auth": "optional", "upstream": "app"},
    {"match": {"path_prefix": "/admin"}, "auth": "required", "mfa": "required", "upstream": "app"},
    {"match": {"path_prefix": "/web"}, "auth": "required", "browser": True, "upstream": "app"},
    {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"},
]


def auth_overrides(redis_address, redis=None, sessions=None, **top):
    """Overrides for moatctl.write_config: a redis section, sessions, and ROUTES:
    /public none, /opt optional, /admin required+mfa, /web browser, / required."""
    r = {"address": redis_address, "timeout": moatctl.TEST_REDIS_TIMEOUT}
    r.update(redis or {})  # a test about timeouts sets its own
    s = {"login_url": "/login"}
    s.update(sessions or {})
    out = {"redis": r, "sessions": s, "routes": ROUTES}
    out.update(top)
    return out


# ---- requests --------------------------------------------------------------------

def auth_headers(token=None, cookie=None, headers=()):
    h = list(headers)
    if token is not None:
        h.append(("Authorization", "Bearer " + token))
    if cookie is not None:
        h.append(("Cookie", "session=" + cookie))
    return h


def get(port, path="/echo", token=None, cookie=None, headers=(), timeout=10.0):
    """One GET on a fresh TLS connection; returns a moatctl.Response."""
    with moatctl.Conn.tls(port, timeout=timeout) as c:
        c.request("GET", path, headers=auth_headers(token, cookie, headers))
        return c.read_response()


class Client(moatctl.KeepAliveClient):
    """A kept-alive TLS connection (so requests stay on one worker and its cache)."""

    def get(self, path="/echo", token=None, cookie=None, headers=()):
        return self.request(path, auth_headers(token, cookie, headers))


def identity(resp):
    """The identity headers the upstream received (from /echo's JSON), name -> [values]."""
    assert resp.status == 200, resp
    got = {}
    for k, v in resp.json()["headers"]:
        for want in IDENTITY_HEADERS + ("Authorization", "Cookie"):
            if k.lower() == want.lower():
                got.setdefault(want, []).append(v)
    return got


def wait_sessions_ready(m, redis, workers=2, push=False, timeout=15.0):
    """Waits until every worker's Redis connection is up (CLIENT LIST shows them),
    then until a bogus token gets its 401 (not 503) a few times in a row on fresh
    connections."""
    def clients_ok():
        # by name when CLIENT SETNAME is allowed, else by count (an ACL may refuse it)
        n = client_names(redis)
        if "moat" in n:
            return n.count("moat") >= workers and \
                (not push or n.count("moat-revocation") >= workers)
        return len(n) >= workers * (2 if push else 1)
    assert moatctl.wait_until(clients_ok, timeout), \
        "moat's redis clients did not connect: %r\nstderr:\n%s" % (client_list(redis),
                                                                  m.stderr())
    streak = [0]

    def probe():
        r = get(m.https_port, "/", token=new_token())
        streak[0] = streak[0] + 1 if r.status == 401 else 0
        return streak[0] >= 4
    assert moatctl.wait_until(probe, timeout), "sessions never answered 401 for a bogus token"
    if push:
        # the tracking connections report live only after SUBSCRIBE's confirmation
        time.sleep(0.2)


def poll(fn, timeout, interval=0.01):
    """Calls fn until it returns a truthy value or timeout; returns (value, seconds)."""
    t0 = time.monotonic()
    v = moatctl.wait_until(fn, timeout, interval=interval)
    return v, time.monotonic() - t0


def raw_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""
