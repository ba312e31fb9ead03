"""HTTP/2 defences: rapid reset, CONTINUATION flood, HPACK bomb, SETTINGS and PING floods,
the concurrent-stream limit, the glitch budget (http2.max_glitches: GOAWAY
ENHANCE_YOUR_CALM, the h2_abuse audit event, the metrics), the idle, settings and send
timeouts, and the GOAWAY of a SIGTERM drain.

Each attack runs on one connection against a fresh moat; afterwards moat must be alive
and serving a new connection, its RSS must have grown by less than RSS_BOUND_KIB
(not checked under ASan: hostile.SANITIZED) and the upstream must not have received
what the attack tried to push through. Figures are printed: run with -s to see them.
"""

import signal
import time

import pytest

import hostile
import h2util as hu
from h2util import H2Conn, ErrorCodes, SettingCodes, req_headers
from moatctl import audit_events, metrics, wait_until

CALM = ErrorCodes.ENHANCE_YOUR_CALM
RSS_BOUND_KIB = 20 * 1024


def metric(m, name):
    """A counter of moat's /metrics (summed over labels, 0 when absent)."""
    return sum(v for k, v in metrics(m).items() if k == name or k.startswith(name + "{"))


def assert_serving(m):
    """moat is alive and a new h2 connection gets an answer."""
    assert m.alive(), "moat died:\n%s" % m.stderr()
    with H2Conn(m.https_port) as c:
        r = c.get("/echo?fresh")
        assert r.status == 200, (r, c.describe())


def assert_calm_recorded(m):
    """The ENHANCE_YOUR_CALM close is counted and audited."""
    assert wait_until(lambda: metric(m, "moat_h2_calm_goaways_total") >= 1, 3), metrics(m)
    assert wait_until(lambda: audit_events(m, "h2_abuse"), 3), m.audit_log()


def assert_ended(c, what, calm=False):
    """moat ended the connection: a GOAWAY (ENHANCE_YOUR_CALM if calm) or EOF, then EOF."""
    assert c.goaways or c.closed(), "%s: moat neither sent GOAWAY nor closed: %s" % (
        what, c.describe())
    if calm and c.goaways:
        codes = [g.error_code for g in c.goaways]
        assert CALM in codes, "%s: GOAWAY %s, want ENHANCE_YOUR_CALM" % (
            what, [hu.code_name(x) for x in codes])
    assert c.wait_closed(5), "%s: GOAWAY %r but the connection stayed open" % (what, c.goaway())


def report(what, c, rss, sent=None):
    print("\n%s: sent %s bytes, goaways %r, eof %s, frames received %d, RSS peak growth %d KiB"
          % (what, sent, c.goaways, c.closed(), len(c.frames), rss.peak_growth_kib()))


# ---- rapid reset (CVE-2023-44487) --------------------------------------------------------

def test_rapid_reset(upstream, start_moat):
    """20,000 HEADERS + RST_STREAM pairs as fast as the socket takes them: moat calms the
    connection down (GOAWAY ENHANCE_YOUR_CALM, or a close), forwards at most a few hundred
    of them, keeps serving another client meanwhile, and its memory stays bounded."""
    up = upstream("app")
    m = start_moat(upstream=up)
    data = hu.rapid_reset_bytes(20000)
    probe = hostile.LatencyProbe(m.https_port, path="/healthz")
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        with hostile.RssWatch(m.pid) as rss, probe:
            sent = c.send_raw(data, timeout=15, read=True)
            c.wait_goaway_or_close(5)
        report("rapid reset", c, rss, sent)
        assert_ended(c, "rapid reset", calm=True)
    print(probe.report())
    assert probe.ok(), probe.report()
    assert hostile.SANITIZED or rss.peak_growth_kib() < RSS_BOUND_KIB, rss.peak_growth_kib()
    time.sleep(0.5)
    n = len(up.requests())
    print("upstream received %d of the 20000 requests" % n)
    assert n <= 400, n
    assert_calm_recorded(m)
    assert metric(m, "moat_h2_resets_received_total") >= 100
    assert metric(m, "moat_h2_glitches_total") >= 100
    assert_serving(m)


