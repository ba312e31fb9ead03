"""A bounded loop of new TLS connections, one full request each, for tests that change
moat under load (reload, binary upgrade); and small helpers those tests share."""

import json
import threading

from moatctl import Conn, wait_until


class Loop:
    """Threads making new TLS connections to port, one GET /echo each (Connection:
    close), until finish() or max_each each. .failures lists every exception (refused,
    reset, timeout) or non-200 answer."""

    def __init__(self, port, threads=2, max_each=5000):
        self.port = port
        self.stop_ev = threading.Event()
        self.failures = []
        self.ok = 0
        self.lock = threading.Lock()
        self.ts = [threading.Thread(target=self.run, args=(max_each,), daemon=True)
                   for _ in range(threads)]
        for t in self.ts:
            t.start()

    def run(self, max_each):
        for i in range(max_each):
            if self.stop_ev.is_set():
                return
            try:
                with Conn.tls(self.port, timeout=10) as c:
                    c.request("GET", "/echo?i=%d" % i, headers=[("Connection", "close")])
                    r = c.read_response()
                err = None if r.status == 200 else "status %d" % r.status
            except Exception as e:  # noqa: BLE001 (any failure is counted)
                err = "%s: %s" % (type(e).__name__, e)
            with self.lock:
                if err:
                    self.failures.append(err)
                else:
                    self.ok += 1

    def count(self):
        with self.lock:
            return self.ok

    def wait_more(self, n, timeout=30):
        """Waits until n more requests succeeded (or one failed)."""
        start = self.count()
        assert wait_until(lambda: self.count() >= start + n or self.failures, timeout), \
            "the request loop made no progress"

    def finish(self):
        self.stop_ev.set()
        for t in self.ts:
            t.join(30)
        return self.failures


def rewrite(m, change):
    """Applies change(cfg) to moat's config dict and writes its file (JSON, valid YAML)."""
    change(m.cfg)
    with open(m.config_path, "w") as f:
        json.dump(m.cfg, f, indent=2)
        f.write("\n")


def get_status(port):
    """The status of one GET /echo on a new TLS connection."""
    with Conn.tls(port, timeout=10) as c:
        c.request("GET", "/echo")
        return c.read_response().status
