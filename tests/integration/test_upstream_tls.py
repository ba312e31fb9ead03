"""moat -> upstream over TLS (upstreams.NAME.tls): the upstream's certificate is
verified against tls.ca and its name (tls.server_name, else the server address), and
nothing is sent in clear. Also: config keys that are not implemented are refused, not
silently ignored."""
import os
import signal
import subprocess
import sys
import pytest

import moatctl

UPSTREAM = r'''
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = json.dumps({"tls": True, "path": self.path,
                        "xfp": self.headers.get("X-Forwarded-Proto")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
'''


@pytest.fixture
def tls_upstream(tmp_path):
    port = moatctl.free_port()
    script = tmp_path / "tls_upstream.py"
    script.write_text(UPSTREAM)
    proc = subprocess.Popen([sys.executable, str(script), str(port),
                             os.path.join(moatctl.CERTS, "server.crt"),
                             os.path.join(moatctl.CERTS, "server.key")],
                            stderr=subprocess.DEVNULL)
    try:
        assert moatctl.wait_until(lambda: _listening(port), 10), "TLS upstream did not start"
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listening(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def _moat(start_moat, port, tls):
    return start_moat({"upstreams": {"app": {"servers": ["127.0.0.1:%d" % port], "tls": tls}}})


def test_verified_tls_upstream_serves(start_moat, tls_upstream):
    m = _moat(start_moat, tls_upstream, {"enabled": True, "ca": moatctl.CA})
    for _ in range(3):  # also over a kept-alive TLS upstream connection
        r = moatctl.curl(m.https_port, "/over-tls")
        assert r.status == 200, r
        assert b'"tls": true' in r.body and b'"/over-tls"' in r.body


def test_server_name_is_verified(start_moat, tls_upstream):
    ok = _moat(start_moat, tls_upstream,
               {"enabled": True, "ca": moatctl.CA, "server_name": "localhost"})
    assert moatctl.curl(ok.https_port, "/").status == 200
    ok.stop()
    bad = _moat(start_moat, tls_upstream,
                {"enabled": True, "ca": moatctl.CA, "server_name": "not-this-host.example"})
    assert moatctl.curl(bad.https_port, "/").status == 502


def test_untrusted_upstream_certificate_is_refused(start_moat, tls_upstream, tmp_path):
    other_ca = os.path.join(moatctl.CERTS, "server-ec.crt")  # a certificate, not our CA
    m = _moat(start_moat, tls_upstream, {"enabled": True, "ca": other_ca})
    assert moatctl.curl(m.https_port, "/").status == 502


def test_plain_moat_to_tls_upstream_fails_closed(start_moat, tls_upstream):
    """Without tls.enabled moat speaks plain HTTP; a TLS server cannot answer that: 502."""
    m = _moat(start_moat, tls_upstream, {"enabled": False})
    assert moatctl.curl(m.https_port, "/").status == 502


@pytest.mark.parametrize("overrides,needle", [
    ({"upstreams": {"app": {"servers": ["127.0.0.1:9"], "health": {"path": "/healthz"}}}},
     "upstreams.app.health.path: not supported yet"),
    ({"log": {"syslog": {"address": "127.0.0.1:6514"}}}, "log.syslog: not supported yet"),
])
def test_unimplemented_keys_are_refused(tmp_path, overrides, needle):
    path, _ = moatctl.write_config(tmp_path, overrides)
    p = subprocess.run([moatctl.moat_bin(), "-t", "-c", path], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1
    assert needle in p.stderr, p.stderr
