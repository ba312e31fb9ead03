"""Operating moat as ops expect (issue 15): SIGUSR1 reopens the log files (logrotate),
SIGQUIT drains, access-log lines buffered at exit are
flushed, a second instance cannot share a port, the command line (-c required, --help,
--version, exit 2 on usage errors), and /readyz that says why it is not ready.

test_core_signals.py covers SIGTERM/SIGINT draining, test_core_cli.py -V and -t,
test_ops_upgrade.py SIGUSR2 (binary upgrade), test_ops_reload.py what a reload applies."""

import http.client
import os
import signal
import threading

from moatctl import Conn, curl, free_port, run_moat, wait_until, write_config


# ---- helpers ------------------------------------------------------------------------------

def admin(m, path, method="GET"):
    """(status, body text) of one request to moat's admin listener."""
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def stderr_has(m, text, timeout=5.0):
    return wait_until(lambda: text in m.stderr(), timeout)


def get_ok(port, n, path="/echo"):
    """n requests on one keep-alive connection, each answered 200."""
    with Conn.tls(port, timeout=10) as c:
        for i in range(n):
            c.request("GET", "%s?i=%d" % (path, i))
            r = c.read_response()
            assert r.status == 200, r


class Slow:
    """One slow request in a thread (keeps moat draining); .result is its CurlResult."""

    def __init__(self, port, ms):
        self.result = None
        self.t = threading.Thread(target=self.run, args=(port, ms), daemon=True)
        self.t.start()

    def run(self, port, ms):
        self.result = curl(port, "/slow?ms=%d" % ms, timeout=30)

    def join(self, timeout):
        self.t.join(timeout)
        assert not self.t.is_alive(), "the slow request did not finish"
        return self.result


def wait_in_flight(up, path="/slow"):
    assert wait_until(lambda: any(e["path"] == path for e in up.requests()), 5), up.log()


# ---- SIGUSR1: logrotate -------------------------------------------------------------------

def test_usr1_reopens_access_and_audit_logs_nothing_lost(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(upstream=up)
    server = "/upstreams/app/127.0.0.1:%d" % up.port

    get_ok(m.https_port, 10)
    assert admin(m, server + "/drain", "POST")[0] == 200  # one audit line each
    assert admin(m, server + "/ready", "POST")[0] == 200
    assert wait_until(lambda: count_lines(m.access_log_path) == 10, 5), m.access_log()
    # start, certificate_loaded, then one line each
    assert wait_until(lambda: count_lines(m.audit_log_path) == 4, 5), m.audit_log()

    # logrotate: rename, then USR1
    os.rename(m.access_log_path, m.access_log_path + ".1")
    os.rename(m.audit_log_path, m.audit_log_path + ".1")
    m.send_signal(signal.SIGUSR1)
    m.stopped_by_test = False  # USR1 must not stop it: the fixture reports a death
    assert stderr_has(m, "log files reopened"), m.stderr()
    assert os.path.exists(m.access_log_path) and os.path.exists(m.audit_log_path)

    get_ok(m.https_port, 7)
    assert admin(m, server + "/drain", "POST")[0] == 200
    assert admin(m, server + "/ready", "POST")[0] == 200
    assert admin(m, server + "/drain", "POST")[0] == 200
    assert admin(m, server + "/ready", "POST")[0] == 200
    assert m.alive()
    assert m.stop() == 0, m.stderr()  # flushes what the workers still buffer

    assert count_lines(m.access_log_path + ".1") == 10
    assert count_lines(m.access_log_path) == 7
    assert count_lines(m.audit_log_path + ".1") == 4
    assert count_lines(m.audit_log_path) == 5  # and the stop event


# ---- SIGQUIT, flush at exit (SIGUSR2: test_ops_upgrade.py) ------------------------------

def test_quit_drains_in_flight_request_and_exits_0(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "10s"}}, upstream=up)
    slow = Slow(m.https_port, 1500)
    wait_in_flight(up)
    m.send_signal(signal.SIGQUIT)
    assert slow.join(15).status == 200
    rc = m.wait(10)
    assert rc == 0, "exit code %r\n%s" % (rc, m.stderr())
    assert "SIGQUIT: draining" in m.stderr()


def test_other_signals_are_logged_not_fatal(upstream, moat_factory):
    """Signals whose default action ends a process (SIGALRM, SIGPWR...) are logged and
    ignored: moat never dies silently; only SIGTERM, SIGINT, SIGQUIT stop it."""
    m = moat_factory(upstream=upstream("app"))
    sigs = [signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR,
            signal.SIGXCPU, signal.SIGXFSZ]
    for sig in sigs:
        m.send_signal(sig)
        m.stopped_by_test = False
        name = {signal.SIGIO: "SIGPOLL"}.get(sig, signal.Signals(sig).name)  # glibc's name
        assert stderr_has(m, "%s: ignored (SIGTERM, SIGINT or SIGQUIT stop moat)" % name), \
            m.stderr()
    assert m.alive()
    get_ok(m.https_port, 2)
    assert m.stop() == 0


