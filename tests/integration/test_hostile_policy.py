"""Request policy against hostile clients (issue 11, items 6, 11, 12 and a test gap).

- Look-alike framing headers (Transfer_Encoding, Content.Length...) and client-IP
  headers (True-Client-IP, X-Real-IP, Forwarded...) never reach the upstream from an
  untrusted peer, in any spelling; a trusted proxy's client-IP headers pass, like its
  X-Forwarded-For.
- URL and method override headers (X-Original-URL, X-HTTP-Method-Override...) never
  reach the upstream, whoever sends them.
- Route rules cannot be bypassed with path spellings an upstream normalizes
  (";" parameters, "..;", case, %3b, %20...): each spelling is refused or reaches the
  route the application will serve it from.
- X-Moat-* response headers are stripped whatever identity.strip_response_headers says.
- A session revoked while its lookup is in flight is not cached (see the race test).

The upstreams log exactly what they receive (upstream_server.py's request log and
identutil.CaptureUpstream's raw bytes).
"""

import socket
import subprocess
import threading

import pytest

import authutil as au
import identutil as iu
from moatctl import bearer
from redisutil import delete_session, put_session, session_key


def _raw_names(raw):
    _, hdrs, _ = iu.parse_raw_head(raw)
    return [k for k, _ in hdrs]


def _spellings(name):
    """The spellings a CGI/WSGI-style upstream reads as name."""
    return sorted({name, name.lower(), name.upper(), name.replace("-", "_"),
                   name.replace("-", "."), name.lower().replace("-", "_")})


# ---- item 12: look-alike and client-IP headers ------------------------------------------------

LOOKALIKE = ["Transfer_Encoding: chunked", "transfer.encoding: gzip", "TRANSFER_ENCODING: evil1",
             "Content_Length: 5", "content.length: 7", "CONTENT_LENGTH: 9",
             "Keep_Alive: timeout=1", "Proxy_Connection: evil2", "Proxy.Authorization: Basic eDp5",
             "Content_Type: application/x-evil", "content.type: text/evil"]

CLIENT_IP = ["True-Client-IP", "X-Client-IP", "Client-IP", "X-Real-IP",
             "X-Original-Forwarded-For", "X-Cluster-Client-IP", "Forwarded", "CF-Connecting-IP",
             "Fastly-Client-IP", "X-Forwarded", "Forwarded-For", "X-Originating-IP",
             "X-Remote-IP", "X-Remote-Addr", "X-ProxyUser-IP"]

