"""Helpers for the rate-limit integration tests (tests/integration/test_ratelimit_*.py).

Standard library only; builds on moatctl (processes, configs, clients); Redis (the RESP
client, sessions) is redisutil's. Every client connection opened here is closed in a
finally block; every process is started through the conftest fixtures (stopped by PID).
"""

import math
import re
import socket
import threading
import time

import moatctl
from moatctl import Conn


# ---- config -----------------------------------------------------------------------

def rl_route(prefix, rules, auth="none", headers=True, upstream="app"):
    r = {"match": {"path_prefix": prefix}, "auth": auth, "upstream": upstream,
         "rate_limit": rules}
    if headers is not None:
        r["ratelimit_headers"] = headers
    return r


def overrides(routes, redis=None, ratelimit=None, limits=None, workers=2, **extra):
    """Config overrides: routes (a list), optional redis, ratelimit and limits sections.
    A catch-all route without limits is appended so unknown paths still route."""
    ov = {"workers": workers,
          "routes": list(routes) + [{"match": {"path_prefix": "/"}, "auth": "none",
                                      "upstream": "app"}]}
    if redis is not None:
        ov["redis"] = {"address": redis.addr, "timeout": moatctl.TEST_REDIS_TIMEOUT}
    if ratelimit:
        ov["ratelimit"] = ratelimit
    lim = {"drain_timeout": "2s"}
    lim.update(limits or {})
    ov["limits"] = lim
    ov.update(extra)
    return ov


# ---- clients ----------------------------------------------------------------------

def get(conn, path, headers=(), close=False):
    """One GET on an open Conn; returns the Response."""
    hs = list(headers) + ([("Connection", "close")] if close else [])
    conn.request("GET", path, hs)
    return conn.read_response()


def one_shot(port, path, headers=(), timeout=10.0, source=None):
    """One GET on a fresh TLS connection (Connection: close); the Response."""
    c = Conn(tls_connect_from(port, source=source, timeout=timeout))
    try:
        return get(c, path, headers, close=True)
    finally:
        c.close()


def tls_connect_from(port, source=None, timeout=10.0):
    """A verified TLS connection to 127.0.0.1:port, optionally from a source address
    (e.g. "127.0.0.2": loopback accepts any 127/8 source, a distinct client IP)."""
    ctx = moatctl.tls_context()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        if source:
            raw.bind((source, 0))
        raw.connect(("127.0.0.1", port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except Exception:
        raw.close()
        raise
    s.settimeout(timeout)
    return s


class Client(moatctl.KeepAliveClient):
    """A keep-alive connection from an optional source address that reconnects when
    moat closed it (e.g. after a 429 that closes, or an idle timeout)."""

    def __init__(self, port, source=None, timeout=10.0):
        super().__init__(port, timeout)
        self.source = source

    def _connect(self):
        return Conn(tls_connect_from(self.port, self.source, self.timeout))

    def _send(self, path, headers):
        return get(self.conn, path, headers)

    def get(self, path, headers=()):
        return self.request(path, headers)


def parallel_requests(port, n, path, headers=(), connect_workers=16, timeout=30.0, ready=None):
    """Opens n TLS connections (handshakes done first, 16 at a time), then sends one
    request on every connection at once (a barrier releases n threads together).
    port may be a list: connection i goes to port[i % len(port)]. ready, if given, is
    called once every connection is open, before any request is sent. headers may be a
    function of the request's index (0..n-1).
    Returns the list of Responses (an exception object where a request failed)."""
    ports = port if isinstance(port, (list, tuple)) else [port]
    conns = [None] * n
    errors = []

    def opener(idx):
        for i in idx:
            try:
                conns[i] = Conn(tls_connect_from(ports[i % len(ports)], timeout=timeout))
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))

    chunks = [range(k, n, connect_workers) for k in range(connect_workers)]
    ts = [threading.Thread(target=opener, args=(c,)) for c in chunks]
    try:
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout + 30)
        assert not errors, "connections failed: %s" % errors[:5]
        if ready is not None:
            ready()
        results = [None] * n
        barrier = threading.Barrier(n, timeout=timeout)

        def send(i):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            try:
                hdrs = headers(i) if callable(headers) else headers
                results[i] = get(conns[i], path, hdrs, close=True)
            except Exception as e:  # noqa: BLE001
                results[i] = e

        ts = [threading.Thread(target=send, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout + 30)
        return results
    finally:
        for c in conns:
            if c is not None:
                c.close()


# ---- RateLimit headers (draft-ietf-httpapi-ratelimit-headers-08) ----------------

POLICY_RE = re.compile(r'^"([^"]+)";q=(\d+);w=(\d+)$')
STATE_RE = re.compile(r'^"([^"]+)";r=(\d+);t=(\d+)$')


def policy(resp):
    """(id, q, w) of the RateLimit-Policy header, or None."""
    v = resp.header("RateLimit-Policy")
    if v is None:
        return None
    m = POLICY_RE.match(v)
    assert m, "malformed RateLimit-Policy: %r" % v
    return m.group(1), int(m.group(2)), int(m.group(3))


def state(resp):
    """(id, r, t) of the RateLimit header, or None."""
    v = resp.header("RateLimit")
    if v is None:
        return None
    m = STATE_RE.match(v)
    assert m, "malformed RateLimit: %r" % v
    return m.group(1), int(m.group(2)), int(m.group(3))


def retry_after(resp):
    v = resp.header("Retry-After")
    assert v is not None and v.isdigit(), "429 without a delta-seconds Retry-After: %r" % resp
    return int(v)


# ---- misc ---------------------------------------------------------

def not_near_minute_boundary(margin=12):
    """Waits until the wall clock is at least margin s away from the next minute, so
    'once per minute' audit deduplication is not split by a minute change mid-test."""
    s = time.time() % 60
    if s > 60 - margin:
        time.sleep(60 - s + 0.5)


def percentile(values, p):
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(math.ceil(p / 100.0 * len(v))) - 1))
    return v[k]


# ---- several moat instances (each in its own directory) ----------------------------

class Fleet:
    """Starts moat instances that each get their own directory (config, logs, stderr);
    stop_all() stops every one by PID. Used through the `fleet` fixture."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.moats = []

    def start(self, overrides_, upstream=None, name=None, start=True):
        import os
        d = os.path.join(str(self.tmp_path), name or "moat%d" % len(self.moats))
        os.makedirs(d, exist_ok=True)
        path, cfg = moatctl.write_config(d, overrides_,
                                         upstream_port=upstream.port if upstream else None)
        m = moatctl.Moat(path, cfg, tmpdir=d)
        self.moats.append(m)
        if start:
            m.start()
        return m

    def stop_all(self):
        return moatctl.stop_moats(self.moats)


def reload(moat, new_overrides, generation):
    """Rewrites moat's config file with new_overrides (same ports and logs), sends
    SIGHUP and waits until 'generation N is live' is logged."""
    import json
    cfg = moatctl.deep_merge(moat.cfg, new_overrides)
    with open(moat.config_path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    moat.cfg = cfg
    moat.reload()
    ok = moatctl.wait_until(
        lambda: "generation %d is live" % generation in moat.stderr(), 10)
    assert ok, "reload to generation %d not seen:\n%s" % (generation, moat.stderr())
