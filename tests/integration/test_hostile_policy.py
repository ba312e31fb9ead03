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

import pytest

import identutil as iu
from identutil import capture_upstream, sessions  # noqa: F401  (fixtures)


def _raw_names(raw):
    _, hdrs, _ = iu.parse_raw_head(raw)
    return [k for k, _ in hdrs]


def _spellings(name):
    """The spellings a CGI/WSGI-style upstream reads as name."""
    return sorted({name, name.lower(), name.upper(), name.replace("-", "_"),
                   name.replace("-", "."), name.lower().replace("-", "_")})


# ---- item 12: look-alike and client-IP headers ------------------------------------------------

LOOKALIKE = ["Transfer_Encoding: chunked", "transfer.encoding: gzip", "TRANSFER_ENCODING: x",
             "Content_Length: 5", "content.length: 7", "CONTENT_LENGTH: 9",
             "Keep_Alive: timeout=1", "Proxy_Connection: close", "Proxy.Authorization: Basic eDp5"]

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
def cap(capture_upstream, moat_factory):  # noqa: F811
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
    _send(m.https_port, LOOKALIKE)
    (raw,) = up.captured
    names = [_fold(n) for n in _raw_names(raw)]
    for line in LOOKALIKE:
        assert _fold(line.split(":")[0]) not in names, (line, raw)
    # the request arrived without a body, framed by moat alone
    assert raw.endswith(b"\r\n\r\n") and b"chunked" not in raw.lower(), raw


@pytest.mark.parametrize("name", CLIENT_IP)
def test_client_ip_headers_from_untrusted_peers_are_stripped(cap, name):
    m, up = cap
    _send(m.https_port, ["%s: %s" % (n, SPOOF_IP) for n in _spellings(name)])
    (raw,) = up.captured
    assert SPOOF_IP.encode() not in raw, raw
    assert _fold(name) not in [_fold(n) for n in _raw_names(raw)], raw


@pytest.mark.parametrize("name", OVERRIDES)
def test_override_headers_never_reach_the_upstream(capture_upstream, moat_factory,  # noqa: F811
                                                   name):
    """Not even from a trusted proxy: moat routed the request line it received."""
    up = capture_upstream("app")
    m = moat_factory({"upstreams": {"app": {"servers": [up.addr]}},
                      "identity": {"trusted_proxies": ["127.0.0.1"]}})
    _send(m.https_port, ["%s: %s" % (n, "/admin" if "UR" in name.upper() else "DELETE")
                         for n in _spellings(name)])
    (raw,) = up.captured
    assert _fold(name) not in [_fold(n) for n in _raw_names(raw)], raw
    assert b"/admin" not in raw and b"DELETE" not in raw, raw


def test_client_ip_headers_from_a_trusted_proxy_pass(capture_upstream, moat_factory):  # noqa: F811
    """The documented X-Forwarded-* rule: a trusted proxy's client-IP headers are kept."""
    up = capture_upstream("app")
    m = moat_factory({"upstreams": {"app": {"servers": [up.addr]}},
                      "identity": {"trusted_proxies": ["127.0.0.1"]}})
    _send(m.https_port, ["%s: %s" % (n, SPOOF_IP) for n in CLIENT_IP])
    (raw,) = up.captured
    _, hdrs, _ = iu.parse_raw_head(raw)
    for n in CLIENT_IP:
        assert (n, SPOOF_IP) in hdrs, (n, raw)


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
