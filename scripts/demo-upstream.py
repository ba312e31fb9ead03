#!/usr/bin/env python3
"""The demo application behind moat for scripts/run.sh (standard library only).

    scripts/demo-upstream.py [--port 9000] [--host 127.0.0.1] [--name demo]

"/" answers a small text page listing the request headers moat forwarded
(X-Forwarded-*, X-Request-ID, ...). Every endpoint of the integration tests'
upstream works too: /echo (JSON), /slow?ms=N, /status?code=N, /chunked, /big,
/ws (websocket echo), /healthz.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import upstream_server  # noqa: E402


class DemoHandler(upstream_server.Handler):
    """The test upstream, with a page for people at "/"."""

    def ep_page(self, req, close):
        lines = [
            "Hello from the demo application behind moat.",
            "",
            "moat terminated TLS, checked the request and forwarded it here as:",
            "",
            "  %s %s %s" % (req.method, req.target, req.version),
        ]
        lines += ["  %s: %s" % (k, v) for k, v in req.headers]
        lines += [
            "",
            "This was request %d on upstream connection %d (moat keeps connections alive)."
            % (self.count, self.conn_id),
            "Try /echo for JSON, /slow?ms=2000, /status?code=503 or /ws (websocket echo).",
            "",
        ]
        self.respond(req, 200, "\n".join(lines).encode("utf-8"), "text/plain; charset=utf-8",
                     close=close)

    DEFAULT_ROUTE = "ep_page"


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--port" not in argv:
        argv = ["--port", "9000"] + argv
    sys.exit(upstream_server.main(argv, handler=DemoHandler, default_name="demo"))
