"""W3C trace context (issue 16 item 5): moat continues a valid traceparent only from a
trusted proxy, otherwise starts a trace; the upstream always receives moat's own span
as parent-id, and the trace id is the access log's trace_id and the audit events'.

The test client is 127.0.0.1: identity.trusted_proxies ["127.0.0.1/32"] makes it a
trusted proxy, an empty list an untrusted client.
"""

import re

import pytest

import moatctl
from moatctl import Conn, wait_until

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = "00-%s-%s-01" % (TRACE, PARENT)
INVALID = [
    "00-%s-%s-01" % (TRACE.upper(), PARENT),             # uppercase
    "00-%s-%s-01" % ("0" * 32, PARENT),                  # all-zero trace-id
    "00-%s-%s-01" % (TRACE, "0" * 16),                   # all-zero parent-id
    "00-%s-%s-01" % (TRACE[:-1], PARENT),                # wrong length
    "ff-%s-%s-01" % (TRACE, PARENT),                     # version ff
    "00-%s-%s-01-extra" % (TRACE, PARENT),
]


def moat_with(start_moat, up, trusted, routes=None):
    ov = {"identity": {"trusted_proxies": trusted}}
    if routes:
        ov["routes"] = routes
    return start_moat(ov, upstream=up)


def get(m, path, headers=()):
    with Conn.tls(m.https_port) as c:
        c.request("GET", path, headers=list(headers))
        return c.read_response()


def received(up, path):
    """The request heads the upstream received for path (headers as [name, value])."""
    return [e for e in up.requests() if e.get("path") == path]


def header_values(req, name):
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


def one_exchange(m, up, path, headers=()):
    """Sends one request; returns (traceparent the upstream got parsed, access log line)."""
    r = get(m, path, headers)
    assert r.status == 200, r
    assert wait_until(lambda: received(up, path), 5), up.log()
    tps = header_values(received(up, path)[-1], "traceparent")
    assert len(tps) == 1, tps  # exactly one, moat's
    mt = TP.match(tps[0])
    assert mt, tps[0]
    lines = m.wait_access_log(1, pred=lambda e: e.get("path") == path)
    return mt, lines[-1]


def test_no_traceparent_starts_a_trace(upstream, start_moat):
    up = upstream("app")
    m = moat_with(start_moat, up, [])
    mt, line = one_exchange(m, up, "/echo/new")
    assert mt.group(1) == line["trace_id"], line
    assert mt.group(1) != "0" * 32 and mt.group(2) != "0" * 16
    assert mt.group(3) == "01"  # a trace moat starts is sampled
    # another request, another trace
    mt2, line2 = one_exchange(m, up, "/echo/new2")
    assert mt2.group(1) != mt.group(1) and line2["trace_id"] == mt2.group(1)


def test_trusted_peer_trace_continued_with_moats_span(upstream, start_moat):
    up = upstream("app")
    m = moat_with(start_moat, up, ["127.0.0.1/32"])
    mt, line = one_exchange(m, up, "/echo/t", [("traceparent", VALID),
                                               ("tracestate", "vendor=abc")])
    assert mt.group(1) == TRACE and line["trace_id"] == TRACE
    assert mt.group(2) != PARENT  # moat's own span is the upstream's parent
    assert mt.group(3) == "01"
    assert header_values(received(up, "/echo/t")[-1], "tracestate") == ["vendor=abc"]


def test_trusted_peer_oversized_tracestate_dropped(upstream, start_moat):
    up = upstream("app")
    m = moat_with(start_moat, up, ["127.0.0.1/32"])
    mt, _ = one_exchange(m, up, "/echo/big", [("traceparent", VALID),
                                              ("tracestate", "v=" + "a" * 600)])
    assert mt.group(1) == TRACE
    assert header_values(received(up, "/echo/big")[-1], "tracestate") == []


def test_untrusted_peer_trace_replaced(upstream, start_moat):
    up = upstream("app")
    m = moat_with(start_moat, up, [])
    mt, line = one_exchange(m, up, "/echo/u", [("traceparent", VALID),
                                               ("tracestate", "vendor=abc"),
                                               ("TRACEPARENT", VALID)])
    assert mt.group(1) != TRACE and mt.group(2) != PARENT
    assert line["trace_id"] == mt.group(1)
    req = received(up, "/echo/u")[-1]
    assert header_values(req, "tracestate") == []
    assert VALID not in str(req["headers"])


@pytest.mark.parametrize("bad", INVALID)
def test_invalid_traceparent_replaced_even_from_trusted_peer(upstream, start_moat, bad):
    up = upstream("app")
    m = moat_with(start_moat, up, ["127.0.0.1/32"])
    mt, line = one_exchange(m, up, "/echo/i", [("traceparent", bad),
                                               ("tracestate", "vendor=abc")])
    assert mt.group(1) != TRACE and line["trace_id"] == mt.group(1)
    assert header_values(received(up, "/echo/i")[-1], "tracestate") == []


def test_two_traceparents_from_trusted_peer_replaced(upstream, start_moat):
    up = upstream("app")
    m = moat_with(start_moat, up, ["127.0.0.1/32"])
    other = "00-%s-%s-01" % ("1" * 32, PARENT)
    mt, _ = one_exchange(m, up, "/echo/two", [("traceparent", VALID), ("traceparent", other)])
    assert mt.group(1) not in (TRACE, "1" * 32)


def test_trace_id_in_audit_event_of_refused_request(upstream, start_moat):
    """A request refused by a rate limit: its rate_limited audit event and its access
    log line carry the same trace id (here the trusted proxy's)."""
    up = upstream("app")
    rules = [{"key": "ip", "rate": "1/h", "burst": 1, "id": "traced"}]
    routes = [{"match": {"path_prefix": "/rl"}, "auth": "none", "upstream": "app",
               "rate_limit": rules},
              {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"}]
    m = moat_with(start_moat, up, ["127.0.0.1/32"], routes=routes)
    assert get(m, "/rl/a", [("traceparent", VALID)]).status == 200
    other = "00-%s-%s-00" % ("ab" * 16, PARENT)
    assert get(m, "/rl/b", [("traceparent", other)]).status == 429
    assert wait_until(lambda: moatctl.audit_events(m, "rate_limited"), 5), m.audit_log()
    ev = moatctl.audit_events(m, "rate_limited")
    assert ev[0]["trace_id"] == "ab" * 16, ev
    line = m.wait_access_log(1, pred=lambda e: e.get("path") == "/rl/b")[-1]
    assert line["trace_id"] == "ab" * 16 and line["status"] == 429