def test_access_lines_buffered_at_exit_are_flushed(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    n = 40
    with Conn.tls(m.https_port, timeout=10) as c:
        for i in range(n):
            c.request("GET", "/echo?i=%d" % i)
            assert c.read_response().status == 200
        m.send_signal(signal.SIGTERM)  # at once: the worker's buffer still holds lines
        assert m.wait(10) == 0, m.stderr()
    assert count_lines(m.access_log_path) == n, m.access_log()


# ---- port ownership -----------------------------------------------------------------------

def second_config(tmp_path, first, **listen):
    ov = {"listen": dict(listen), "log": {"access": str(tmp_path / "access2.log"),
                                          "audit": str(tmp_path / "audit2.log")}}
    path, _ = write_config(tmp_path, ov, upstream_port=free_port(), name="second.yaml")
    return path


def test_second_instance_on_the_https_port_fails(tmp_path, proxy):
    m = proxy.moat
    addr = "127.0.0.1:%d" % m.https_port
    path = second_config(tmp_path, m, https=[addr], redirect_https_port=m.https_port)
    p = run_moat(["-c", path], timeout=20)
    assert p.returncode == 1, p.stdout + p.stderr
    want = ("listen.https[0] %s: address already in use (another process owns it; "
            "moat does not share its ports)" % addr)
    assert want in p.stderr, p.stderr
    for i in range(20):
        r = curl(m.https_port, "/echo?n=%d" % i)
        assert r.status == 200, r
    assert wait_until(lambda: len(proxy.up.requests()) == 20, 5), proxy.up.requests()


def test_second_instance_on_the_http_port_fails(tmp_path, proxy):
    m = proxy.moat
    addr = "127.0.0.1:%d" % m.http_port
    path = second_config(tmp_path, m, http=[addr])
    p = run_moat(["-c", path], timeout=20)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "listen.http[0] %s: address already in use" % addr in p.stderr, p.stderr
    r = curl(m.http_port, "/x", scheme="http")
    assert r.status == 308, r


def test_second_instance_on_the_admin_port_fails(tmp_path, proxy):
    m = proxy.moat
    addr = "127.0.0.1:%d" % m.admin_port
    path = second_config(tmp_path, m, admin=addr)
    p = run_moat(["-c", path], timeout=20)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "listen.admin" in p.stderr and "in use" in p.stderr, p.stderr
    assert admin(m, "/healthz")[0] == 200


# ---- command line -------------------------------------------------------------------------

def test_help_exits_0_with_usage():
    for arg in ("-h", "--help"):
        p = run_moat([arg])
        assert p.returncode == 0, p.stdout + p.stderr
        for opt in ("usage", "-c", "--config", "-t", "-V", "--version", "--help"):
            assert opt in p.stdout, (arg, p.stdout)


def test_long_version_exits_0():
    p = run_moat(["--version"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("moat "), p.stdout


def test_no_arguments_exits_2_naming_the_option():
    p = run_moat([])
    assert p.returncode == 2, p.stdout + p.stderr
    assert "-c FILE is required" in p.stderr, p.stderr
    assert "usage" in p.stderr


def test_unknown_option_or_argument_exits_2_with_usage():
    for args in (["--bogus"], ["-x"], ["-c", "conf/moat.yaml", "extra"]):
        p = run_moat(args)
        assert p.returncode == 2, (args, p.stdout + p.stderr)
        assert "usage" in p.stderr, (args, p.stderr)
        assert p.stdout == "", (args, p.stdout)


# ---- /readyz --------------------------------------------------------------------------------

def readyz(m):
    return admin(m, "/readyz")


def test_readyz_follows_redis(upstream, moat_factory, redis_server):
    up = upstream("app")
    m = moat_factory({"redis": {"address": redis_server.addr}}, upstream=up)
    assert wait_until(lambda: readyz(m)[0] == 200, 10), readyz(m)
    assert readyz(m)[1] == "ready\n"
    redis_server.stop()
    assert wait_until(lambda: readyz(m)[0] == 503, 10), readyz(m)
    assert "redis" in readyz(m)[1], readyz(m)
    redis_server.start()
    assert wait_until(lambda: readyz(m)[0] == 200, 15), readyz(m)


def test_readyz_503_names_the_pool_with_no_server(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"upstreams": {"app": {"health": {"path": "/healthz",
                                                       "interval": "200ms"}}}}, upstream=up)
    assert wait_until(lambda: readyz(m)[0] == 200, 10), readyz(m)
    up.stop()
    assert wait_until(lambda: readyz(m)[0] == 503, 10), readyz(m)
    assert "app" in readyz(m)[1] and "no server" in readyz(m)[1], readyz(m)


def test_readyz_503_while_draining(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "10s"}}, upstream=up)
    assert readyz(m) == (200, "ready\n")
    slow = Slow(m.https_port, 2500)
    wait_in_flight(up)
    m.send_signal(signal.SIGTERM)
    assert wait_until(lambda: readyz(m)[0] == 503, 2), readyz(m)
    status, body = readyz(m)
    assert status == 503 and "draining" in body, (status, body)
    assert slow.join(15).status == 200
    assert m.wait(10) == 0, m.stderr()


def test_start_reload_and_stop_are_audited(upstream, moat_factory):
    """start, a reload that applies (config_reloaded, generation 2), one that is refused
    (config_rejected, generation still 2) and the stop are on the audit trail."""
    up = upstream("app")
    m = moat_factory(upstream=up)

    def events():
        return [(e["event"], e.get("generation")) for e in m.audit_log()
                if e.get("event") in ("start", "stop", "config_reloaded", "config_rejected")]

    assert wait_until(lambda: events() == [("start", 1)], 5), events()
    m.reload()
    assert wait_until(lambda: ("config_reloaded", 2) in events(), 10), events()
    with open(m.config_path, "a") as f:
        f.write("\nbogus_key: 1\n")
    m.reload()
    assert wait_until(lambda: ("config_rejected", 2) in events(), 10), events()
    assert m.stop() == 0
    assert events() == [("start", 1), ("config_reloaded", 2), ("config_rejected", 2),
                        ("stop", 2)], events()
