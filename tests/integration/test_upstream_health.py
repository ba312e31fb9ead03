"""Active upstream health checks (upstreams.NAME.health): servers whose probes fail are
marked down (logged once per change, not per probe) and get no requests; they come back
when the probes pass again. Probes go over TLS when the pool does, send health.host as
Host, and a hostile health endpoint (endless status line, silence, garbage) can neither
stall nor grow moat. A reload keeps each server's verdict; removing health.path stops
the probes."""

import json
import socket
import threading
import time

import pytest

import hostile
import moatctl
from moatctl import curl, wait_until

HEALTH = {"path": "/healthz", "interval": "200ms", "fast_interval": "100ms", "timeout": "500ms",
          "rise": 2, "fall": 2}


# ---- helpers ----------------------------------------------------------------

def stderr_text(m):
    """All of moat's stderr (Moat.stderr() keeps only the tail)."""
    try:
        with open(m.stderr_path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def marks(m, addr, state):
    """How many times moat logged server addr as "down" or "up"."""
    return stderr_text(m).count("server %s is %s" % (addr, state))


def probes(up):
    """Health-check requests an upstream_server.py received."""
    return [e for e in up.requests(include_health=True) if e.get("path") == "/healthz"]


def served(up):
    """Requests other than health checks that an upstream_server.py received."""
    return [e for e in up.requests() if e.get("path") != "/healthz"]


def header(entry, name):
    return [v for k, v in entry.get("headers", []) if k.lower() == name.lower()]


def rewrite(m, cfg):
    """Writes cfg as m's config file (same listeners) and reloads m; waits for it."""
    with open(m.config_path, "w") as f:
        json.dump(cfg, f, indent=2)
    before = stderr_text(m).count("is live")
    m.cfg = cfg
    m.reload()
    assert wait_until(lambda: stderr_text(m).count("is live") > before, 15), stderr_text(m)


def get_many(m, n, path="/echo"):
    return [curl(m.https_port, path) for _ in range(n)]


def health_audit(m):
    return [e for e in m.audit_log() if e.get("event") == "upstream_health"]


class RawServer:
    """A TCP server in threads of the test process: handler(sock, stopping) runs for each
    accepted connection (socket timeouts bound every wait). stop() ends it all."""

    def __init__(self, handler):
        self.handler = handler
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.paths = []  # request paths seen by handlers that record them
        self.sent = []  # bytes sent per connection by handlers that count them
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    @property
    def accepted(self):
        with self.lock:
            return len(self.conns)

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(1.0)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(self, c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def read_head(srv, c, limit=65536):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < limit and not srv.stopping.is_set():
        try:
            data = c.recv(4096)
        except socket.timeout:
            continue
        if not data:
            return None
        buf += data
    return buf if b"\r\n\r\n" in buf else None


def health_500(srv, c):
    """/healthz answers 500, anything else 200 (the path is recorded)."""
    head = read_head(srv, c)
    if head is None:
        return
    path = head.split(b" ", 2)[1].decode("latin-1")
    with srv.lock:
        srv.paths.append(path)
    if path.startswith("/healthz"):
        c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                  b"Connection: close\r\n\r\n")
    else:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nodd")


def endless_status_line(srv, c):
    """A status line that never ends: sends until the peer stops reading or closes."""
    sent = 0
    try:
        c.sendall(b"HTTP/1.1 200 ")
        block = b"A" * 1024
        while not srv.stopping.is_set() and sent < (64 << 20):
            try:
                c.sendall(block)
            except socket.timeout:
                break  # the peer stopped reading
            sent += len(block)
    finally:
        with srv.lock:
            srv.sent.append(sent)


def silent(srv, c):
    """Accepts and never answers; waits for the peer to close."""
    while not srv.stopping.is_set():
        try:
            if not c.recv(4096):
                return
        except socket.timeout:
            continue


def garbage(srv, c):
    read_head(srv, c)
    c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")


@pytest.fixture
def raw_server():
    """Factory: raw_server(handler) -> RawServer (threads of this process), stopped at
    teardown."""
    made = []

    def make(handler):
        s = RawServer(handler)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.stop()


def pool(servers, health=None, **kw):
    p = {"servers": list(servers), "health": dict(HEALTH, **(health or {}))}
    p.update(kw)
    return p


# ---- tests ------------------------------------------------------------------

def test_dead_server_marked_down_once_and_back_up(upstream, moat_factory):
    ups = [upstream("u%d" % i) for i in range(3)]
    m = moat_factory({"upstreams": {"app": pool(u.addr for u in ups)}})
    assert wait_until(lambda: all(len(probes(u)) >= 3 for u in ups), 20), \
        [len(probes(u)) for u in ups]
    assert "is down" not in stderr_text(m)
    h = probes(ups[0])[0]
    assert h["method"] == "GET" and h["version"] == "HTTP/1.1"
    assert header(h, "User-Agent") == ["moat-health-check"]
    assert [v.lower() for v in header(h, "Connection")] == ["close"]

    dead, live = ups[2], ups[:2]
    dead.stop()
    assert wait_until(lambda: marks(m, dead.addr, "down") >= 1, 20), stderr_text(m)
    # many more probe rounds later (seen on the live servers), still one line
    seen = [len(probes(u)) for u in live]
    assert wait_until(lambda: all(len(probes(u)) >= n + 6 for u, n in zip(live, seen)), 20)
    assert marks(m, dead.addr, "down") == 1, stderr_text(m)
    assert "health check: connect_failed" in stderr_text(m)
    ev = [e for e in health_audit(m) if e.get("server") == dead.addr]
    assert [e["state"] for e in ev] == ["down"], ev
    assert ev[0]["pool"] == "app" and ev[0]["check"] == "connect_failed"

    before = [len(served(u)) for u in live]
    rs = get_many(m, 60)
    assert [r.status for r in rs] == [200] * 60, [r for r in rs if r.status != 200][:3]
    assert sum(len(served(u)) - n for u, n in zip(live, before)) == 60
    assert all(r.json()["upstream"] in ("u0", "u1") for r in rs)

    dead.start()  # the same port
    assert wait_until(lambda: marks(m, dead.addr, "up") >= 1, 20), stderr_text(m)
    n = len(probes(dead))
    assert wait_until(lambda: len(probes(dead)) >= n + 4, 20)
    assert marks(m, dead.addr, "up") == 1 and marks(m, dead.addr, "down") == 1, stderr_text(m)
    rs = get_many(m, 60)
    assert all(r.status == 200 for r in rs)
    assert len(served(dead)) > 0
    assert [e["state"] for e in health_audit(m) if e.get("server") == dead.addr] == \
        ["down", "up"]


def test_failing_health_endpoint_gets_no_requests(upstream, moat_factory, raw_server):
    good = upstream("good")
    bad = raw_server(health_500)
    m = moat_factory({"upstreams": {"app": pool([good.addr, bad.addr])}})
    assert wait_until(lambda: marks(m, bad.addr, "down") >= 1, 20), stderr_text(m)
    assert "server %s is down (health check: bad_status, status 500)" % bad.addr in \
        stderr_text(m)
    rs = get_many(m, 20)
    assert all(r.status == 200 and r.json()["upstream"] == "good" for r in rs), rs[:3]
    with bad.lock:
        assert all(p.startswith("/healthz") for p in bad.paths), bad.paths
    assert marks(m, good.addr, "down") == 0


def test_status_range_is_applied(upstream, moat_factory):
    """health.status "201": /healthz's 200 is a failed check; the pool has no server left
    and moat answers 503 at once with Retry-After, while the other pool serves."""
    strict, other = upstream("strict"), upstream("other")
    m = moat_factory({
        "upstreams": {"app": pool([other.addr]),
                      "strict": pool([strict.addr], health={"status": "201"})},
        "routes": [
            {"match": {"path_prefix": "/strict"}, "auth": "none", "upstream": "strict"},
            {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"},
        ]})
    assert wait_until(lambda: marks(m, strict.addr, "down") >= 1, 20), stderr_text(m)
    assert "(health check: bad_status, status 200)" in stderr_text(m)
    r = curl(m.https_port, "/strict/x")
    assert r.status == 503, r
    assert r.header("retry-after") is not None, r
    assert served(strict) == []
    assert curl(m.https_port, "/echo").status == 200
    assert marks(m, other.addr, "down") == 0


def test_health_host_is_sent(upstream, moat_factory):
    named, plain = upstream("named"), upstream("plain")
    m = moat_factory({
        "upstreams": {"app": pool([plain.addr]),
                      "named": pool([named.addr], health={"host": "health.example"})}})
    assert wait_until(lambda: probes(named) and probes(plain), 20)
    assert all(header(e, "Host") == ["health.example"] for e in probes(named)), probes(named)
    assert all(header(e, "Host") == [plain.addr] for e in probes(plain)), probes(plain)
    assert m.alive()


def tls_args():
    return ["--tls-cert", moatctl.CERTS + "/server.crt",
            "--tls-key", moatctl.CERTS + "/server.key"]


def test_checks_over_tls(upstream, moat_factory):
    up = upstream("tls-app", args=tls_args())
    m = moat_factory({"upstreams": {"app": pool(
        [up.addr], tls={"enabled": True, "ca": moatctl.CA})}})
    assert wait_until(lambda: len(probes(up)) >= 3, 20)
    assert "is down" not in stderr_text(m)
    # conn 1 is Upstream.start()'s readiness probe, a plain TCP connect
    assert not [e for e in up.log() if e.get("event") == "tls_failed" and e.get("conn") != 1]
    r = curl(m.https_port, "/over-tls")
    assert r.status == 200 and r.json()["tls"] is True, r


def test_checks_over_tls_with_wrong_ca_mark_down(upstream, moat_factory):
    up = upstream("tls-app", args=tls_args())
    other_ca = moatctl.CERTS + "/server-ec.crt"  # a certificate, not our CA
    m = moat_factory({"upstreams": {"app": pool(
        [up.addr], tls={"enabled": True, "ca": other_ca})}})
    assert wait_until(lambda: marks(m, up.addr, "down") >= 1, 20), stderr_text(m)
    assert "health check: connect_failed" in stderr_text(m)
    assert probes(up) == []  # nothing was sent in clear or over an unverified channel
    r = curl(m.https_port, "/echo")
    assert r.status == 503, r
    assert r.header("retry-after") is not None, r
    assert r.elapsed < 5, r


def test_hostile_health_endpoints(upstream, moat_factory, raw_server):
    good = upstream("good")
    endless, quiet, junk = (raw_server(endless_status_line), raw_server(silent),
                            raw_server(garbage))
    m = moat_factory({"upstreams": {
        "app": pool([good.addr]),
        "endless": pool([endless.addr]),
        "quiet": pool([quiet.addr]),
        "junk": pool([junk.addr]),
    }})
    want = {endless.addr: "invalid_response", quiet.addr: "timeout", junk.addr: "invalid_response"}

    def all_down():
        t = stderr_text(m)
        return all("server %s is down (health check: %s" % (a, c) in t for a, c in want.items())
    assert wait_until(all_down, 20), stderr_text(m)
    rss0 = moatctl.proc_status(m.pid, "VmRSS")
    # keep them probing for a while; moat stays responsive meanwhile
    n = endless.accepted, quiet.accepted
    deadline = time.monotonic() + 30
    while (endless.accepted < n[0] + 8 or quiet.accepted < n[1] + 4) and \
            time.monotonic() < deadline:
        r = curl(m.https_port, "/echo", timeout=10)
        assert r.status == 200, r
        assert r.elapsed < 3, r
    assert endless.accepted >= n[0] + 8 and quiet.accepted >= n[1] + 4
    grown = moatctl.proc_status(m.pid, "VmRSS") - rss0
    if not hostile.SANITIZED:  # ASan's quarantine keeps freed memory
        assert grown < 8 * 1024, "RSS grew by %d KiB" % grown
    for a in want:
        assert marks(m, a, "down") == 1, stderr_text(m)
    # moat closed each endless line: the sender stopped long before its 64 MiB
    with endless.lock:
        assert endless.sent and max(endless.sent) < (16 << 20), endless.sent
    assert marks(m, good.addr, "down") == 0


def test_reload_keeps_down_server_down_and_removal_stops_probes(upstream, moat_factory):
    good = upstream("good")
    dead = moatctl.free_port()  # nothing listens there
    dead_addr = "127.0.0.1:%d" % dead
    m = moat_factory({"upstreams": {"app": pool([good.addr, dead_addr])}})
    assert wait_until(lambda: marks(m, dead_addr, "down") >= 1, 20), stderr_text(m)

    cfg = dict(m.cfg)
    cfg["limits"] = dict(cfg["limits"], drain_timeout="6s")  # any change
    rewrite(m, cfg)
    n = len(probes(good))
    assert wait_until(lambda: len(probes(good)) >= n + 6, 20)  # probing went on
    assert marks(m, dead_addr, "down") == 1, stderr_text(m)
    assert marks(m, dead_addr, "up") == 0, stderr_text(m)
    rs = get_many(m, 10)
    assert all(r.status == 200 for r in rs)

    cfg = json.loads(json.dumps(m.cfg))
    cfg["upstreams"]["app"]["health"]["path"] = None
    rewrite(m, cfg)
    assert "server %s is up (health checks off)" % dead_addr in stderr_text(m)
    time.sleep(0.3)  # a probe in flight at the reload may still land
    n = len(probes(good))
    # many former probe intervals later: no probe at all
    time.sleep(1.5)
    assert len(probes(good)) == n
    assert curl(m.https_port, "/echo").status == 200
    assert m.alive()
