"""HTTP/2 on the client side: negotiation (ALPN h2 / http/1.1, no h2c), each stream a
request through the same phases as HTTP/1.1 (auth, rate limits, identity, tenants,
limits), strict mapping to HTTP/1.1 for the upstream (RFC 9113 8: malformed requests
are refused with RST_STREAM(PROTOCOL_ERROR) or 400 and never forwarded), responses
(bodies whole, no connection-specific headers), the access log's "protocol" field, the
h2 metrics, the http2: settings, a subset of RFC 9113's connection rules, and real
clients (curl --http2, nghttp, h2load).

The client is h2util.H2Conn (python3-h2, plus frames made by hand where h2 refuses).
The defences (floods, resets, timeouts, drain) are in test_http2_hostile.py.
"""

import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse

import pytest

import authutil
import h2util as hu
import identutil as iu
import moatctl
import rlutil
import upstream_server
from h2util import H2Conn, ErrorCodes, SettingCodes, req_headers
from moatctl import CA, Conn, bearer, metrics
from redisutil import put_session

PE = ErrorCodes.PROTOCOL_ERROR
CONNECTION_SPECIFIC = ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade")


# ---- helpers ------------------------------------------------------------------------

def refused(r):
    """RFC 9113 8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR; moat
    may answer 400 instead. Anything else (200, another code, a GOAWAY) is not."""
    return (r.outcome == "reset" and r.reset == PE) or r.status == 400


def upstream_headers(j):
    return [(k, v) for k, v in j["headers"]]