OVERRIDES = ["X-Original-URL", "X-Rewrite-URL", "X-Override-URL", "X-Original-URI",
             "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]

SPOOF_IP = "6.6.6.6"


def _fold(name):
    return "".join(c.lower() if c.isalnum() else "_" for c in name)


@pytest.fixture
def cap(capture_upstream, moat_factory):
    """moat (base config, no trusted proxies) in front of a raw-capturing upstream."""
    up = capture_upstream("app")
    m = moat_factory({"upstreams": {"app": {"servers": [up.addr]}}})
    return m, up


def _send(port, lines):
    r = iu.raw_request(port, ["GET /x HTTP/1.1", "Host: localhost"] + lines)
    assert r is not None and r.status == 200, r
    return r


def test_lookalike_framing_headers_never_reach_the_upstream(cap):
    m, up = cap
    _send(m.https_port, LOOKALIKE + ["Content-Type: text/plain"])
    (raw,) = up.captured()
    names = _raw_names(raw)
    for line in LOOKALIKE:
        assert line.split(":")[0] not in names, (line, raw)
    assert b"evil" not in raw and b"chunked" not in raw.lower(), raw
    # the real one is kept, once
    assert [n for n in names if _fold(n) == "content_type"] == ["Content-Type"], raw
    assert raw.endswith(b"\r\n\r\n"), raw  # no body: framed by moat alone


@pytest.mark.parametrize("name", CLIENT_IP)
def test_client_ip_headers_from_untrusted_peers_are_stripped(cap, name):
    m, up = cap
    _send(m.https_port, ["%s: %s" % (n, SPOOF_IP) for n in _spellings(name)])
    (raw,) = up.captured()
    assert SPOOF_IP.encode() not in raw, raw
    assert _fold(name) not in [_fold(n) for n in _raw_names(raw)], raw


@pytest.mark.parametrize("name", OVERRIDES)
def test_override_headers_never_reach_the_upstream(capture_upstream, moat_factory,
                                                   name):
    """Not even from a trusted proxy: moat routed the request line it received."""
    up = capture_upstream("app")
    m = moat_factory({"upstreams": {"app": {"servers": [up.addr]}},
                      "identity": {"trusted_proxies": ["127.0.0.1"]}})
    _send(m.https_port, ["%s: %s" % (n, "/admin" if "UR" in name.upper() else "DELETE")
                         for n in _spellings(name)])
    (raw,) = up.captured()
    assert _fold(name) not in [_fold(n) for n in _raw_names(raw)], raw
    assert b"/admin" not in raw and b"DELETE" not in raw, raw


def test_client_ip_headers_from_a_trusted_proxy_pass(capture_upstream, moat_factory):
    """The documented X-Forwarded-* rule: a trusted proxy's client-IP headers are kept."""
    up = capture_upstream("app")
    m = moat_factory({"upstreams": {"app": {"servers": [up.addr]}},
                      "identity": {"trusted_proxies": ["127.0.0.1"]}})
    _send(m.https_port, ["%s: %s" % (n, SPOOF_IP) for n in CLIENT_IP])
    (raw,) = up.captured()
    _, hdrs, _ = iu.parse_raw_head(raw)
    for n in CLIENT_IP:
        assert (n, SPOOF_IP) in hdrs, (n, raw)


# ---- item 6: route rules and path spellings ---------------------------------------------------

BYPASS = [
    # path parameters (Tomcat, Jetty, Spring strip them; "..;" is "..")
    "/admin;jsessionid=x", "/admin;", "/ADMIN;x", "/public/..;/admin", "/public/..;/admin/x",
    "/.;/admin", "/public/.;/../admin",
    # encoded ';', space, controls, '%' (double decoding)
    "/admin%3bx", "/admin%3B/x", "/public/..%3b/admin", "/admin%20", "/admin%20/x", "/admin%09",
    "/admin%00", "/admin%0d%0a", "/%2561dmin", "/public/%252e%252e/admin",
    # case (apps on IIS, case-insensitive Spring / ASP.NET routing)
    "/ADMIN", "/Admin/x", "/aDmIn/",
    # needless encoding, dot segments, slashes, trailing dots (Windows)
    "/%61dmin", "/public/../admin", "/public/%2e%2e/admin", "/public/..%2fadmin", "//admin",
    "/public//../admin", "/public%2f..%2fadmin", "/admin.", "/admin./x", "/admin..",
    # overlong UTF-8, characters that fold to ASCII (dotless i, fullwidth a)
    "/%c0%ae%c0%ae/admin", "/public/%c0%af../admin", "/adm%C4%B1n", "/%EF%BD%81dmin",
]


@pytest.fixture
def routed(redis_server, upstream, moat_factory):
    """/admin needs a session, /public and everything else do not."""
    up = upstream("app")
    m = moat_factory(iu.identity_overrides(
        redis=redis_server, upstreams={"app": up},
        routes=[{"match": {"path_prefix": "/admin"}, "auth": "required", "upstream": "app"},
                {"match": {"path_prefix": "/public"}, "auth": "none", "upstream": "app"},
                {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"}]))
    return m, up, put_session(redis_server, tenant="acme", user="alice", mfa=True)


def test_admin_route_cannot_be_bypassed_by_spelling(routed):
    m, up, token = routed
    got = {}
    for path in BYPASS:
        r = iu.raw_request(m.https_port, ["GET %s HTTP/1.1" % path, "Host: localhost"])
        got[path] = r.status if r is not None else None
    assert all(s in (400, 401) for s in got.values()), got
    assert up.requests() == [], "reached the upstream without a session: %r" % up.requests()
    # what is refused is refused as a bad request, what is routed is routed to /admin
    assert got["/ADMIN"] == got["/Admin/x"] == got["/aDmIn/"] == 401, got
    assert got["/admin;jsessionid=x"] == got["/public/..;/admin"] == got["/admin%3bx"] == 400


def test_canonical_paths_still_routed(routed):
    m, up, token = routed
    for path, auth, want in (("/public/x", [], 200), ("/admin/x", [], 401),
                             ("/admin/x", [bearer(token)], 200),
                             ("/ADMIN/x", [bearer(token)], 200),
                             ("/public/a%3Fb/caf%C3%A9?q=;x%3b", [], 200),
                             ("/other/x", [], 200)):
        r = iu.request(m.https_port, "GET", path, auth)
        assert r is not None and r.status == want, (path, r)
    assert [e["path"] for e in up.requests()][-1].startswith("/other"), up.requests()


def test_path_prefix_must_be_canonical(moat_factory):
    """A prefix no canonical path can spell is refused at load, not silently unmatched."""
    for prefix in ("/admin;x", "/a/../b", "/%61dmin", "/admin.", "//x"):
        m = moat_factory({"routes": [{"match": {"path_prefix": prefix}, "auth": "none",
                                      "upstream": "app"}]},
                         start=False)
        p = subprocess.run([m.binary, "-t", "-c", m.config_path], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode != 0 and "match.path_prefix" in p.stdout + p.stderr, (prefix, p)


# ---- test gap: X-Moat-* response headers with a custom strip list ---------------------------

def test_moat_response_headers_stripped_with_a_custom_strip_list(upstream, moat_factory):
    """identity.strip_response_headers without X-Moat-*: the built-in rule still applies."""
    up = upstream("app")
    m = moat_factory({"identity": {"strip_response_headers": ["Server"]}}, upstream=up)
    path = "/headers?set=X-Moat-Signature:t%3D1&set=X-Moat-Debug:tenant%3Dacme" \
           "&set=x_moat_lower:1&set=X.Moat.Dots:1&set=Server:gunicorn&set=X-Keep:yes"
    r = iu.request(m.https_port, "GET", path)
    assert r is not None and r.status == 200, r
    assert [k for k, _ in r.headers if _fold(k).startswith("x_moat_")] == [], r.headers
    assert r.header_all("X-Keep") == ["yes"]
    assert "gunicorn" not in r.header_all("Server")
    assert len(up.requests()) == 1  # the upstream did send them


# ---- item 11: a revocation that arrives while the lookup is in flight -------------------------

class GateProxy:
    """A TCP relay in front of a real Redis (threads of the test process). While held,
    replies on a connection that has sent HGETALL (moat's lookup connection) are kept
    back until release(); the revocation connection (CLIENT TRACKING, SUBSCRIBE) always
    flows. Events: reply_held (a lookup reply is being kept back) and pushed (bytes
    containing .watch went to moat on a connection that is not held)."""

    def __init__(self, redis_port):
        self.redis_port = redis_port
        self.lock = threading.Lock()
        self.holding = False
        self.released = threading.Event()
        self.reply_held = threading.Event()
        self.pushed = threading.Event()
        self.watch = None
        self.socks = []
        self.stopping = threading.Event()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def hold(self, watch):
        with self.lock:
            self.holding, self.watch = True, watch

    def release(self):
        self.released.set()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.redis_port))
            with self.lock:
                self.socks += [c, s]
            state = {"lookup": False}
            threading.Thread(target=self._up, args=(c, s, state), daemon=True).start()
            threading.Thread(target=self._down, args=(s, c, state), daemon=True).start()

    def _up(self, src, dst, state):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if b"HGETALL" in data.upper():
                    state["lookup"] = True
                dst.sendall(data)
        except OSError:
            pass

    def _down(self, src, dst, state):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    held = self.holding and state["lookup"] and not self.released.is_set()
                    watch = self.watch
                if held:
                    self.reply_held.set()
                    self.released.wait(30)
                dst.sendall(data)
                if not held and watch and watch in data:
                    self.pushed.set()
        except OSError:
            pass

    def stop(self):
        self.stopping.set()
        self.released.set()
        for s in [self.lsock] + self.socks:
            try:
                s.close()
            except OSError:
                pass


def test_revocation_during_lookup_is_not_undone_by_the_reply(upstream, start_moat,
                                                              redis_factory):
    """The session is deleted (push revocation on) while moat's HGETALL reply for it is
    in flight: that request may use the reply, but it must not be cached for cache_ttl
    (5 minutes here): the next request is refused."""
    r = redis_factory()
    gate = GateProxy(r.port)
    try:
        up = upstream("app")
        m = start_moat(au.auth_overrides(gate.addr, redis={"timeout": "20s"},
                                         sessions={"push_revocation": True, "cache_ttl": "5m"},
                                         workers=1), upstream=up)
        au.wait_sessions_ready(m, r, workers=1, push=True)
        tok = put_session(r)
        gate.hold(session_key(tok).encode())
        first = {}
        t = threading.Thread(target=lambda: first.update(r=au.get(m.https_port, "/echo",
                                                                   token=tok, timeout=30)))
        t.start()
        assert gate.reply_held.wait(15), "moat never looked the session up"
        assert delete_session(r, tok) == 1
        assert gate.pushed.wait(15), "the invalidation never reached moat"
        # a request on the same (single) worker: its loop has run since the push arrived
        assert au.get(m.https_port, "/public/x").status == 200
        gate.release()
        t.join(30)
        assert first["r"].status == 200, first["r"]  # the reply predates the revocation
        for _ in range(3):
            resp = au.get(m.https_port, "/echo", token=tok)
            assert resp.status == 401, "a session revoked during its lookup was cached: %r" % resp
    finally:
        gate.stop()
