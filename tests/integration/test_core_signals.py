"""SIGTERM / SIGINT: stop accepting, finish in-flight requests, exit 0."""

import signal
import threading
import time

import pytest

from moatctl import Conn, curl, port_accepts, wait_until


class Background:
    """Runs curl in a thread; .result is its CurlResult."""

    def __init__(self, port, path):
        self.result = None
        self.error = None
        self.t = threading.Thread(target=self.run, args=(port, path), daemon=True)
        self.t.start()

    def run(self, port, path):
        try:
            self.result = curl(port, path, timeout=30)
        except Exception as e:  # reported by the test
            self.error = e

    def join(self, timeout):
        self.t.join(timeout)
        assert not self.t.is_alive(), "in-flight request did not finish"
        assert self.error is None, self.error
        return self.result


def in_flight(up, path, timeout=5):
    ok = wait_until(lambda: any(e["path"] == path for e in up.requests()), timeout)
    assert ok, "request never reached the upstream: %r" % up.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_finishes_in_flight_request_and_exits_0(upstream, moat_factory, sig):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "10s"}}, upstream=up)
    slow = Background(m.https_port, "/slow?ms=2000")
    in_flight(up, "/slow")
    t0 = time.monotonic()
    m.send_signal(sig)
    # new connections are refused while the slow request is still running
    refused = wait_until(lambda: not port_accepts(m.https_port, timeout=0.2), 1.5)
    assert refused, "still accepting connections after %s" % sig.name
    assert time.monotonic() - t0 < 1.8
    r = slow.join(15)
    assert r.status == 200, r
    rc = m.wait(10)
    assert rc == 0, "exit code %r\nstderr:\n%s" % (rc, m.stderr())
    # the drained request is in the access log (flushed before exit)
    assert any(e.get("status") == 200 and str(e.get("path", "")).startswith("/slow")
               for e in m.access_log()), m.access_log()


def test_drain_closes_http_listener_too(proxy):
    m = proxy.moat
    m.send_signal(signal.SIGTERM)
    assert m.wait(10) == 0, m.stderr()
    assert not port_accepts(m.http_port)
    assert not port_accepts(m.https_port)


def test_idle_keepalive_connection_does_not_delay_exit(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "20s", "idle_timeout": "60s"}}, upstream=up)
    with Conn.tls(m.https_port) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        m.send_signal(signal.SIGTERM)
        rc = m.wait(5)
        assert rc == 0, "moat waited for an idle keep-alive connection (rc %r)" % rc
        assert time.monotonic() - t0 < 3
        assert c.wait_closed(2)


def test_drain_timeout_bounds_exit(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "1s", "upstream_timeout": "30s"}},
                     upstream=up)
    slow = Background(m.https_port, "/slow?ms=8000")
    in_flight(up, "/slow")
    t0 = time.monotonic()
    m.send_signal(signal.SIGTERM)
    rc = m.wait(6)
    assert rc == 0, "exit code %r after drain_timeout\nstderr:\n%s" % (rc, m.stderr())
    assert time.monotonic() - t0 < 4
    slow.join(30)  # the client sees its connection end, it does not hang


def test_keepalive_response_during_drain_closes_connection(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "10s"}}, upstream=up)
    with Conn.tls(m.https_port, timeout=10) as c:
        c.request("GET", "/slow?ms=1500")
        in_flight(up, "/slow")
        m.send_signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200, r
        # the client is told not to reuse the connection, and it is closed
        assert c.wait_closed(5)
    assert m.wait(10) == 0
