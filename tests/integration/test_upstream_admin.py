"""The admin listener's upstream API: GET /upstreams (pools and servers as JSON), POST
/upstreams/<pool>/<server>/drain|ready, and the moat_upstream_* series of /metrics.

Every moat and upstream here is started by the conftest fixtures, which stop them by PID
also when a test fails; the client threads a test starts are joined before it returns."""

import http.client
import json
import ssl
import threading
import time
import urllib.parse

import pytest

import moatctl
from moatctl import CA, curl, wait_until


# ---- helpers ------------------------------------------------------------------------

def admin(m, method, path, body=None):
    """One request to moat's admin listener: (status, {lowercased header: value}, body)."""
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def upstreams(m):
    status, headers, body = admin(m, "GET", "/upstreams")
    assert status == 200, (status, body)
    assert headers["content-type"] == "application/json", headers
    return json.loads(body)


def pool(m, name="app"):
    pools = {p["name"]: p for p in upstreams(m)["pools"]}
    return pools[name]


def server(m, addr, pool_name="app"):
    servers = {s["address"]: s for s in pool(m, pool_name)["servers"]}
    return servers[addr]


def set_drain(m, addr, action="drain", pool_name="app", quote=False):
    seg = urllib.parse.quote(addr, safe="") if quote else addr
    status, headers, body = admin(m, "POST", "/upstreams/%s/%s/%s" % (pool_name, seg, action))
    assert status == 200, (status, body)
    assert headers["content-type"] == "application/json", headers
    return json.loads(body)


def metrics_text(m):
    status, _, body = admin(m, "GET", "/metrics")
    assert status == 200
    return body.decode()


