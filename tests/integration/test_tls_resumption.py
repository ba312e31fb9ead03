"""Session resumption with real clients: tickets shared by the workers, session ids,
and a clean TLS close.

Ticket rotation (which takes minutes: tls.session_tickets.rotate is at least 1m) is in
test_tls_ticket_rotation.py.
"""

import os
import socket
import ssl
import time

import pytest

import moatctl
import tlsutil
from tlsutil import s_client

ATTEMPTS = 24  # SO_REUSEPORT spreads connections over 2 workers: all on one is 2 * 2^-24


@pytest.fixture
def two_workers(upstream, moat_factory):
    up = upstream("app")
    return moat_factory({"workers": 2}, upstream=up)


def assert_both_workers_busy(before, after, elapsed, idle_rate):
    """Each worker thread used clearly more CPU than its idle timers would (a resumed
    handshake plus a request costs ~0.2 ms; idle is ~0.3 ms per second)."""
    busy = {}
    for tid, ns in after.items():
        extra = ns - before.get(tid, 0)
        busy[tid] = extra - 1.5 * idle_rate.get(tid, 0) * elapsed
    assert len(busy) >= 2, "expected 2 worker threads, have %r" % after
    assert sum(1 for v in busy.values() if v > 200_000) >= 2, \
        "not both workers handled connections: CPU ns over idle %r" % busy


def idle_cpu_rate(pid, seconds=1.0):
    a = tlsutil.worker_cpu_ns(pid)
    time.sleep(seconds)
    b = tlsutil.worker_cpu_ns(pid)
    return {tid: (b[tid] - a.get(tid, b[tid])) / seconds for tid in b}


@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_ticket_resumes_on_every_worker(two_workers, tmp_path, proto):
    m = two_workers
    sess = tmp_path / "ticket.sess"
    # TLS 1.3 tickets come after the handshake: read a response before saving the session
    first = s_client(m.https_port, proto, sess_out=sess, data=tlsutil.http_get())
    assert first.handshake_ok and "HTTP/1.1 200" in first.out, first
    assert tlsutil.session_ticket(sess), "no ticket in the session:\n" + \
        tlsutil.session_text(sess)
    rate = idle_cpu_rate(m.pid)
    before = tlsutil.worker_cpu_ns(m.pid)
    t0 = time.monotonic()
    results = []
    for i in range(ATTEMPTS):
        r = s_client(m.https_port, proto, sess_in=sess, data=tlsutil.http_get("/echo?i=%d" % i))
        results.append(r)
    elapsed = time.monotonic() - t0
    after = tlsutil.worker_cpu_ns(m.pid)
    not_resumed = [r for r in results if r.reused is not True]
    assert not not_resumed, "%d of %d not resumed, first:\n%r" % (len(not_resumed), ATTEMPTS,
                                                                   not_resumed[0])
    assert all("HTTP/1.1 200" in r.out for r in results)
    assert_both_workers_busy(before, after, elapsed, rate)
    # the access log says so too
    lines = m.wait_access_log(ATTEMPTS + 1, pred=lambda e: e.get("path", "").startswith("/echo"))
    assert {e.get("tls_version") for e in lines} == {"TLSv1.2" if proto == "-tls1_2"
                                                      else "TLSv1.3"}


def test_reconnect_resumes(two_workers):
    # s_client -reconnect: the first handshake and 5 more with the same session
    for _ in range(4):
        r = s_client(two_workers.https_port, "-tls1_2", "-reconnect")
        states = r.all_reused
        assert len(states) == 6, r
        assert states[0] == "New" and set(states[1:]) == {"Reused"}, states


def test_python_client_resumes(two_workers):
    ctx = moatctl.tls_context(max_version=ssl.TLSVersion.TLSv1_2)
    s = moatctl.tls_connect(two_workers.https_port, ctx=ctx)
    session = s.session
    s.close()
    assert session is not None and session.has_ticket
    for _ in range(10):
        raw = socket.create_connection(("127.0.0.1", two_workers.https_port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        try:
            assert s.session_reused
        finally:
            s.close()


def test_ticket_lifetime_hint_is_the_session_lifetime(two_workers, tmp_path):
    # default rotate 12h -> sessions live 2h (docs/tls.md "Session lifetime")
    sess = tmp_path / "t.sess"
    s_client(two_workers.https_port, "-tls1_2", sess_out=sess)
    assert tlsutil.session_lifetime_hint(sess) == 7200


def test_tickets_off_no_ticket(upstream, moat_factory, tmp_path):
    up = upstream("app")
    m = moat_factory({"tls": {"session_tickets": {"enabled": False}, "session_cache": False}},
                     upstream=up)
    sess = tmp_path / "none.sess"
    r = s_client(m.https_port, "-tls1_2", sess_out=sess, data=tlsutil.http_get())
    assert r.handshake_ok and "HTTP/1.1 200" in r.out, r
    assert "TLS session ticket:" not in r.out, r
    if os.path.exists(sess):  # s_client saves nothing when the session is not resumable
        assert tlsutil.session_ticket(sess) == b""
        again = s_client(m.https_port, "-tls1_2", sess_in=sess)
        assert again.reused is False, again


# ---- clean TLS closes: close_notify, and sessions kept in the cache -------------------

@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_session_cache_resumption_after_close(upstream, moat_factory, tmp_path, proto):
    # tickets off, session cache on (the default): TLS 1.2 resumes by session id, TLS 1.3
    # gets a stateful ticket (a reference into the cache), docs/tls.md "Session resumption"
    up = upstream("app")
    m = moat_factory({"workers": 1, "tls": {"session_tickets": {"enabled": False}}},
                     upstream=up)
    sess = tmp_path / "id.sess"
    r = s_client(m.https_port, proto, "-no_ticket", sess_out=sess, data=tlsutil.http_get())
    assert r.handshake_ok and os.path.exists(sess), r
    time.sleep(0.3)  # moat has seen the close_notify and freed the connection
    results = [s_client(m.https_port, proto, "-no_ticket", sess_in=sess) for _ in range(5)]
    assert [x.reused for x in results] == [True] * 5, results[0]


def test_session_id_resumption_while_open(upstream, moat_factory, tmp_path):
    # the session cache itself works: resumption succeeds while the first connection is
    # still open (this is what shows the bug above is in how connections are closed)
    up = upstream("app")
    m = moat_factory({"workers": 1, "tls": {"session_tickets": {"enabled": False}}},
                     upstream=up)
    ctx = moatctl.tls_context(max_version=ssl.TLSVersion.TLSv1_2)
    ctx.options |= ssl.OP_NO_TICKET
    first = moatctl.tls_connect(m.https_port, ctx=ctx)
    try:
        session = first.session
        assert session is not None and not session.has_ticket and session.id
        raw = socket.create_connection(("127.0.0.1", m.https_port), timeout=10)
        second = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        try:
            assert second.session_reused
        finally:
            second.close()
    finally:
        first.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_connection_close_sends_close_notify(two_workers, version):
    ctx = moatctl.tls_context(max_version=version)
    # Debian's Python sets OP_IGNORE_UNEXPECTED_EOF, which hides a missing close_notify
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    raw = socket.create_connection(("127.0.0.1", two_workers.https_port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    try:
        s.sendall(tlsutil.http_get())
        data = b""
        while True:
            d = s.recv(65536)  # raises SSLEOFError on EOF without close_notify
            if not d:
                break
            data += d
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
    finally:
        s.close()