# ---- CONTINUATION flood ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["16k_frames", "empty_frames"])
def test_continuation_flood(upstream, start_moat, kind):
    """HEADERS without END_HEADERS, then 10 MiB of CONTINUATION frames that never end the
    block. Frames full of headers pass limits.max_header_bytes at once: closed within
    5 s although header_timeout is the default 10 s. Empty ones add nothing: bounded by
    a frame count or, at the latest, by header_timeout (3 s for that case)."""
    up = upstream("app")
    empty = kind == "empty_frames"
    m = start_moat({"limits": {"header_timeout": "3s"}} if empty else None, upstream=up)
    data = hu.continuation_flood_bytes(10 << 20, empty=empty)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        with hostile.RssWatch(m.pid) as rss:
            t0 = time.monotonic()
            sent = c.send_raw(data, timeout=8 if empty else 5)
            c.wait_goaway_or_close(6 if empty else 0.5)
            elapsed = time.monotonic() - t0
        report("CONTINUATION flood (%s), %.1fs" % (kind, elapsed), c, rss, sent)
        assert_ended(c, "CONTINUATION flood")
    assert elapsed < (10 if empty else 6), elapsed
    assert hostile.SANITIZED or rss.peak_growth_kib() < RSS_BOUND_KIB, rss.peak_growth_kib()
    assert up.forwarded() == [], up.log()
    assert_serving(m)


# ---- HPACK bomb -------------------------------------------------------------------------

def test_hpack_bomb(upstream, start_moat):
    """One 4000-byte header inserted in the dynamic table, then referenced 60,000 times
    (a 64 KiB header block that decodes to 240 MB): past limits.max_header_bytes, the
    stream is refused (431, 400 or RST_STREAM) or the connection closed; nothing is
    forwarded, memory stays bounded, and if the connection goes on it still works."""
    up = upstream("app")
    m = start_moat(upstream=up)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        sid = c.next_stream_id()
        with hostile.RssWatch(m.pid) as rss:
            c.send_raw(hu.block_frames(sid, hu.hpack_bomb_block(60000, path="/bomb")),
                       timeout=10)
            r = c.response(sid, 8)
        report("HPACK bomb", c, rss)
        print(r)
        assert r.status in (400, 431) or r.outcome in ("reset", "goaway", "closed"), r
        if not c.goaways and not c.closed():
            # the header block was decoded to the end: the HPACK state is still shared
            nxt = c.next_stream_id()
            c.send_raw(hu.request_frames(nxt, req_headers("GET", "/echo?after")))
            after = c.response(nxt)
            assert after.status == 200, (after, c.describe())
    assert hostile.SANITIZED or rss.peak_growth_kib() < RSS_BOUND_KIB, rss.peak_growth_kib()
    assert [e.get("query") for e in up.forwarded()] in ([], ["after"]), up.log()
    assert_serving(m)


def test_dynamic_table_references_under_the_limit_pass(proxy):
    """The control: the same construction decoding to 9 KB (the literal and two references
    to it) is an ordinary request."""
    with H2Conn(proxy.port, raw=True) as c:
        sid = c.next_stream_id()
        c.send_raw(hu.block_frames(sid, hu.hpack_bomb_block(2, value_size=3000)))
        r = c.response(sid)
    assert r.status == 200, r
    vals = [v for k, v in r.json()["headers"] if k.lower() == "x-bomb"]
    assert "".join(vals).count("b") == 9000, vals


# ---- SETTINGS and PING floods ------------------------------------------------------------

