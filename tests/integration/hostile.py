"""Shared tools of the hostile-client suite (tests/integration/test_hostile_*.py).

    probe = hostile.LatencyProbe(m.https_port)   # another, well-behaved client
    with probe:
        ... flood moat ...
    print(probe.report())                         # "n=.. p50=..ms max=..ms errors=.."
    assert probe.ok()                             # it was served meanwhile

    with hostile.RssWatch(m.pid) as rss:          # samples VmRSS every 20 ms
        ... flood ...
    assert rss.peak_growth_kib() < BOUND

RSS bounds do not hold under AddressSanitizer (its quarantine keeps freed memory,
its shadow doubles the rest): tests that bound RSS call skip_if_sanitized().
"""

import os
import threading
import time

import pytest

import moatctl

SANITIZED = os.environ.get("MOAT_SANITIZED") == "1"


def skip_if_sanitized():
    if SANITIZED:
        pytest.skip("RSS bounds do not hold under ASan (quarantine and shadow memory)")


def rss_kib(pid):
    return moatctl.proc_status(pid, "VmRSS")


class RssWatch:
    """Samples a process's VmRSS in a thread; the peak is what a flood cost."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.base = rss_kib(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                v = rss_kib(self.pid)
            except OSError:
                return
            if v is not None and v > self.peak:
                self.peak = v
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    def peak_growth_kib(self):
        return self.peak - self.base

    def settle_kib(self, timeout=10.0, slack_kib=8 * 1024):
        """Waits for RSS to fall back within slack of the baseline; returns the last value."""
        last = [rss_kib(self.pid)]

        def back():
            last[0] = rss_kib(self.pid)
            return last[0] - self.base <= slack_kib

        moatctl.wait_until(back, timeout, interval=0.2)
        return last[0]


class LatencyProbe:
    """A well-behaved client in a thread: a new TLS connection and one GET, again and again.

    What the flood did to everyone else: each round trip's latency, and errors."""

    def __init__(self, port, path="/", pause=0.05, timeout=10.0):
        self.port = port
        self.path = path
        self.pause = pause
        self.timeout = timeout
        self.lat = []
        self.errors = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _once(self):
        t0 = time.monotonic()
        with moatctl.Conn.tls(self.port, timeout=self.timeout) as c:
            c.request("GET", self.path)
            r = c.read_response()
        if r.status >= 500:
            raise AssertionError("status %d" % r.status)
        return time.monotonic() - t0

    def _run(self):
        while not self._stop.is_set():
            try:
                self.lat.append(self._once())
            except Exception as e:  # noqa: BLE001 (any failure is a finding)
                self.errors.append(repr(e))
            self._stop.wait(self.pause)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(self.timeout + 5)

    def stats(self):
        s = sorted(self.lat)
        if not s:
            return {"n": 0, "p50_ms": None, "max_ms": None, "errors": len(self.errors)}
        return {"n": len(s), "p50_ms": round(s[len(s) // 2] * 1000, 1),
                "max_ms": round(s[-1] * 1000, 1), "errors": len(self.errors)}

    def report(self):
        return "other client: %s" % self.stats()

    def ok(self, min_requests=1):
        """Served meanwhile: at least min_requests answered, none failed."""
        return len(self.lat) >= min_requests and not self.errors