def series(text, name, **labels):
    """The value of the series name{labels...} (labels as a subset) or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        got = dict(kv.split("=", 1) for kv in head[len(name) + 1:-1].split(",") if kv)
        got = {k: v.strip('"') for k, v in got.items()}
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


class Client:
    """A keep-alive HTTPS client to moat (http.client, the dev CA)."""

    def __init__(self, port):
        self.port = port
        self.c = None

    def get(self, path):
        if self.c is None:
            ctx = ssl.create_default_context(cafile=CA)
            self.c = http.client.HTTPSConnection("localhost", self.port, context=ctx,
                                                 timeout=20)
        try:
            self.c.request("GET", path)
            r = self.c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        except Exception:
            self.close()
            raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def send_many(port, n, path="/echo"):
    """n requests on one connection each after the other; returns the statuses."""
    c = Client(port)
    try:
        return [c.get(path)[0] for _ in range(n)]
    finally:
        c.close()


def slow_in_background(port, ms):
    """Starts GET /slow?ms=ms in a thread; returns (thread, result dict)."""
    out = {}

    def run():
        try:
            out["r"] = curl(port, "/slow?ms=%d" % ms, timeout=30)
        except Exception as e:  # noqa: BLE001 - reported by the test
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def slow_requests(up):
    return [e for e in up.requests() if e.get("path") == "/slow"]


def which_got_slow(ups, timeout=5):
    """The upstream whose log shows the /slow request."""
    got = wait_until(lambda: [u for u in ups if slow_requests(u)], timeout)
    assert got and len(got) == 1, [u.log() for u in ups]
    return got[0]


def rewrite_and_reload(m, servers, generation):
    cfg = json.loads(json.dumps(m.cfg))
    cfg["upstreams"]["app"]["servers"] = servers
    with open(m.config_path, "w") as f:
        json.dump(cfg, f, indent=2)
    m.cfg = cfg
    before = len(m.stderr())
    m.reload()
    marker = "generation %d is live" % generation
    assert wait_until(lambda: marker in m.stderr()[before:]
                      or "keeping generation" in m.stderr()[before:], 10), m.stderr()
    assert marker in m.stderr()[before:], m.stderr()[before:]


def two_servers(upstream, moat_factory, extra=None):
    a, b = upstream("a"), upstream("b")
    app = {"servers": ["%s weight=3" % a.addr, b.addr]}
    app.update(extra or {})
    m = moat_factory({"upstreams": {"app": app}})
    return m, a, b


# ---- 1. GET /upstreams ------------------------------------------------------------

def test_upstreams_lists_pools_and_servers(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    p = pool(m)
    assert p["balance"] == "round_robin"
    assert p["in_flight"] == 0 and p["queued"] == 0
    for k in ("retries_total", "retries_denied_total", "all_down_total"):
        assert p[k] == 0, p
    assert set(p["admission"]) >= {"in_flight", "queued", "admitted_total", "queued_total",
                                   "shed_total", "timed_out_total"}, p
    assert [s["address"] for s in p["servers"]] == [a.addr, b.addr]
    sa, sb = p["servers"]
    assert (sa["weight"], sa["effective_weight"]) == (3, 3), sa
    assert (sb["weight"], sb["effective_weight"]) == (1, 1), sb
    for s in (sa, sb):
        assert s["state"] == "up" and s["draining"] is False, s
        assert s["in_flight"] == 0 and s["consecutive_errors"] == 0, s
        assert s["ejections_total"] == 0 and s["ejected_for_ms"] == 0, s
        assert s["check"] is None, s  # no health.path: no active checks
    # HEAD: the same head, no body
    status, headers, body = admin(m, "HEAD", "/upstreams")
    assert status == 200 and body == b"" and headers["content-type"] == "application/json"


def test_upstreams_check_object_with_active_checks(upstream, moat_factory):
    a = upstream("a")
    m = moat_factory({"upstreams": {"app": {"servers": [a.addr],
                                            "health": {"path": "/healthz",
                                                       "interval": "200ms"}}}})
    s = server(m, a.addr)
    assert set(s["check"]) == {"result", "status", "age_ms"}, s
    assert s["check"]["result"] in ("none", "passed"), s


def test_upstreams_counts_in_flight(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    t, out = slow_in_background(m.https_port, 1500)
    try:
        got = which_got_slow([a, b])
        s = server(m, got.addr)
        assert s["in_flight"] == 1, s
        assert pool(m)["in_flight"] == 1
    finally:
        t.join(30)
    assert out["r"].status == 200, out
    assert wait_until(lambda: pool(m)["in_flight"] == 0, 5), pool(m)


# ---- 2. drain and ready -----------------------------------------------------------------

def test_drain_moves_new_requests_and_lets_in_flight_finish(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    t, out = slow_in_background(m.https_port, 1500)
    try:
        drained = which_got_slow([a, b])
        other = b if drained is a else a
        j = set_drain(m, drained.addr)
        assert j == {"pool": "app", "server": drained.addr, "state": "draining"}, j
        s = server(m, drained.addr)
        assert s["state"] == "draining" and s["draining"] is True, s
        assert "admin: upstream app server %s draining" % drained.addr in m.stderr()
        seen = len(drained.requests())
        statuses = send_many(m.https_port, 40)
        assert statuses == [200] * 40, statuses
        assert len(drained.requests()) == seen, drained.requests()[seen:]
        assert len([e for e in other.requests() if e.get("path") == "/echo"]) == 40
    finally:
        t.join(30)
    assert "r" in out and out["r"].status == 200, out  # in flight when drained: finished
    assert out["r"].json()["upstream"] == drained.name
    # ready again: it gets traffic
    j = set_drain(m, drained.addr, "ready")
    assert j["state"] == "up", j
    assert server(m, drained.addr)["draining"] is False
    seen = len(drained.requests())
    assert send_many(m.https_port, 20) == [200] * 20
    assert len(drained.requests()) > seen
    assert "admin: upstream app server %s ready" % drained.addr in m.stderr()
    events = moatctl.audit_events(m, "upstream_admin")
    assert [(e.get("action"), e.get("pool"), e.get("server")) for e in events] == [
        ("drain", "app", drained.addr), ("ready", "app", drained.addr)], events


def test_draining_every_server_answers_503_with_retry_after(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    set_drain(m, a.addr)
    set_drain(m, b.addr)
    before = len(a.requests()) + len(b.requests())
    r = curl(m.https_port, "/echo")
    assert r.status == 503, r
    assert r.header("retry-after") and int(r.header("retry-after")) >= 1, r
    assert len(a.requests()) + len(b.requests()) == before
    assert pool(m)["all_down_total"] >= 1
    set_drain(m, a.addr, "ready")
    assert curl(m.https_port, "/echo").status == 200


# ---- 3. errors, methods, encodings ------------------------------------------------------

def test_unknown_pool_or_server_is_404(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    for path, err in (("/upstreams/nope/%s/drain" % a.addr, "unknown pool"),
                      ("/upstreams/app/127.0.0.1:1/drain", "unknown server"),
                      ("/upstreams/app/%s/ready" % a.addr.split(":")[0], "unknown server"),
                      ("/upstreams/app/%s%%00/drain" % a.addr, "unknown server")):
        status, headers, body = admin(m, "POST", path)
        assert status == 404, (path, status, body)
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": err}, (path, body)
    assert [s["state"] for s in pool(m)["servers"]] == ["up", "up"]


def test_methods(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    drain = "/upstreams/app/%s/drain" % a.addr
    for method in ("GET", "HEAD"):
        status, headers, _ = admin(m, method, drain)
        assert status == 405 and headers.get("allow") == "POST", (method, status, headers)
    for path in ("/metrics", "/upstreams", "/healthz", "/nothing-here", "/upstreams/app"):
        status, headers, _ = admin(m, "POST", path)
        assert status == 405, (path, status)
        assert headers.get("allow") == "GET, HEAD", (path, headers)
    assert server(m, a.addr)["state"] == "up"
    # a body is not taken (the admin listener reads no bodies)
    status, _, _ = admin(m, "POST", drain, body=b"x" * 100)
    assert status == 413, status
    # an empty body is fine
    status, _, _ = admin(m, "POST", drain, body=b"")
    assert status == 200
    assert server(m, a.addr)["state"] == "draining"


def test_percent_encoded_addresses(upstream, moat_factory, tmp_path):
    a = upstream("a")
    sock = str(tmp_path / "up.sock")  # a unix server nothing routes to: never connected
    m = moat_factory({"upstreams": {"app": {"servers": [a.addr]},
                                    "spare": {"servers": ["unix:" + sock]}}})
    j = set_drain(m, a.addr, quote=True)  # 127.0.0.1%3A<port>
    assert j == {"pool": "app", "server": a.addr, "state": "draining"}, j
    j = set_drain(m, "unix:" + sock, pool_name="spare", quote=True)  # slashes as %2F
    assert j == {"pool": "spare", "server": "unix:" + sock, "state": "draining"}, j
    j = set_drain(m, "unix:" + sock, "ready", pool_name="spare")  # slashes as they are
    assert j["server"] == "unix:" + sock and j["state"] == "up", j
    assert server(m, "unix:" + sock, "spare")["draining"] is False
    assert server(m, a.addr)["draining"] is True


# ---- 4. reloads ---------------------------------------------------------------------------

def test_drain_survives_a_reload_that_keeps_the_server(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    c = upstream("c")
    set_drain(m, a.addr)
    rewrite_and_reload(m, ["%s weight=3" % a.addr, b.addr, c.addr], 2)
    states = {s["address"]: s["state"] for s in pool(m)["servers"]}
    assert states == {a.addr: "draining", b.addr: "up", c.addr: "up"}, states
    seen = len(a.requests())
    assert send_many(m.https_port, 20) == [200] * 20
    assert len(a.requests()) == seen
    assert c.requests(), "the new server got nothing"


def test_reload_removing_a_server_with_a_request_in_flight(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    t, out = slow_in_background(m.https_port, 2000)
    try:
        removed = which_got_slow([a, b])
        kept = b if removed is a else a
        kept_text = "%s weight=3" % kept.addr if kept is a else kept.addr
        rewrite_and_reload(m, [kept_text], 2)
        assert [s["address"] for s in pool(m)["servers"]] == [kept.addr]
        seen = len(removed.requests())
        assert send_many(m.https_port, 20) == [200] * 20
        assert len(removed.requests()) == seen, removed.requests()[seen:]
    finally:
        t.join(30)
    assert "r" in out and out["r"].status == 200, out
    assert out["r"].json()["upstream"] == removed.name
    # the removed server is no longer drained or listed
    status, _, _ = admin(m, "POST", "/upstreams/app/%s/drain" % removed.addr)
    assert status == 404


# ---- 5. /metrics ----------------------------------------------------------------------------

def test_metrics_upstream_series(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    assert send_many(m.https_port, 10) == [200] * 10
    text = metrics_text(m)
    for name, typ in (("moat_upstream_server_up", "gauge"),
                      ("moat_upstream_server_state", "gauge"),
                      ("moat_upstream_server_in_flight", "gauge"),
                      ("moat_upstream_ejections_total", "counter"),
                      ("moat_upstream_checks_total", "counter"),
                      ("moat_upstream_retries_total", "counter"),
                      ("moat_upstream_retry_budget_exhausted_total", "counter"),
                      ("moat_upstream_all_down_total", "counter"),
                      ("moat_upstream_in_flight", "gauge"),
                      ("moat_upstream_queue_depth", "gauge")):
        assert text.count("# TYPE %s %s\n" % (name, typ)) == 1, name
        assert "# HELP %s " % name in text, name
    for s in (a, b):
        assert series(text, "moat_upstream_server_up", pool="app", server=s.addr) == 1
        assert series(text, "moat_upstream_server_state", pool="app", server=s.addr,
                      state="up") == 1
        assert series(text, "moat_upstream_server_state", pool="app", server=s.addr,
                      state="draining") == 0
        assert series(text, "moat_upstream_server_in_flight", pool="app", server=s.addr) == 0
        assert series(text, "moat_upstream_ejections_total", pool="app", server=s.addr) == 0
        assert series(text, "moat_upstream_checks_total", pool="app", server=s.addr,
                      result="passed") == 0
    assert series(text, "moat_upstream_in_flight", pool="app") == 0
    assert series(text, "moat_upstream_queue_depth", pool="app") == 0
    assert series(text, "moat_upstream_all_down_total", pool="app") == 0
    # the workers' counters are still there
    assert "moat_requests_received_total" in text
    set_drain(m, a.addr)
    text = metrics_text(m)
    assert series(text, "moat_upstream_server_up", pool="app", server=a.addr) == 0
    assert series(text, "moat_upstream_server_state", pool="app", server=a.addr,
                  state="draining") == 1
    assert series(text, "moat_upstream_server_state", pool="app", server=a.addr,
                  state="up") == 0


def test_metrics_in_flight_during_a_slow_request(upstream, moat_factory):
    m, a, b = two_servers(upstream, moat_factory)
    t, out = slow_in_background(m.https_port, 1500)
    try:
        got = which_got_slow([a, b])
        text = metrics_text(m)
        assert series(text, "moat_upstream_server_in_flight", pool="app", server=got.addr) == 1
        assert series(text, "moat_upstream_in_flight", pool="app") == 1
    finally:
        t.join(30)
    assert out["r"].status == 200
    assert wait_until(lambda: series(metrics_text(m), "moat_upstream_in_flight",
                                     pool="app") == 0, 5)


# ---- 6. outlier ejection shows -----------------------------------------------------------

def test_ejected_server_shows_in_upstreams_and_metrics(upstream, moat_factory):
    ups = [upstream(n) for n in ("a", "b", "c")]
    m = moat_factory({"upstreams": {"app": {
        "servers": [u.addr for u in ups],
        "outlier": {"consecutive_errors": 3, "base_ejection": "30s"}}}})
    # every server answers 500 here: the first to reach 3 errors in a row is ejected, the
    # others are held back by max_ejected_percent (50% of 3: one)
    statuses = send_many(m.https_port, 15, "/status?code=500")
    assert set(statuses) == {500}, statuses
    servers = pool(m)["servers"]
    ejected = [s for s in servers if s["state"] == "ejected"]
    assert len(ejected) == 1, servers
    e = ejected[0]
    assert e["ejections_total"] == 1, e
    assert 20000 < e["ejected_for_ms"] <= 30000, e
    text = metrics_text(m)
    assert series(text, "moat_upstream_ejections_total", pool="app",
                  server=e["address"]) >= 1
    assert series(text, "moat_upstream_server_state", pool="app", server=e["address"],
                  state="ejected") == 1
    assert series(text, "moat_upstream_server_up", pool="app", server=e["address"]) == 0


def test_label_values_are_escaped(upstream, moat_factory, tmp_path):
    """A unix socket path may hold a quote or a backslash: escaped in the label value
    (the text format's \\ and \"), plain in the JSON, and usable percent-encoded."""
    a = upstream("a")
    addr = "unix:" + str(tmp_path / 'q"b\\s.sock')
    m = moat_factory({"upstreams": {"app": {"servers": [a.addr]},
                                    "spare": {"servers": [addr]}}})
    assert server(m, addr, "spare")["state"] == "up"
    text = metrics_text(m)
    want = 'moat_upstream_server_up{pool="spare",server="%s"} 1' % (
        addr.replace("\\", "\\\\").replace('"', '\\"'))
    assert want in text.splitlines(), [l for l in text.splitlines() if "spare" in l]
    assert set_drain(m, addr, pool_name="spare", quote=True)["server"] == addr


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