FLOODS = {
    "ping": hu.ping_frame(b"floodpng"),
    "settings": hu.settings_frame({SettingCodes.ENABLE_PUSH: 0}),
    "empty_settings": hu.settings_frame({}),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_frame_flood_without_reading(upstream, start_moat, kind):
    """100,000 frames that each want an ACK, from a client that reads none of them (and
    has a small receive buffer, so the ACKs back up into moat): moat closes the
    connection instead of queueing answers without end."""
    up = upstream("app")
    m = start_moat(upstream=up)
    with H2Conn(m.https_port, raw=True, rcvbuf=4096) as c:
        assert c.wait_ready(), c.describe()
        with hostile.RssWatch(m.pid) as rss:
            sent = c.send_raw(FLOODS[kind] * 100000, timeout=6)
            c.wait_goaway_or_close(5)
        report("%s flood" % kind, c, rss, sent)
        print("ACKs read: %d PING, %d SETTINGS" % (len(c.ping_acks), c.settings_acks))
        assert_ended(c, "%s flood" % kind)
    assert hostile.SANITIZED or rss.peak_growth_kib() < RSS_BOUND_KIB, rss.peak_growth_kib()
    assert_serving(m)


@pytest.mark.parametrize("flood", ["empty_data", "tiny_window_updates"])
def test_frames_that_carry_nothing_cost_glitches(upstream, start_moat, flood):
    """Empty DATA frames without END_STREAM (CVE-2019-9518) and WINDOW_UPDATEs of a few
    bytes (CVE-2019-9517 family) are glitches: 10,000 of them on one open stream end in
    GOAWAY(ENHANCE_YOUR_CALM) long before the end, and moat goes on serving."""
    up = upstream("app")
    m = start_moat({"http2": {"max_glitches": 50}}, upstream=up)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        sid = c.request(req_headers("POST", "/echo?open"), b"x", end_stream=False)
        one = (hu.data_frame(sid, b"") if flood == "empty_data"
               else hu.window_update_frame(sid, 1))
        try:
            c.send_raw(one * 10000)
        except (OSError, AssertionError):
            pass  # moat closed while we were still sending: that is the point
        c.wait_goaway_or_close(5)
        assert_ended(c, flood, calm=True)
    assert_calm_recorded(m)
    assert metric(m, "moat_h2_glitches_total") >= 50
    assert_serving(m)


def test_a_normal_upload_and_download_cost_no_glitch(upstream, start_moat):
    """The control: a 2 MiB upload and download with h2's own window updates."""
    up = upstream("app")
    m = start_moat({"http2": {"max_glitches": 1}}, upstream=up)
    with H2Conn(m.https_port) as c:
        r = c.get("/echo", method="POST", body=b"y" * (2 << 20))
        assert r.status == 200 and r.json()["body_length"] == 2 << 20, r
        assert c.goaway() is None
    assert metric(m, "moat_h2_glitches_total") == 0


def test_a_head_that_never_completes_times_out(upstream, start_moat):
    """A stream whose head never ends (HEADERS without END_HEADERS, or content-length 0
    without END_STREAM) is reset after limits.header_timeout: without that, it would keep
    the connection from ever being idle. Nothing reaches the upstream."""
    up = upstream("app")
    m = start_moat({"limits": {"header_timeout": "1s", "idle_timeout": "2s"}}, upstream=up)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        cl0 = c.request(req_headers("POST", "/echo?cl0", extra=[("content-length", "0")]),
                        end_stream=False)
        r = c.response(cl0, 5)
        assert r.outcome == "reset" and r.reset == ErrorCodes.CANCEL, (r, c.describe())
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        block = hu.encode_block(req_headers("GET", "/echo?partial"))
        c.send_raw(hu.headers_frame(1, block[:5], end_stream=True, end_headers=False))
        # the stream is reset at 1 s; the connection then has none and is idle until 2 s
        c.wait_goaway_or_close(8)
        assert c.goaway() is not None or c.closed(), c.describe()
    time.sleep(0.3)
    assert up.forwarded() == [], up.log()
    assert_serving(m)


# ---- concurrent streams ------------------------------------------------------------------

def test_streams_above_max_concurrent_streams_refused(upstream, start_moat):
    """Past the advertised limit, nghttp2 ends the connection with GOAWAY(PROTOCOL_ERROR)
    once the client has acknowledged the SETTINGS (RFC 9113 §5.1.2 asks for a stream
    error, §5.4.1 lets an endpoint make it a connection error; docs/http2.md says so).
    Either way the extra streams never reach the upstream, and moat keeps serving."""
    up = upstream("app")
    m = start_moat({"http2": {"max_concurrent_streams": 5}}, upstream=up)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        assert c.server_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 5
        held = [c.request(req_headers("POST", "/echo?held=%d" % i), b"x", end_stream=False)
                for i in range(5)]
        extra = [c.request(req_headers("GET", "/echo?extra=%d" % i)) for i in range(3)]
        c.wait_goaway_or_close(3)
        if c.goaway() is not None:
            assert c.goaway().error_code == ErrorCodes.PROTOCOL_ERROR, c.describe()
            assert c.goaway().last_stream_id < min(extra), c.describe()
        else:
            for sid in extra:
                r = c.response(sid, 5)
                assert r.outcome == "reset" and r.reset in (ErrorCodes.REFUSED_STREAM,
                                                            ErrorCodes.PROTOCOL_ERROR), \
                    (r, c.describe())
            for sid in held:
                c.end_stream(sid)
            for sid in held:
                r = c.response(sid)
                assert r.status == 200 and r.json()["body_length"] == 1, r
    time.sleep(0.3)
    assert not any("extra" in (e.get("query") or "") for e in up.forwarded()), up.log()
    # within the limit, streams come and go on one connection without a refusal
    with H2Conn(m.https_port) as c:
        for round_ in range(3):
            sids = [c.request(req_headers("GET", "/echo?r=%d&i=%d" % (round_, i)))
                    for i in range(5)]
            assert [c.response(s).status for s in sids] == [200] * 5, c.describe()
        assert c.goaway() is None
    assert_serving(m)


# ---- the glitch budget ---------------------------------------------------------------------

def _reset_streams(c, n, path="/slow?ms=1000"):
    out = bytearray()
    for _ in range(n):
        sid = c.next_stream_id()
        out += hu.headers_frame(sid, hu.encode_block(req_headers("GET", path)))
        out += hu.rst_frame(sid, ErrorCodes.CANCEL)
    c.send_raw(bytes(out))


def test_glitches_spread_over_connections_are_charged_to_the_ip(upstream, start_moat):
    """max_glitches 5: 4 resets per connection stay under each connection's budget, but
    the client IP is charged too (10 budgets a minute, 50 glitches): a client that spreads
    its resets over many connections is stopped with ENHANCE_YOUR_CALM all the same."""
    up = upstream("app")
    m = start_moat({"http2": {"max_glitches": 5}}, upstream=up)
    calmed_at = None
    for n in range(1, 21):
        with H2Conn(m.https_port, raw=True) as c:
            assert c.wait_ready(), c.describe()
            _reset_streams(c, 4)
            c.events_until(lambda c: c.goaways or c.eof, 0.5)
            if c.goaways:
                assert CALM in [g.error_code for g in c.goaways], c.describe()
                calmed_at = n
                break
    print("\nIP budget spent on connection %s" % calmed_at)
    assert calmed_at is not None and 12 <= calmed_at <= 18, calmed_at  # 50 + refills (0.8/s)
    assert_calm_recorded(m)
    ev = audit_events(m, "h2_abuse")
    assert "client address" in ev[0].get("detail", ""), ev


def test_glitch_budget_for_client_resets(upstream, start_moat):
    """max_glitches 10: 9 resets, 20 normal streams, 9 resets again stay within the budget
    (finished streams give it back); resets past it get GOAWAY(ENHANCE_YOUR_CALM), the
    h2_abuse audit event and the metrics."""
    up = upstream("app")
    m = start_moat({"http2": {"max_glitches": 10}}, upstream=up)
    with H2Conn(m.https_port, raw=True) as c:
        assert c.wait_ready(), c.describe()
        _reset_streams(c, 9)
        for i in range(20):
            assert c.get("/echo?i=%d" % i).status == 200
        _reset_streams(c, 9)
        r = c.get("/echo?still")
        assert r.status == 200 and c.goaway() is None, (r, c.describe())
        more = 0
        while more < 20 and not (c.goaways or c.closed()):
            _reset_streams(c, 1)
            more += 1
            c.events_until(lambda c: c.goaways or c.eof, 0.3)
        print("\nGOAWAY after %d more resets: %r" % (more, c.goaways))
        assert_ended(c, "resets past the budget", calm=True)
        assert more <= 15, more
    assert_calm_recorded(m)
    assert metric(m, "moat_h2_glitches_total") >= 19
    assert metric(m, "moat_h2_resets_received_total") >= 19
    ev = audit_events(m, "h2_abuse")
    assert len(ev) == 1, ev
    assert ev[0].get("client_ip") in (None, "127.0.0.1"), ev
    assert_serving(m)


def test_glitch_budget_for_protocol_errors(upstream, start_moat):
    """max_glitches 5: protocol errors cost one each. Here malformed requests (an
    uppercase header name: a stream error of type PROTOCOL_ERROR, or a 400)."""
    up = upstream("app")
    m = start_moat({"http2": {"max_glitches": 5}}, upstream=up)
    with H2Conn(m.https_port, lenient=True) as c:
        errors = 0
        while errors < 12 and not (c.goaways or c.closed()):
            try:
                sid = c.request(req_headers("GET", "/echo?bad=%d" % errors,
                                            extra=[("X-Upper", "1")]))
            except hu.H2Closed:  # h2 saw the GOAWAY first
                break
            errors += 1
            r = c.response(sid, 5)
            assert r.outcome in ("reset", "goaway", "closed") or r.status == 400, r
            c.events_until(lambda c: c.goaways or c.eof, 0.1)
        print("\nGOAWAY after %d stream errors: %r" % (errors, c.goaways))
        assert_ended(c, "stream errors past the budget", calm=True)
        assert errors <= 7, errors
    assert up.forwarded() == [], up.log()
    assert_calm_recorded(m)
    assert_serving(m)


def test_normal_traffic_never_exhausts_the_budget(upstream, start_moat):
    """max_glitches 3 and 300 ordinary streams (some concurrent, some with bodies): no
    GOAWAY, no glitch counted."""
    up = upstream("app")
    m = start_moat({"http2": {"max_glitches": 3}}, upstream=up)
    with H2Conn(m.https_port) as c:
        for i in range(30):
            sids = [c.request(req_headers("POST" if j % 2 else "GET", "/echo?%d.%d" % (i, j)),
                              b"body" if j % 2 else None) for j in range(10)]
            assert [c.response(s).status for s in sids] == [200] * 10
        assert c.goaway() is None and not c.closed(), c.describe()
    assert metric(m, "moat_h2_glitches_total") == 0
    assert metric(m, "moat_h2_calm_goaways_total") == 0
    assert audit_events(m, "h2_abuse") == []


# ---- timeouts -------------------------------------------------------------------------------

def test_idle_connection_closed_after_idle_timeout(upstream, start_moat):
    up = upstream("app")
    m = start_moat({"limits": {"idle_timeout": "1s"}}, upstream=up)
    with H2Conn(m.https_port) as c:
        assert c.get("/echo").status == 200
        t0 = time.monotonic()
        assert c.wait_closed(5), c.describe()
        elapsed = time.monotonic() - t0
        assert 0.6 <= elapsed < 4, elapsed
        for g in c.goaways:
            assert g.error_code == ErrorCodes.NO_ERROR, c.goaways
    with H2Conn(m.https_port) as c:  # never a stream
        assert c.wait_closed(5), c.describe()
    with H2Conn(m.https_port) as c:  # a stream in progress is not idle
        r = c.get("/slow?ms=2000", timeout=8)
        assert r.status == 200, (r, c.describe())


def test_unacknowledged_settings_closed_after_settings_timeout(upstream, start_moat):
    up = upstream("app")
    m = start_moat({"http2": {"settings_timeout": "1s"}}, upstream=up)
    with H2Conn(m.https_port, raw=True, ack_settings=False) as c:
        t0 = time.monotonic()
        c.wait_goaway_or_close(6)
        elapsed = time.monotonic() - t0
        assert_ended(c, "SETTINGS never acknowledged")
        assert 0.6 <= elapsed < 5, elapsed
        for g in c.goaways:
            assert g.error_code == ErrorCodes.SETTINGS_TIMEOUT, c.goaways
    with H2Conn(m.https_port, raw=True) as c:  # acknowledged: kept
        assert not c.events_until(lambda c: c.goaways or c.eof, 2.0), c.describe()
        assert c.get("/echo").status == 200


def test_zero_window_reader_closed_after_send_timeout(upstream, start_moat):
    """SETTINGS_INITIAL_WINDOW_SIZE 0 and never a WINDOW_UPDATE: moat has a response it
    cannot send; after http2.send_timeout (1 s) it closes the connection."""
    up = upstream("app")
    m = start_moat({"http2": {"send_timeout": "1s"}}, upstream=up)
    with H2Conn(m.https_port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0},
                auto_window=False) as c:
        sid = c.request(req_headers("GET", "/big?bytes=1000000"))
        assert c.events_until(lambda c: sid in c.streams and c.streams[sid].blocks, 5), \
            c.describe()
        t0 = time.monotonic()
        c.wait_goaway_or_close(8)
        elapsed = time.monotonic() - t0
        assert_ended(c, "zero-window reader")
        assert c.streams[sid].flow_received == 0
    print("\nzero-window reader closed %.2fs after its response head" % elapsed)
    assert 0.6 <= elapsed < 6, elapsed
    assert_serving(m)