def exact(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def metric(m, name):
    """A counter of moat's /metrics (summed over labels, 0 when absent)."""
    return sum(v for k, v in metrics(m).items() if k == name or k.startswith(name + "{"))


class H1:
    """A kept-alive HTTP/1.1 client with the same fetch() as H2: for tests run over both."""

    proto = "h1"

    def __init__(self, port):
        self.port = port
        self.c = None

    def fetch(self, method, path, headers=(), body=None):
        if self.c is None or self.c.eof:
            self.close()
            self.c = Conn.tls(self.port)
        self.c.request(method, path, headers=list(headers), body=body or b"")
        r = self.c.read_response(method=method)
        if (r.header("connection") or "").lower() == "close":
            self.close()
        return r

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class H2:
    """One HTTP/2 connection; fetch() lowercases header names (as HTTP/2 requires)."""

    proto = "h2"

    def __init__(self, port):
        self.c = H2Conn(port)

    def fetch(self, method, path, headers=(), body=None):
        extra = [(k.lower(), v) for k, v in headers]
        if body is not None:  # as HTTP/1.1's Conn.request and real clients do
            extra.append(("content-length", str(len(body))))
        return self.c.get(path, extra=extra, method=method, body=body)

    def close(self):
        self.c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


CLIENTS = {"h1": H1, "h2": H2}


def alpn_of(port, offer):
    """The protocol moat selects for a client offering `offer` (None: none selected), or
    the ssl.SSLError of a refused handshake."""
    try:
        s = moatctl.tls_connect(port, ctx=moatctl.tls_context(alpn=offer))
    except ssl.SSLError as e:
        return e
    try:
        return s.selected_alpn_protocol()
    finally:
        s.close()


def curl_h2(port, path, tmp_path, *args):
    """curl --http2 against moat; returns (rc, http_version, status, body, stderr)."""
    out = os.path.join(str(tmp_path), "curl-body-%d" % time.monotonic_ns())
    cmd = ["curl", "-q", "-sS", "--http2", "--noproxy", "*", "--cacert", CA,
           "--resolve", "localhost:%d:127.0.0.1" % port, "-o", out,
           "-w", "%{http_version} %{http_code}", "--max-time", "30"] + list(args) \
        + ["https://localhost:%d%s" % (port, path)]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    p = subprocess.run(cmd, capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    version, _, code = p.stdout.decode().strip().partition(" ")
    body = b""
    if os.path.exists(out):
        with open(out, "rb") as f:
            body = f.read()
        os.unlink(out)
    return p.returncode, version, int(code or 0), body, p.stderr.decode("utf-8", "replace")


# ---- negotiation ------------------------------------------------------------------

def test_alpn_offers_h2_and_http11_h2_preferred(proxy):
    assert alpn_of(proxy.port, ["http/1.1", "h2"]) == "h2"  # moat's preference, not ours
    assert alpn_of(proxy.port, ["h2", "http/1.1"]) == "h2"
    assert alpn_of(proxy.port, ["h2"]) == "h2"
    assert alpn_of(proxy.port, ["http/1.1"]) == "http/1.1"
    # no ALPN at all: HTTP/1.1 as before
    with Conn.tls(proxy.port) as c:
        assert c.sock.selected_alpn_protocol() is None
        c.request("GET", "/echo")
        assert c.read_response().status == 200


def test_h2_off_by_config(upstream, start_moat, tmp_path):
    """tls.alpn: ["http/1.1"]: no h2 for anyone; curl --http2 falls back to HTTP/1.1."""
    up = upstream("app")
    m = start_moat({"tls": {"alpn": ["http/1.1"]}}, upstream=up)
    got = alpn_of(m.https_port, ["h2"])
    assert got != "h2", "h2 negotiated although tls.alpn is [http/1.1]"
    assert isinstance(got, ssl.SSLError) or got in (None, "http/1.1"), got
    assert alpn_of(m.https_port, ["h2", "http/1.1"]) == "http/1.1"
    rc, version, status, body, err = curl_h2(m.https_port, "/echo", tmp_path)
    assert rc == 0, err
    assert (version, status) == ("1.1", 200), (version, status, err)
    assert len(up.requests()) == 1


def test_no_h2c_prior_knowledge_on_plain_http_listener(proxy):
    """The plain listener only redirects: an h2c preface is not answered as HTTP/2."""
    with Conn.tcp(proxy.moat.http_port, timeout=5) as c:
        c.send(hu.PREFACE + hu.settings_frame({}))
        c.wait_closed(3)
        got = bytes(c.buf)
    assert got == b"" or got.startswith(b"HTTP/1."), got[:200]
    assert proxy.up.forwarded() == []


def test_no_h2c_upgrade_on_plain_http_listener(proxy):
    req = (b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    with Conn.tcp(proxy.moat.http_port, timeout=5) as c:
        c.send(req)
        r = c.read_response()
    assert r.status == 308, r
    assert proxy.up.forwarded() == []


def test_h2c_upgrade_over_tls_http11_is_not_switched(proxy):
    with Conn.tls(proxy.port) as c:
        c.request("GET", "/echo", headers=[("Connection", "Upgrade, HTTP2-Settings"),
                                           ("Upgrade", "h2c"),
                                           ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        r = c.read_response()
    assert r.status == 200, r
    hdrs = upstream_headers(r.json())
    assert exact(hdrs, "Upgrade") == [] and exact(hdrs, "HTTP2-Settings") == [], hdrs


def test_h2_preface_after_alpn_http11_is_not_served_as_h2(proxy):
    """ALPN chose http/1.1: the connection speaks HTTP/1.1 whatever the client sends."""
    ctx = moatctl.tls_context(alpn=["http/1.1"])
    with Conn(moatctl.tls_connect(proxy.port, ctx=ctx, timeout=5)) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        c.send(hu.PREFACE + hu.settings_frame({}))
        c.wait_closed(3)
        got = bytes(c.buf)
    assert got == b"" or re.match(rb"HTTP/1\.1 (4\d\d|505) ", got), got[:200]
    assert proxy.up.forwarded() == []


# ---- requests and responses ----------------------------------------------------------

def test_get_reaches_upstream_as_http11(proxy):
    with H2Conn(proxy.port) as c:
        r = c.get("/echo?a=1&b=two", extra=[("x-app", "v")])
    assert r.outcome == "response" and r.status == 200, r
    j = r.json()
    assert j["version"] == "HTTP/1.1"
    assert (j["method"], j["target"], j["upstream"]) == ("GET", "/echo?a=1&b=two", "app")
    hdrs = upstream_headers(j)
    assert [k for k, _ in hdrs if k.startswith(":")] == [], hdrs  # no pseudo-header leaks
    assert exact(hdrs, "Host") == ["localhost"], hdrs
    assert exact(hdrs, "x-app") == ["v"], hdrs
    assert exact(hdrs, "X-Forwarded-Proto") == ["https"]
    assert exact(hdrs, "X-Forwarded-For") == ["127.0.0.1"]
    assert len(exact(hdrs, "X-Request-ID")) == 1
    logged = proxy.up.requests()
    assert len(logged) == 1 and logged[0]["version"] == "HTTP/1.1", logged
    assert r.header("x-upstream") == "app"


def test_authority_with_port_becomes_host(proxy):
    auth = "localhost:%d" % proxy.port
    with H2Conn(proxy.port) as c:
        r = c.get("/echo", authority=auth)
        r2 = c.get("/echo", authority=auth, extra=[("host", auth)])  # the same twice: fine
    for x in (r, r2):
        assert x.status == 200, x
        assert exact(upstream_headers(x.json()), "Host") == [auth], x.json()["headers"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_methods(proxy, method):
    with H2Conn(proxy.port) as c:
        r = c.get("/echo", method=method, body=b"payload")
    assert r.status == 200, r
    j = r.json()
    assert (j["method"], j["body_length"]) == (method, 7), j


def test_head_has_no_body(proxy):
    with H2Conn(proxy.port) as c:
        r = c.get("/head", method="HEAD")
        r2 = c.get("/head")
    assert r.status == 200 and r.body == b"", r
    assert r.header("content-length") in (None, "1234"), r
    assert r2.status == 200 and r2.body == upstream_server.HEAD_BODY, r2


@pytest.mark.parametrize("code", [201, 204, 304, 404, 503])
def test_statuses_pass_through(proxy, code):
    with H2Conn(proxy.port) as c:
        r = c.get("/status?code=%d" % code)
    assert r.outcome == "response" and r.status == code, r
    if code in (204, 304):
        assert r.body == b"", r
    else:
        assert r.body == ("status %d\n" % code).encode(), r


def test_request_body_with_content_length(proxy):
    body = os.urandom(300000)
    with H2Conn(proxy.port) as c:
        r = c.get("/echo", method="POST", body=body,
                  extra=[("content-length", str(len(body))),
                         ("content-type", "application/octet-stream")])
    assert r.status == 200, r
    j = r.json()
    assert (j["body_length"], j["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    done = proxy.up.completed()
    assert [(e["body_length"], e["body_sha256"]) for e in done] == \
        [(len(body), hashlib.sha256(body).hexdigest())]


def test_request_body_without_content_length(proxy):
    """No content-length: moat frames the body for HTTP/1.1 itself (chunked or a length),
    and it arrives whole."""
    body = os.urandom(200000)
    with H2Conn(proxy.port) as c:
        sid = c.request(req_headers("POST", "/echo"), body[:50000], end_stream=False)
        time.sleep(0.1)  # a body that trickles in, in several writes
        c.send_data(sid, body[50000:150000])
        c.send_data(sid, body[150000:])
        c.end_stream(sid)
        r = c.response(sid)
    assert r.status == 200, r
    j = r.json()
    assert (j["body_length"], j["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert proxy.up.bad() == []


def test_empty_body_with_end_stream_on_data(proxy):
    with H2Conn(proxy.port) as c:
        r = c.get("/echo", method="POST", body=b"")
    assert r.status == 200 and r.json()["body_length"] == 0, r


def test_large_response_body_8mib(proxy):
    n = 8 << 20
    with H2Conn(proxy.port, timeout=30) as c:  # the default 64 KiB windows: many updates
        r = c.get("/big?bytes=%d" % n, timeout=30)
    assert r.status == 200, r
    assert len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == upstream_server.big_body_sha256(n)
    assert r.header("content-length") in (None, str(n)), r


def test_large_response_bodies_on_concurrent_streams(proxy):
    """Three big bodies at once on one connection, interleaved by moat, each whole."""
    sizes = [3 << 20, 2 << 20, (1 << 20) + 7]
    with H2Conn(proxy.port, timeout=30, window=1 << 22) as c:
        sids = [c.request(req_headers("GET", "/big?bytes=%d" % n)) for n in sizes]
        rs = [c.response(s, 30) for s in sids]
    for n, r in zip(sizes, rs):
        assert r.status == 200 and len(r.body) == n, r
        assert hashlib.sha256(r.body).hexdigest() == upstream_server.big_body_sha256(n)


def test_chunked_and_close_delimited_upstream_responses(proxy):
    with H2Conn(proxy.port) as c:
        a = c.get("/chunked?n=40&size=1000")
        b = c.get("/close?bytes=50000")
    assert a.status == 200 and a.body == upstream_server.chunked_body(40, 1000), a
    assert b.status == 200 and b.body == upstream_server.close_body(50000), b
    for r in (a, b):
        for name in CONNECTION_SPECIFIC:
            assert r.header(name) is None, (name, r)


def test_no_connection_specific_headers_in_response(proxy):
    q = "&".join("set=" + urllib.parse.quote(h) for h in [
        "Connection:keep-alive, X-Hop", "Keep-Alive:timeout=5", "Proxy-Connection:keep-alive",
        "Upgrade:websocket", "X-Hop:1", "X-App:kept"])
    with H2Conn(proxy.port) as c:
        r = c.get("/headers?" + q)
    assert r.status == 200, r
    names = [k for k, _ in r.headers]
    for name in CONNECTION_SPECIFIC + ("x-hop",):  # X-Hop: nominated by Connection
        assert name not in [k.lower() for k in names], (name, r.headers)
    assert names == [k.lower() for k in names], "uppercase response header names: %r" % names
    assert [k for k in names if k.startswith(":")] == [":status"], names
    assert r.header("x-app") == "kept"


def test_streams_are_multiplexed_without_head_of_line_blocking(proxy):
    with H2Conn(proxy.port) as c:
        slow = c.request(req_headers("GET", "/slow?ms=1500"))
        t0 = time.monotonic()
        fast = c.response(c.request(req_headers("GET", "/echo?fast")))
        fast_t = time.monotonic() - t0
        r = c.response(slow)
    assert fast.status == 200 and fast.json()["query"] == "fast", fast
    assert fast_t < 1.0, "the fast stream waited for the slow one: %.2fs" % fast_t
    assert r.status == 200, r


def test_many_streams_answered_each_with_its_own_response(proxy):
    with H2Conn(proxy.port) as c:
        sids = {c.request(req_headers("GET", "/echo?i=%d" % i)): i for i in range(60)}
        got = {sid: c.response(sid) for sid in sids}
    for sid, i in sids.items():
        assert got[sid].status == 200, got[sid]
        assert got[sid].json()["query"] == "i=%d" % i
    assert sorted(e["query"] for e in proxy.up.requests()) == sorted("i=%d" % i
                                                                    for i in range(60))


def test_split_cookie_fields_joined_into_one_cookie_header(proxy):
    with H2Conn(proxy.port) as c:
        r = c.get("/echo", extra=[("cookie", "a=1"), ("x-other", "o"), ("cookie", "b=2"),
                                  ("cookie", "c=3; d=4")])
    assert r.status == 200, r
    hdrs = upstream_headers(r.json())
    assert exact(hdrs, "Cookie") == ["a=1; b=2; c=3; d=4"], hdrs
    logged = proxy.up.requests()[0]["headers"]
    assert len([v for k, v in logged if k.lower() == "cookie"]) == 1, logged


def test_te_trailers_and_matching_host_are_accepted(proxy):
    with H2Conn(proxy.port) as c:
        a = c.get("/echo?te", extra=[("te", "trailers")])
        b = c.get("/echo?host", extra=[("host", "localhost")])
    assert a.status == 200 and b.status == 200, (a, b)
    assert exact(upstream_headers(a.json()), "TE") == []  # hop-by-hop, as over HTTP/1.1
    assert exact(upstream_headers(b.json()), "Host") == ["localhost"]


def test_request_trailers_never_reach_upstream(capture_upstream, start_moat):
    """Trailers sent by an h2 client are dropped (as over HTTP/1.1), or the request is
    refused: what the upstream gets never carries them."""
    cap = capture_upstream("capture")
    m = start_moat(upstream=cap)
    with H2Conn(m.https_port) as c:
        sid = c.request(req_headers("POST", "/echo"), b"hello", end_stream=False)
        c.send_trailers(sid, [("x-tenant-id", "evil-tenant"), ("x-trailer", "t")])
        r = c.response(sid)
    for raw in cap.captured():
        assert b"evil-tenant" not in raw and b"x-trailer" not in raw.lower(), raw
    if r.status == 200:
        raw = r.json()["raw"].encode("latin-1")
        assert raw.endswith(b"hello") or raw.endswith(b"0\r\n\r\n"), raw
    else:
        assert refused(r), r


# ---- strict mapping (RFC 9113 8) ---------------------------------------------------

def _req(path, extra=(), method="GET", authority="localhost"):
    return [(":method", method), (":scheme", "https"), (":authority", authority),
            (":path", path)] + list(extra)


def _without(name):
    return lambda p: [h for h in _req(p) if h[0] != name]


def _pseudo_plus(extra):
    """The four pseudo-headers, one more pseudo-header, then a regular header."""
    return lambda p: _req(p)[:4] + [extra, ("x-a", "1")]


MALFORMED = {
    "connection": lambda p: _req(p, [("connection", "keep-alive")]),
    "connection_close": lambda p: _req(p, [("connection", "close")]),
    "keep_alive": lambda p: _req(p, [("keep-alive", "timeout=5")]),
    "proxy_connection": lambda p: _req(p, [("proxy-connection", "keep-alive")]),
    "transfer_encoding": lambda p: _req(p, [("transfer-encoding", "chunked")]),
    "upgrade": lambda p: _req(p, [("upgrade", "websocket")]),
    "te_gzip": lambda p: _req(p, [("te", "gzip")]),
    "te_trailers_and_gzip": lambda p: _req(p, [("te", "trailers, gzip")]),
    "uppercase_name": lambda p: _req(p, [("X-Foo", "1")]),
    "uppercase_identity_name": lambda p: _req(p, [("X-Tenant-ID", "evil")]),
    "uppercase_pseudo": lambda p: [(":METHOD", "GET")] + _req(p)[1:],
    "cr_in_value": lambda p: _req(p, [("x-foo", "a\rb")]),
    "lf_in_value": lambda p: _req(p, [("x-foo", "a\nb")]),
    "crlf_header_injection": lambda p: _req(p, [("x-foo", "a\r\nx-tenant-id: evil")]),
    "nul_in_value": lambda p: _req(p, [("x-foo", "a\x00b")]),
    "cr_in_name": lambda p: _req(p, [("x-f\roo", "a")]),
    "lf_in_name": lambda p: _req(p, [("x-f\noo", "a")]),
    "nul_in_name": lambda p: _req(p, [("x-f\x00oo", "a")]),
    "space_in_name": lambda p: _req(p, [("x foo", "a")]),
    "colon_in_name": lambda p: _req(p, [("x-tenant-id:evil", "a")]),
    "empty_name": lambda p: _req(p, [("", "a")]),
    "crlf_in_path": lambda p: _req(p + "\r\nx-tenant-id: evil"),
    "space_in_path": lambda p: _req(p + "x y"),
    "crlf_in_method": lambda p: _req(p, method="GET /x HTTP/1.1\r\nx:"),
    "crlf_in_authority": lambda p: _req(p, authority="localhost\r\nx-tenant-id: evil"),
    "pseudo_after_regular": lambda p: _req(p)[:2] + [("x-a", "1")] + _req(p)[2:],
    "repeated_path": _pseudo_plus((":path", "/other")),
    "repeated_method": _pseudo_plus((":method", "POST")),
    "repeated_authority": _pseudo_plus((":authority", "evil.example")),
    "repeated_scheme": _pseudo_plus((":scheme", "http")),
    "unknown_pseudo": _pseudo_plus((":foo", "bar")),
    "status_pseudo_in_request": _pseudo_plus((":status", "200")),
    "missing_method": _without(":method"),
    "missing_scheme": _without(":scheme"),
    "missing_path": _without(":path"),
    "empty_path": lambda p: [h if h[0] != ":path" else (":path", "") for h in _req(p)],
    "authority_disagrees_with_host": lambda p: _req(p, [("host", "evil.example")]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_refused_and_not_forwarded(proxy, case):
    path = "/malformed?case=" + case
    with H2Conn(proxy.port, lenient=True) as c:
        r = c.response(c.request(MALFORMED[case](path)), timeout=5)
        assert refused(r), "%s: %r (%s)" % (case, r, c.describe())
        # a stream error: the connection (and its HPACK state) goes on
        after = c.get("/echo?after")
        assert after.status == 200, (after, c.describe())
    time.sleep(0.2)
    assert [e.get("query") for e in proxy.up.forwarded()] == ["after"], proxy.up.log()


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"

# name -> (content-length values, DATA frames): all sent in one write with the HEADERS
CL_CASES = {
    "fewer_bytes": (["10"], [b"12345"]),
    "fewer_bytes_in_two_frames": (["10"], [b"123", b"45"]),
    "no_data_at_all": (["5"], []),
    "more_bytes": (["5"], [b"1234567890"]),
    "more_bytes_in_second_frame": (["5"], [b"123", b"456"]),
    "zero_then_smuggled_request": (["0"], [SMUGGLED]),
    "short_then_smuggled_request": (["4"], [b"abcd" + SMUGGLED]),
    "two_differing_values": (["5", "6"], [b"12345"]),
    "not_a_number": (["5x"], [b"12345"]),
    "negative": (["-1"], [b"12345"]),
}


@pytest.mark.parametrize("case", sorted(CL_CASES))
def test_content_length_disagreeing_with_data_refused(proxy, case):
    """H2.CL: the DATA frames must add up to content-length. Like chunked-body errors over
    HTTP/1.1, the head may have gone out before the body proved it wrong: the upstream
    must never receive a complete request (nor anything smuggled in the body)."""
    cls, parts = CL_CASES[case]
    hdrs = _req("/cl?case=" + case, [("content-length", v) for v in cls], method="POST")
    with H2Conn(proxy.port, lenient=True) as c:
        r = c.response(c.request(hdrs, list(parts)), timeout=5)
        assert refused(r), "%s: %r (%s)" % (case, r, c.describe())
        after = c.get("/echo?after")
        assert after.status == 200, (after, c.describe())
    time.sleep(0.3)
    log = proxy.up.log()
    assert [e for e in proxy.up.completed() if e["path"] == "/cl"] == [], log
    assert not any("smuggled" in str(e) for e in log), log
    assert proxy.up.bad() == [], log


def test_content_length_matching_data_passes(proxy):
    with H2Conn(proxy.port) as c:
        r = c.response(c.request(_req("/echo", [("content-length", "10")], method="POST"),
                                 [b"12345", b"67890"]))
    assert r.status == 200 and r.json()["body_length"] == 10, r


def test_h2_cl_smuggling_over_reused_upstream_connection(upstream, start_moat):
    """The classic H2.CL attack needs a kept-alive upstream connection: warm it, then
    send content-length 0 with a request in the DATA. The upstream sees the warm-up and
    the follow-up on that connection and nothing else."""
    up = upstream("app")
    m = start_moat({"workers": 1}, upstream=up)
    with H2Conn(m.https_port, lenient=True) as c:
        assert c.get("/echo?warm").status == 200
        r = c.response(c.request(_req("/cl", [("content-length", "0")], method="POST"),
                                 [SMUGGLED]), timeout=5)
        assert refused(r), r
        assert c.get("/echo?after").status == 200
    time.sleep(0.3)
    assert not any("smuggled" in str(e) for e in up.log()), up.log()
    assert [e for e in up.completed() if e["path"] == "/cl"] == [], up.log()


# ---- the same phases as HTTP/1.1 ---------------------------------------------------

@pytest.fixture
def auth_env(upstream, start_moat, redis_server):
    up = upstream("app")
    m = start_moat(authutil.auth_overrides(redis_server.addr), upstream=up)
    authutil.wait_sessions_ready(m, redis_server)

    class E:
        pass
    e = E()
    e.up, e.m, e.redis, e.port = up, m, redis_server, m.https_port
    return e


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_auth_rejections_same_over_both(auth_env, proto):
    no_mfa = put_session(auth_env.redis, tenant="acme", user="alice", mfa=0)
    with CLIENTS[proto](auth_env.port) as c:
        r = c.fetch("GET", "/echo")
        assert r.status == 401, r
        assert r.header("www-authenticate") == 'Bearer realm="moat"', r
        r = c.fetch("GET", "/echo", [("Authorization", "Bearer " + "x" * 40)])
        assert r.status == 401, r
        assert r.header("www-authenticate") == 'Bearer realm="moat", error="invalid_token"'
        r = c.fetch("GET", "/web/page?x=1")
        assert r.status == 302, r
        assert r.header("location") == "/login?return_to=" + urllib.parse.quote(
            "/web/page?x=1", safe="/"), r
        r = c.fetch("GET", "/admin/users", [("Authorization", "Bearer " + no_mfa)])
        assert r.status == 403, r
    assert auth_env.up.requests() == []
    # the audit trail says which protocol each rejected request came on
    want = "HTTP/2" if proto == "h2" else "HTTP/1.1"
    events = [e for e in auth_env.m.audit_log() if e.get("event") == "auth_rejected"]
    # (the fixture's readiness probes came before, over HTTP/1.1)
    assert sum(e.get("protocol") == want for e in events[-4:]) == 4, events


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_auth_sessions_carry_identity(auth_env, proto):
    tok = put_session(auth_env.redis, tenant="acme", user="alice@acme.example", mfa=1)
    cookie = [("Cookie", "theme=dark; session=%s; lang=en" % tok)] if proto == "h1" else \
        [("cookie", "theme=dark"), ("cookie", "session=" + tok), ("cookie", "lang=en")]
    with CLIENTS[proto](auth_env.port) as c:
        for hdrs in ([("Authorization", "Bearer " + tok)], cookie):
            r = c.fetch("GET", "/admin/echo", hdrs)
            ident = authutil.identity(r)
            assert ident["X-Tenant-ID"] == ["acme"], ident
            assert ident["X-User-ID"] == ["alice@acme.example"], ident
            assert ident["X-Session-MFA"] == ["1"], ident
    assert len(auth_env.up.requests()) == 2


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_rate_limit_429(upstream, start_moat, proto):
    up = upstream("app")
    m = start_moat(rlutil.overrides([rlutil.rl_route(
        "/rl", [{"key": "ip", "rate": "1/m", "burst": 2, "id": "h2test"}])]), upstream=up)
    with CLIENTS[proto](m.https_port) as c:
        rs = [c.fetch("GET", "/rl/x?i=%d" % i) for i in range(4)]
        assert [r.status for r in rs] == [200, 200, 429, 429], rs
        assert rlutil.retry_after(rs[2]) >= 30
        assert c.fetch("GET", "/other").status == 200  # other routes are not limited
    assert len([e for e in up.requests() if e["path"] == "/rl/x"]) == 2


def test_rate_limit_exact_for_concurrent_streams(upstream, start_moat):
    up = upstream("app")
    m = start_moat(rlutil.overrides([rlutil.rl_route(
        "/rl", [{"key": "ip", "rate": "1/h", "burst": 5, "id": "h2conc"}])]), upstream=up)
    with H2Conn(m.https_port) as c:
        sids = [c.request(req_headers("GET", "/rl/x?i=%d" % i)) for i in range(30)]
        statuses = [c.response(s).status for s in sids]
    assert statuses.count(200) == 5 and statuses.count(429) == 25, statuses
    assert len([e for e in up.requests() if e["path"] == "/rl/x"]) == 5


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_non_canonical_path_is_400(proxy, proto):
    with CLIENTS[proto](proxy.port) as c:
        for path in ("/a/../echo", "/a//echo", "/a;x=1/echo", "/a/%2e%2e/echo"):
            r = c.fetch("GET", path)
            assert r.status == 400, (path, r)
    assert proxy.up.forwarded() == []


@pytest.fixture
def limited(upstream, start_moat):
    up = upstream("app")
    m = start_moat({"limits": {"max_body_bytes": 1000}}, upstream=up)
    return m, up


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_header_limits(proxy, proto):
    with CLIENTS[proto](proxy.port) as c:
        ok = c.fetch("GET", "/echo?ok", [("X-Big", "a" * 8000)])
        assert ok.status == 200, ok
    for hdrs in ([("X-Big", "a" * 20000)], [("X-H%d" % i, "v") for i in range(150)]):
        with CLIENTS[proto](proxy.port) as c:
            r = c.fetch("GET", "/echo?too-big", hdrs)
            if proto == "h1":
                assert r.status == 431, r
            else:  # 431, or the stream or the connection refused
                assert r.status == 431 or r.outcome in ("reset", "goaway", "closed"), r
    time.sleep(0.2)
    assert [e["query"] for e in proxy.up.forwarded()] == ["ok"]


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_body_over_max_body_bytes_is_413(limited, proto):
    m, up = limited
    with CLIENTS[proto](m.https_port) as c:
        assert c.fetch("POST", "/echo?ok", body=b"x" * 1000).status == 200
    with CLIENTS[proto](m.https_port) as c:
        r = c.fetch("POST", "/echo?big", body=b"x" * 5000)
        assert r.status == 413, r
    time.sleep(0.2)
    assert [e["query"] for e in up.forwarded()] == ["ok"]


def test_body_over_max_body_bytes_without_content_length(limited):
    m, up = limited
    with H2Conn(m.https_port) as c:
        sid = c.request(req_headers("POST", "/echo?big"), b"x" * 800, end_stream=False)
        c.send_data(sid, b"x" * 800, end_stream=True)
        r = c.response(sid)
    assert r.status == 413 or r.outcome == "reset", r
    time.sleep(0.2)
    assert up.completed() == [], up.log()


# ---- identity over HTTP/2 -----------------------------------------------------------

EVIL = "evil-tenant"

H2_SPOOFS = {
    "exact": [("x-tenant-id", EVIL), ("x-user-id", "root"), ("x-session-mfa", "1")],
    "duplicates": [("x-tenant-id", EVIL), ("x-tenant-id", EVIL + "-2"), ("x-user-id", "root"),
                   ("x-user-id", "admin")],
    "empty_values": [("x-tenant-id", ""), ("x-user-id", ""), ("x-session-mfa", "")],
    "underscore": [("x_tenant_id", EVIL), ("x_user_id", "root"), ("x_session_mfa", "1")],
    "dots": [("x.tenant.id", EVIL), ("x.user.id", "root"), ("x.session.mfa", "1")],
    "other_punctuation": [("x~tenant+id", EVIL), ("x!user#id", "root"),
                          ("x'session|mfa", "1"), ("x*tenant^id", EVIL)],
    "moat_prefix": [("x-moat-signature", "t=1700000000,v1=" + "0" * 64),
                    ("x-moat-tenant", EVIL), ("x_moat_debug", "1")],
    "forwarded": [("x-forwarded-for", "6.6.6.6"), ("x-request-id", "evil"),
                  ("x-forwarded-host", "evil.example"), ("x-real-ip", "6.6.6.6")],
}


def assert_only_moat_identity(hdrs, tenant="acme", user="alice", mfa="0"):
    for name, want in (("X-Tenant-ID", tenant), ("X-User-ID", user), ("X-Session-MFA", mfa)):
        got = [(k, v) for k, v in hdrs if iu.fold(k) == iu.fold(name)]
        assert got == [(name, want)], "%s at the upstream: %r (all: %r)" % (name, got, hdrs)
    assert [k for k, _ in iu.loose_prefix(hdrs, "X-Moat-")] == ["X-Moat-Signature"], hdrs
    for k, v in hdrs:
        assert "evil" not in v and "6.6.6.6" not in v and "evil" not in k.lower(), (k, v, hdrs)
    assert exact(hdrs, "X-Forwarded-For") == ["127.0.0.1"], hdrs
    assert exact(hdrs, "X-Request-ID") != ["evil"], hdrs


@pytest.fixture
def gw(tmp_path, redis_server, upstream, start_moat):
    up = upstream("app")
    key = iu.make_signing_key(tmp_path)
    m = start_moat(iu.identity_overrides(
        redis=redis_server, upstreams={"app": up}, signing_key=key,
        routes=[{"match": {"path_prefix": "/anon"}, "auth": "none", "upstream": "app"},
                {"match": {"path_prefix": "/opt"}, "auth": "optional", "upstream": "app"},
                {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"}]))
    token = put_session(redis_server, tenant="acme", user="alice", mfa=False)

    class G:
        pass
    g = G()
    g.moat, g.up, g.key, g.token, g.port = m, up, key, token, m.https_port
    return g


@pytest.mark.parametrize("form", sorted(H2_SPOOFS))
def test_spoofed_identity_replaced_by_session(gw, form, tmp_path):
    with H2Conn(gw.port) as c:
        r = c.get("/echo?form=" + form,
                  extra=H2_SPOOFS[form] + [("authorization", "Bearer " + gw.token)])
    assert r.status == 200, r
    j = r.json()
    assert_only_moat_identity(upstream_headers(j))
    logged = [e for e in gw.up.requests() if e["query"] == "form=" + form]
    assert len(logged) == 1, gw.up.requests()
    assert_only_moat_identity([tuple(h) for h in logged[0]["headers"]])
    rc, out = iu.run_verifier(iu.dump_from_echo(j), gw.key, tmp_path)
    assert rc == 0, out


def test_spoofed_identity_dropped_for_anonymous(gw):
    with H2Conn(gw.port) as c:
        r = c.get("/opt/echo", extra=H2_SPOOFS["exact"] + H2_SPOOFS["underscore"])
        r2 = c.get("/echo", extra=H2_SPOOFS["exact"])  # required route, no session
    assert r.status == 200, r
    hdrs = upstream_headers(r.json())
    for name in iu.IDENTITY_HEADERS:
        assert iu.loose(hdrs, name) == [], (name, hdrs)
    assert r2.status == 401, r2
    assert len(gw.up.requests()) == 1


def test_streams_of_one_connection_keep_their_own_identity(gw, redis_server):
    """Sessions are per request, not per connection: interleaved streams of one
    connection, each with another session (or none), get each their own identity."""
    other = put_session(redis_server, tenant="globex", user="bob", mfa=True)
    with H2Conn(gw.port) as c:
        plan = []
        for i in range(6):
            who = ("acme", "globex", None)[i % 3]
            extra = [("authorization", "Bearer " + (gw.token if who == "acme" else other))] \
                if who else []
            path = ("/echo?i=%d" % i) if who else ("/opt/echo?i=%d" % i)
            plan.append((c.request(req_headers("GET", path, extra=extra)), who))
        results = [(c.response(s), who) for s, who in plan]
    for r, who in results:
        assert r.status == 200, r
        hdrs = upstream_headers(r.json())
        if who is None:
            assert iu.loose(hdrs, "X-Tenant-ID") == [], hdrs
        else:
            assert exact(hdrs, "X-Tenant-ID") == [who], (who, hdrs)


def test_tenant_pinning_per_stream(tmp_path, redis_server, upstream, start_moat):
    shared, acme_up = upstream("shared"), upstream("acme-dedicated")
    m = start_moat(iu.identity_overrides(
        redis=redis_server, upstreams={"app": shared, "acme-dedicated": acme_up},
        tenants={"acme": {"upstream": "acme-dedicated"}},
        routes=[{"match": {"path_prefix": "/public"}, "auth": "none", "upstream": "app"},
                {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"}]))
    tok = {t: put_session(redis_server, tenant=t, user="u-" + t) for t in ("acme", "globex")}
    with H2Conn(m.https_port) as c:
        sids = []
        for i in range(9):
            who = ("acme", "globex", None)[i % 3]
            if who:
                sids.append((c.request(req_headers("GET", "/x?i=%d" % i,
                                                   extra=[bearer(tok[who])])), who))
            else:
                sids.append((c.request(req_headers("GET", "/public/x?i=%d" % i)), who))
        results = [(c.response(s), who) for s, who in sids]
    for r, who in results:
        assert r.status == 200, r
        want = "acme-dedicated" if who == "acme" else "shared"
        assert r.json()["upstream"] == want, (who, r.json())
    for e in acme_up.requests():
        assert iu.loose([tuple(h) for h in e["headers"]], "X-Tenant-ID") == ["acme"], e
    assert len(acme_up.requests()) == 3 and len(shared.requests()) == 6


# ---- access log and metrics ---------------------------------------------------------

def test_access_log_protocol_field(proxy):
    m = proxy.moat
    with Conn.tls(proxy.port) as c:
        c.request("GET", "/echo/h11")
        assert c.read_response().status == 200
    r, _ = moatctl.raw_exchange(proxy.port, b"GET /echo/h10 HTTP/1.0\r\nHost: localhost\r\n\r\n")
    assert r is not None and r.status == 200, r
    with H2Conn(proxy.port) as c:
        for i in range(2):
            assert c.get("/echo/h2?i=%d" % i).status == 200
    lines = m.wait_access_log(4)
    by = {}
    for e in lines:
        by.setdefault(str(e.get("path", "")).split("?")[0], []).append(e)
    assert [e.get("protocol") for e in by["/echo/h11"]] == ["HTTP/1.1"], lines
    assert [e.get("protocol") for e in by["/echo/h10"]] == ["HTTP/1.0"], lines
    h2lines = by["/echo/h2"]
    assert [e.get("protocol") for e in h2lines] == ["HTTP/2", "HTTP/2"], lines
    for e in h2lines:
        assert (e["method"], e["status"], e["client_ip"]) == ("GET", 200, "127.0.0.1"), e
        assert e["tls_version"] in ("TLSv1.2", "TLSv1.3") and e["bytes_out"] > 0, e
    # one request id per stream, the one the upstream saw
    ids = [e["request_id"] for e in h2lines]
    assert len(set(ids)) == 2 and all(ids), ids
    seen = [v for q in proxy.up.requests() for k, v in q["headers"]
            if k.lower() == "x-request-id" and q["path"] == "/echo/h2"]
    assert sorted(seen) == sorted(ids)


def test_h2_metrics(proxy):
    m = proxy.moat
    names = ("moat_h2_connections_total", "moat_h2_streams_total",
             "moat_h2_resets_received_total")
    for n in names + ("moat_h2_glitches_total", "moat_h2_calm_goaways_total"):
        assert any(k == n or k.startswith(n + "{") for k in metrics(m)), (n, sorted(metrics(m)))
    before = {n: metric(m, n) for n in names}
    for _ in range(2):
        with H2Conn(proxy.port) as c:
            for i in range(3):
                assert c.get("/echo?i=%d" % i).status == 200
            sid = c.request(req_headers("GET", "/slow?ms=2000"))
            c.reset(sid)
            assert c.get("/echo").status == 200  # the reset was read before this answer
    with Conn.tls(proxy.port) as c:  # HTTP/1.1 is not counted
        c.request("GET", "/echo")
        assert c.read_response().status == 200

    def grown():
        return {n: metric(m, n) - before[n] for n in names}
    moatctl.wait_until(lambda: grown()["moat_h2_connections_total"] >= 2, 3)
    g = grown()
    assert g["moat_h2_connections_total"] == 2, g
    assert g["moat_h2_streams_total"] == 10, g
    assert g["moat_h2_resets_received_total"] == 2, g
    assert metric(m, "moat_h2_calm_goaways_total") == 0


# ---- http2: settings --------------------------------------------------------------

def test_server_settings_defaults(proxy):
    with H2Conn(proxy.port) as c:
        assert c.wait_ready(), c.describe()
        s = c.server_settings
    assert s.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 100, s
    assert s.get(SettingCodes.INITIAL_WINDOW_SIZE, 65535) == 65535, s
    assert s.get(SettingCodes.HEADER_TABLE_SIZE, 4096) == 4096, s
    assert s.get(SettingCodes.ENABLE_PUSH, 0) == 0, s  # a server may only say 0
    assert s.get(SettingCodes.MAX_FRAME_SIZE, 16384) >= 16384, s


def test_server_settings_follow_config(upstream, start_moat):
    up = upstream("app")
    m = start_moat({"http2": {"max_concurrent_streams": 7, "initial_window_size": 1048576,
                              "header_table_size": 1024}}, upstream=up)
    body = os.urandom(900000)
    with H2Conn(m.https_port) as c:
        assert c.wait_ready(), c.describe()
        s = c.server_settings
        # the 1 MiB stream window is moat's: the body fits in it (past the connection
        # window of 64 KiB moat must open with a WINDOW_UPDATE on stream 0)
        r = c.get("/echo", method="POST", body=body)
    assert s.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 7, s
    assert s.get(SettingCodes.INITIAL_WINDOW_SIZE) == 1048576, s
    assert s.get(SettingCodes.HEADER_TABLE_SIZE) == 1024, s
    assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest(), r


def test_small_initial_window_upload(upstream, start_moat):
    """moat's stream window 16 KiB: a 500 kB upload proceeds on its WINDOW_UPDATEs (h2
    never sends beyond the window, so a moat that forgot one would stall the test)."""
    up = upstream("app")
    m = start_moat({"http2": {"initial_window_size": 16384}}, upstream=up)
    body = os.urandom(500000)
    with H2Conn(m.https_port) as c:
        assert c.wait_ready()
        assert c.server_settings.get(SettingCodes.INITIAL_WINDOW_SIZE) == 16384
        r = c.get("/echo", method="POST", body=body, timeout=20)
    assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest(), r


def test_small_header_table_size_is_respected(upstream, start_moat):
    """header_table_size 256: h2 sizes its encoder's table down; many distinct headers over
    many requests still decode right (moat's decoder evicts as the peer does)."""
    up = upstream("app")
    m = start_moat({"http2": {"header_table_size": 256}}, upstream=up)
    with H2Conn(m.https_port) as c:
        for i in range(30):
            r = c.get("/echo?i=%d" % i, extra=[("x-h%d" % (i % 7), "v" * (i * 3)),
                                               ("x-same", "same")])
            assert r.status == 200, r
            hdrs = upstream_headers(r.json())
            assert exact(hdrs, "x-h%d" % (i % 7)) == ["v" * (i * 3)], hdrs


def test_max_streams_per_read_loses_no_stream(upstream, start_moat):
    """max_streams_per_read 2: 40 requests in one write are all answered."""
    up = upstream("app")
    m = start_moat({"http2": {"max_streams_per_read": 2}}, upstream=up)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready()
        out = b"".join(hu.request_frames(c.next_stream_id(), req_headers("GET", "/echo?i=%d" % i))
                       for i in range(40))
        c.send_raw(out)
        rs = [c.response(sid) for sid in range(1, 81, 2)]
    assert [r.status for r in rs] == [200] * 40, rs
    assert sorted(r.json()["query"] for r in rs) == sorted("i=%d" % i for i in range(40))


# ---- RFC 9113: connection rules -----------------------------------------------------

def assert_connection_error(c, code, timeout=5):
    """A GOAWAY with code, then the connection ends."""
    c.wait_goaway_or_close(timeout)
    g = c.goaway()
    assert g is not None, "no GOAWAY: %s" % c.describe()
    assert g.error_code == code, "GOAWAY %s, want %s: %s" % (
        hu.code_name(g.error_code), hu.code_name(code), c.describe())
    assert c.wait_closed(timeout), "connection left open after GOAWAY %r" % (g,)


def test_preface_settings_exchange(proxy):
    with H2Conn(proxy.port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        first = c.frames[0]
        assert (first.type, first.flags & hu.ACK, first.stream_id) == (hu.SETTINGS, 0, 0), \
            c.frames[:3]
        assert first.length % 6 == 0
        assert c.settings_acks == 1
        r = c.get("/echo")
        assert r.status == 200, r
        assert c.goaway() is None and not c.closed()


def test_bad_preface_closes(proxy):
    with Conn.tls(proxy.port, ctx=moatctl.tls_context(alpn=["h2"])) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + hu.settings_frame({}))
        assert c.wait_closed(5)
    assert proxy.up.forwarded() == []


def test_ping_ack_same_payload(proxy):
    with H2Conn(proxy.port) as c:
        for payload in (b"\x00" * 8, b"moatping", bytes(range(8))):
            c.ping(payload)
            assert c.wait_ping_ack(payload), c.describe()
        assert c.ping_acks == [b"\x00" * 8, b"moatping", bytes(range(8))]


def test_ping_with_bad_length_is_frame_size_error(proxy):
    with H2Conn(proxy.port) as c:
        c.send_raw(hu.frame(hu.PING, 0, 0, b"1234567"))
        assert_connection_error(c, ErrorCodes.FRAME_SIZE_ERROR)


def test_data_on_stream_zero_is_protocol_error(proxy):
    with H2Conn(proxy.port) as c:
        c.send_raw(hu.frame(hu.DATA, 0, 0, b"abc"))
        assert_connection_error(c, PE)


def test_headers_on_even_stream_is_protocol_error(proxy):
    with H2Conn(proxy.port, raw=True) as c:
        c.send_raw(hu.headers_frame(2, hu.encode_block(req_headers())))
        assert_connection_error(c, PE)
    assert proxy.up.forwarded() == []


def test_lower_stream_id_than_a_used_one_is_never_processed(proxy):
    """RFC 9113 5.1.1 wants a connection error (PROTOCOL_ERROR) for a new stream id below
    one already used; nghttp2 deliberately ignores such a HEADERS frame instead (the peer
    may not know yet that the stream is closed). Either way the request is not served."""
    with H2Conn(proxy.port, raw=True) as c:
        c.send_raw(hu.request_frames(5, req_headers("GET", "/echo?five")))
        assert c.response(5).status == 200
        c.send_raw(hu.request_frames(3, req_headers("GET", "/echo?three")))
        if c.events_until(lambda c: c.goaways or c.eof or 3 in c.streams, 1.0):
            assert 3 not in c.streams or c.streams[3].blocks == [], c.describe()
            assert_connection_error(c, PE)
        else:  # ignored: the connection goes on
            c.send_raw(hu.request_frames(7, req_headers("GET", "/echo?seven")))
            assert c.response(7).status == 200, c.describe()
    assert "three" not in [e["query"] for e in proxy.up.requests()], proxy.up.requests()


def test_continuation_without_headers_is_protocol_error(proxy):
    with H2Conn(proxy.port, raw=True) as c:
        c.send_raw(hu.continuation_frame(1, hu.encode_block(req_headers()), end_headers=True))
        assert_connection_error(c, PE)


def test_interleaved_frame_inside_header_block_is_protocol_error(proxy):
    with H2Conn(proxy.port, raw=True) as c:
        blk = hu.encode_block(req_headers())
        c.send_raw(hu.headers_frame(1, blk[:5], end_headers=False) + hu.ping_frame()
                   + hu.continuation_frame(1, blk[5:], end_headers=True))
        assert_connection_error(c, PE)
    assert proxy.up.forwarded() == []


def test_rst_stream_on_idle_stream_is_protocol_error(proxy):
    with H2Conn(proxy.port) as c:
        c.send_raw(hu.rst_frame(11, ErrorCodes.CANCEL))
        assert_connection_error(c, PE)


def test_window_update_zero_on_stream_is_protocol_error(proxy):
    """RFC 9113 6.9: a stream error of type PROTOCOL_ERROR, which an endpoint may treat as
    a connection error (5.4; nghttp2 does): RST_STREAM with the connection going on, or
    GOAWAY, both PROTOCOL_ERROR."""
    with H2Conn(proxy.port) as c:
        sid = c.request(req_headers("GET", "/slow?ms=1500"))
        c.send_raw(hu.window_update_frame(sid, 0))
        r = c.response(sid, 5)
        if r.outcome == "reset":
            assert r.reset == PE, (r, c.describe())
            assert c.get("/echo").status == 200  # the connection goes on
        else:
            assert_connection_error(c, PE)


def test_window_update_zero_on_connection_is_protocol_error(proxy):
    with H2Conn(proxy.port) as c:
        c.send_raw(hu.window_update_frame(0, 0))
        assert_connection_error(c, PE)


def test_connection_window_overflow_is_flow_control_error(proxy):
    with H2Conn(proxy.port) as c:
        c.send_raw(hu.window_update_frame(0, hu.MAX_WINDOW))  # 65535 + 2^31-1 > 2^31-1
        assert_connection_error(c, ErrorCodes.FLOW_CONTROL_ERROR)


def test_stream_window_overflow_is_flow_control_error(proxy):
    with H2Conn(proxy.port) as c:
        sid = c.request(req_headers("GET", "/slow?ms=1500"))
        c.send_raw(hu.window_update_frame(sid, hu.MAX_WINDOW))
        r = c.response(sid, 5)
        assert r.outcome == "reset" and r.reset == ErrorCodes.FLOW_CONTROL_ERROR, \
            (r, c.describe())


def test_initial_window_size_above_maximum_is_flow_control_error(proxy):
    with H2Conn(proxy.port, raw=True) as c:
        c.send_raw(hu.settings_frame({SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31}))
        assert_connection_error(c, ErrorCodes.FLOW_CONTROL_ERROR)


def test_settings_with_bad_length_is_frame_size_error(proxy):
    with H2Conn(proxy.port, raw=True) as c:
        c.send_raw(hu.frame(hu.SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"))
        assert_connection_error(c, ErrorCodes.FRAME_SIZE_ERROR)


def test_oversized_frame_is_frame_size_error(proxy):
    """A HEADERS frame longer than the SETTINGS_MAX_FRAME_SIZE moat advertised."""
    with H2Conn(proxy.port, raw=True) as c:
        assert c.wait_ready()
        limit = c.server_settings.get(SettingCodes.MAX_FRAME_SIZE, 16384)
        blk = hu.encode_block(req_headers(extra=[("x-pad", "p" * (limit + 1000))]))
        c.send_raw(hu.headers_frame(c.next_stream_id(), blk))
        assert_connection_error(c, ErrorCodes.FRAME_SIZE_ERROR)
    assert proxy.up.forwarded() == []


def test_unknown_frame_types_and_priority_are_ignored(proxy):
    """RFC 9113 5.5: unknown frame types are ignored; PRIORITY (deprecated) is still
    accepted on any stream."""
    with H2Conn(proxy.port, raw=True) as c:
        assert c.get("/echo").status == 200  # stream 1, now closed
        c.send_raw(hu.frame(0xFA, 0xFF, 0, b"whatever") + hu.frame(0x21, 0, 1, b"x" * 100)
                   + hu.frame(hu.PRIORITY, 0, 1, b"\x00\x00\x00\x00\x10"))
        r = c.get("/echo")
        assert r.status == 200, (r, c.describe())
        assert c.goaway() is None


def test_flow_control_stream_window_respected(proxy):
    """Our stream window is 1000 bytes and given back only by hand."""
    with H2Conn(proxy.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000},
                auto_window=False) as c:
        sid = c.request(req_headers("GET", "/big?bytes=100000"))
        c.events_until(lambda c: False, 1.0)
        st = c.streams.get(sid)
        assert st is not None and st.blocks, c.describe()
        first = st.flow_received
        assert 0 < first <= 1000, first
        c.window_update(sid, 5000)
        c.events_until(lambda c: False, 1.0)
        assert first < st.flow_received <= 6000, st.flow_received
        assert not st.ended


def test_flow_control_connection_window_respected(proxy):
    """Big stream windows, the connection window left at 65535."""
    with H2Conn(proxy.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20},
                auto_window=False) as c:
        a = c.request(req_headers("GET", "/big?bytes=100000"))
        b = c.request(req_headers("GET", "/big?bytes=100000"))
        c.events_until(lambda c: False, 1.5)
        first = sum(c.streams[s].flow_received for s in (a, b) if s in c.streams)
        assert 0 < first <= 65535, first
        c.window_update(0, 10000)
        c.events_until(lambda c: False, 1.0)
        total = sum(c.streams[s].flow_received for s in (a, b) if s in c.streams)
        assert first < total <= 75535, total


def test_settings_initial_window_change_applies_to_open_streams(proxy):
    """RFC 9113 6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE changes open streams' windows by
    the difference."""
    with H2Conn(proxy.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000},
                auto_window=False) as c:
        sid = c.request(req_headers("GET", "/big?bytes=100000"))
        c.events_until(lambda c: False, 1.0)
        first = c.streams[sid].flow_received
        assert 0 < first <= 1000, first
        c.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 4000})
        c.events_until(lambda c: False, 1.0)
        assert first < c.streams[sid].flow_received <= 4000, c.streams[sid].flow_received


# ---- real clients -------------------------------------------------------------------

def test_curl_http2(proxy, tmp_path):
    rc, version, status, body, err = curl_h2(proxy.port, "/echo?curl", tmp_path)
    assert rc == 0, err
    assert (version, status) == ("2", 200), (version, status, err)
    j = json.loads(body)
    assert j["version"] == "HTTP/1.1" and j["query"] == "curl", j


def test_curl_http2_download_and_upload(proxy, tmp_path):
    n = 8 << 20
    rc, version, status, body, err = curl_h2(proxy.port, "/big?bytes=%d" % n, tmp_path)
    assert (rc, version, status) == (0, "2", 200), err
    assert hashlib.sha256(body).hexdigest() == upstream_server.big_body_sha256(n)
    up = moatctl.make_file(os.path.join(str(tmp_path), "up.bin"), 3 << 20)
    rc, version, status, body, err = curl_h2(proxy.port, "/echo", tmp_path,
                                             "--data-binary", "@" + up)
    assert (rc, version, status) == (0, "2", 200), err
    j = json.loads(body)
    assert (j["body_length"], j["body_sha256"]) == (3 << 20, moatctl.sha256_file(up)), j


@pytest.mark.skipif(shutil.which("nghttp") is None,
                    reason="nghttp missing (nghttp2-client: scripts/install-deps.sh --test)")
def test_nghttp(proxy):
    p = subprocess.run(["nghttp", "-nv", "https://127.0.0.1:%d/echo?nghttp" % proxy.port],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out + p.stderr.decode()
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
    assert "The negotiated protocol: h2" in out, out
    assert [e["query"] for e in proxy.up.requests()] == ["nghttp"]


@pytest.mark.skipif(shutil.which("h2load") is None,
                    reason="h2load missing (nghttp2-client: scripts/install-deps.sh --test)")
def test_h2load(proxy):
    p = subprocess.run(["h2load", "-n", "1000", "-c", "4", "-m", "10",
                        "https://127.0.0.1:%d/echo" % proxy.port],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out + p.stderr.decode()
    assert "Application protocol: h2" in out, out
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    assert m, out
    total, started, done, ok, failed, errored = map(int, m.groups())
    assert (total, done, ok, failed, errored) == (1000, 1000, 1000, 0, 0), out
    assert re.search(r"status codes: 1000 2xx", out), out
    assert len(proxy.up.requests()) == 1000
