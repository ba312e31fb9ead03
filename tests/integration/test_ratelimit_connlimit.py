"""Connection caps (limits.max_connections_per_ip, limits.max_connections) and new TLS
handshakes per client IP (limits.handshakes_per_ip): the excess is closed right after
accept, before any TLS work; counts are shared by both workers and released on close.

Distinct client IPs come from binding the client socket to 127.0.0.2, 127.0.0.3 ...
(the loopback network answers for all of 127/8)."""

import socket
import ssl
import time

import moatctl
import rlutil
from rlutil import Client, tls_connect_from
from moatctl import Conn


def _moat(start_moat, upstream, limits):
    up = upstream("app")
    return start_moat(rlutil.overrides([], limits=limits), upstream=up)


def refused(port, source=None, timeout=5.0):
    """True if moat closes a new connection before the TLS handshake completes, False
    if the handshake completes (the connection is then closed by us)."""
    try:
        s = tls_connect_from(port, source=source, timeout=timeout)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        if isinstance(e, (socket.timeout, TimeoutError)):
            raise AssertionError("handshake neither completed nor refused in %ss" % timeout)
        return True
    # TLS 1.3: the client may finish before the server has looked at the connection;
    # a refused one shows up as EOF on the first read
    c = Conn(s)
    try:
        c.request("GET", "/", [("Connection", "close")])
        try:
            r = c.read_response()
        except (ConnectionError, OSError, ssl.SSLError):
            return True
        assert r.status == 200, r
        return False
    finally:
        c.close()


def open_ok(port, source=None):
    """A keep-alive connection that got a 200."""
    c = Client(port, source=source)
    r = c.get("/echo")
    assert r.status == 200, r
    return c


def test_per_ip_connection_cap(upstream, start_moat):
    """max_connections_per_ip 3: three connections stay open and keep working, every
    4th is closed at once; another IP is not affected; closing one frees one slot."""
    m = _moat(start_moat, upstream, {"max_connections_per_ip": 3})
    clients = []
    try:
        clients = [open_ok(m.https_port) for _ in range(3)]
        before = moatctl.metrics(m).get("moat_connections_refused_total", 0)
        for _ in range(5):  # several attempts: each may land on either worker
            assert refused(m.https_port), "a 4th connection from 127.0.0.1 was served"
        for c in clients:  # the three are still open and served
            assert c.get("/echo").status == 200
            assert c.conn is not None
        # another client IP has its own count
        other = [open_ok(m.https_port, source="127.0.0.2") for _ in range(3)]
        clients += other
        assert refused(m.https_port, source="127.0.0.2")
        assert moatctl.metrics(m).get("moat_connections_refused_total", 0) - before == 6
        # closing one frees exactly one slot (refusals did not leak counts)
        clients[0].close()
        assert moatctl.wait_until(lambda: not refused(m.https_port), 5), \
            "no slot freed after closing a connection"
        # that probe connection was closed again by refused(); take the slot for good
        assert moatctl.wait_until(lambda: _take(clients, m.https_port), 5)
        assert refused(m.https_port)
        for c in clients[1:]:
            assert c.get("/echo").status == 200
    finally:
        for c in clients:
            c.close()


def _take(clients, port):
    try:
        clients.append(open_ok(port))
        return True
    except (AssertionError, ConnectionError, OSError, ssl.SSLError):
        return False


def test_total_connection_cap(upstream, start_moat):
    """max_connections 4 for the instance, whatever the client IPs."""
    m = _moat(start_moat, upstream, {"max_connections": 4})
    clients = []
    try:
        for src in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"):
            clients.append(open_ok(m.https_port, source=src))
        assert refused(m.https_port, source="127.0.0.5")
        assert refused(m.https_port, source="127.0.0.1")
        for c in clients:
            assert c.get("/echo").status == 200
        clients.pop().close()
        assert moatctl.wait_until(lambda: _take(clients, m.https_port), 5)
        assert refused(m.https_port, source="127.0.0.6")
    finally:
        for c in clients:
            c.close()


def test_handshakes_per_ip(upstream, start_moat):
    """handshakes_per_ip 2/s (burst 2): a fast series of new connections from one IP is
    cut to burst + elapsed * rate; another IP is not affected; after a pause (> 1/rate)
    a new handshake is admitted again. Established connections are not affected."""
    m = _moat(start_moat, upstream, {"handshakes_per_ip": "2/s"})
    keep = open_ok(m.https_port, source="127.0.0.3")
    try:
        ok = bad = 0
        t0 = time.monotonic()
        for _ in range(40):
            if refused(m.https_port):
                bad += 1
                if bad >= 5:
                    break
            else:
                ok += 1
        elapsed = time.monotonic() - t0
        assert bad >= 5, "handshakes never limited (%d admitted)" % ok
        # GCRA: at most burst + elapsed * rate (+1 rounding); keep took 127.0.0.3's
        assert 1 <= ok <= 2 + int(elapsed * 2) + 1, (ok, elapsed)
        assert not refused(m.https_port, source="127.0.0.2")
        assert keep.get("/echo").status == 200  # an open connection is not a handshake
        time.sleep(0.6)  # > 500 ms, the interval at 2/s
        assert not refused(m.https_port)
    finally:
        keep.close()


def test_per_ip_cap_turned_on_by_reload(upstream, start_moat):
    """A reload that sets max_connections_per_ip 3 counts the connections already open
    from that IP: with 3 open, a 4th is refused; as old ones close, exactly as many new
    ones are admitted (no count goes missing or negative), and the cap holds after."""
    m = _moat(start_moat, upstream, {})
    old = []
    new = []
    try:
        old = [open_ok(m.https_port) for _ in range(3)]
        rlutil.reload(m, {"limits": {"max_connections_per_ip": 3}}, 2)
        assert refused(m.https_port), "a 4th connection after the reload was served"
        for c in old:
            assert c.get("/echo").status == 200  # the open ones are not cut
        for c in old:
            c.close()
            assert moatctl.wait_until(lambda: _take(new, m.https_port), 5), \
                "closing an old connection freed no slot"
        assert len(new) == 3
        for _ in range(3):
            assert refused(m.https_port), "cap 3 exceeded after old connections closed"
        for c in new:
            assert c.get("/echo").status == 200
    finally:
        for c in old + new:
            c.close()