def test_stream_buffers_count_in_the_memory_budget(upstream, start_moat):
    """What streams buffer (responses a zero-window client cannot take) counts in
    moat_buffered_bytes, which limits.max_memory bounds, and leaves it when the
    connection goes. Before, only the connection's TLS buffers counted: 20 stalled
    streams held about 20 x 16 KiB that the gauge did not show."""
    up = upstream("app")
    m = start_moat({"workers": 1}, upstream=up)
    base = metric(m, "moat_buffered_bytes")
    with H2Conn(m.https_port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0},
                auto_window=False) as c:
        sids = [c.request(req_headers("GET", "/big?bytes=1000000&i=%d" % i)) for i in range(20)]
        assert c.events_until(lambda c: all(s in c.streams and c.streams[s].blocks
                                            for s in sids), 5), c.describe()
        assert wait_until(lambda: metric(m, "moat_buffered_bytes") - base >= 20 * 16384, 5), \
            metric(m, "moat_buffered_bytes")
    assert wait_until(lambda: metric(m, "moat_buffered_bytes") - base < 64 * 1024, 5), \
        metric(m, "moat_buffered_bytes")


def test_slow_reader_making_progress_is_not_closed(upstream, start_moat):
    """The control: a small window given back every 0.4 s keeps the connection alive past
    several send_timeouts."""
    up = upstream("app")
    m = start_moat({"http2": {"send_timeout": "1s"}}, upstream=up)
    with H2Conn(m.https_port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 16384},
                auto_window=False) as c:
        sid = c.request(req_headers("GET", "/big?bytes=1000000"))
        got = []
        end = time.monotonic() + 3.2
        while time.monotonic() < end:
            c.events_until(lambda c: c.goaways or c.eof, 0.4)
            st = c.streams.get(sid)
            got.append(st.flow_received if st else 0)
            if c.goaways or c.closed():
                break
            c.window_update(sid, 16384)
            c.window_update(0, 16384)
        assert c.goaway() is None and not c.closed(), (got, c.describe())
    assert got[-1] > got[0] and got[-1] >= 5 * 16384, got


# ---- drain ---------------------------------------------------------------------------------

def test_sigterm_sends_goaway_and_finishes_in_flight_stream(upstream, start_moat):
    up = upstream("app")
    m = start_moat({"limits": {"drain_timeout": "10s"}}, upstream=up)
    with H2Conn(m.https_port) as c:
        sid = c.request(req_headers("GET", "/slow?ms=1500"))
        assert wait_until(lambda: any(e["path"] == "/slow" for e in up.requests()), 5)
        m.send_signal(signal.SIGTERM)
        assert c.events_until(lambda c: c.goaways, 3), c.describe()
        g = c.goaway()
        assert g.error_code == ErrorCodes.NO_ERROR, c.goaways
        assert g.last_stream_id >= sid, c.goaways
        r = c.response(sid, 10)
        assert r.outcome == "response" and r.status == 200, (r, c.describe())
        assert r.json()["path"] == "/slow"
        assert c.wait_closed(5), c.describe()
    rc = m.wait(10)
    assert rc == 0, "exit code %r\nstderr:\n%s" % (rc, m.stderr())
    assert any(e.get("protocol") == "HTTP/2" and str(e.get("path", "")).startswith("/slow")
               and e.get("status") == 200 for e in m.access_log()), m.access_log()
