"""Reload applies listeners and the worker count (issue 15 item 1), and `moat -s reload`.

A reload (SIGHUP or `moat -s reload -c FILE` through control_socket) opens the added
listen addresses (probed first: a port another process owns fails the reload and the
old generation keeps serving), closes the removed ones in every worker without
touching the others, and starts or drains workers. `moat -s reload` exits 0 with what
changed, or 1 with every error and its position."""

import http.client
import os
import signal
import socket

from looputil import Loop, get_status, rewrite
from moatctl import free_port, listening_sockets, proc_status, run_moat, wait_until


# ---- helpers ------------------------------------------------------------------------------

def ctl(m, cmd="reload"):
    return run_moat(["-s", cmd, "-c", m.config_path], timeout=60)


def refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def control(tmp_path):
    return {"control_socket": os.path.join(str(tmp_path), "control.sock")}


# ---- tests --------------------------------------------------------------------------------

def test_reload_adds_and_removes_listeners_under_load(tmp_path, upstream, moat_factory):
    up = upstream("app")
    extra, added = free_port(), free_port()
    m = moat_factory(dict(control(tmp_path), workers=2), upstream=up)
    rewrite(m, lambda c: c["listen"]["https"].append("127.0.0.1:%d" % extra))
    r = ctl(m)
    assert r.returncode == 0, r.stderr
    assert "+listen.https[1] 127.0.0.1:%d" % extra in r.stdout
    assert get_status(extra) == 200
    http_port = m.http_port

    loop = Loop(m.https_port)
    try:
        loop.wait_more(20)

        def change(c):
            c["listen"]["https"][1] = "127.0.0.1:%d" % added
            c["listen"]["http"] = []
        rewrite(m, change)
        r = ctl(m)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "generation 3 is live" in out, out
        assert "+listen.https[1] 127.0.0.1:%d" % added in out, out
        assert "-listen.https[1] 127.0.0.1:%d" % extra in out, out
        assert "-listen.http[0] 127.0.0.1:%d" % http_port in out, out
        loop.wait_more(30)
    finally:
        failures = loop.finish()
    assert failures == [], failures[:5]
    assert get_status(added) == 200
    assert wait_until(lambda: refused(extra) and refused(http_port), 5)
    assert listening_sockets(extra) == 0 and listening_sockets(http_port) == 0
    assert listening_sockets(m.https_port) == 2  # one per worker, untouched
    assert "reload: generation 3 is live: +listen.https[1]" in m.stderr()


def test_reload_with_a_port_another_process_owns_fails_cleanly(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(control(tmp_path), upstream=up)
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", 0))
    stranger.listen(8)
    taken = stranger.getsockname()[1]
    try:
        rewrite(m, lambda c: (c["listen"]["https"].append("127.0.0.1:%d" % taken),
                              c.update(workers=3)))
        r = ctl(m)
        assert r.returncode == 1, r.stdout
        assert "reload failed; generation 1 keeps serving" in r.stderr, r.stderr
        assert "listen.https[1] 127.0.0.1:%d: address already in use" % taken in r.stderr
        assert get_status(m.https_port) == 200
        assert listening_sockets(m.https_port) == 2  # the worker count did not change either
        assert listening_sockets(taken) == 1  # the stranger's only
        m.reload()  # SIGHUP: the same result, in the log
        assert wait_until(lambda: m.stderr().count("address already in use") >= 2, 5), m.stderr()
    finally:
        stranger.close()
    assert m.alive()


def test_reload_changes_the_worker_count(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(dict(control(tmp_path), workers=2), upstream=up)
    threads = proc_status(m.pid, "Threads")
    loop = Loop(m.https_port)
    try:
        loop.wait_more(10)
        rewrite(m, lambda c: c.update(workers=3))
        r = ctl(m)
        assert r.returncode == 0 and "workers 2 -> 3" in r.stdout, r.stdout + r.stderr
        assert listening_sockets(m.https_port) == 3
        assert proc_status(m.pid, "Threads") == threads + 1
        loop.wait_more(20)
        rewrite(m, lambda c: c.update(workers=1))
        r = ctl(m)
        assert r.returncode == 0 and "workers 3 -> 1" in r.stdout, r.stdout + r.stderr
        loop.wait_more(20)
    finally:
        failures = loop.finish()
    assert failures == [], failures[:5]
    # the retired workers drain and are joined; their sockets went to worker 0, unclosed
    assert wait_until(lambda: proc_status(m.pid, "Threads") == threads - 1, 10)
    assert listening_sockets(m.https_port) == 3
    assert get_status(m.https_port) == 200


def test_moat_s_reload_reports_every_error_with_its_position(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(control(tmp_path), upstream=up)
    rewrite(m, lambda c: (c.update(workers=0), c["limits"].update(drain_timeout="abc")))
    r = ctl(m)
    assert r.returncode == 1
    err = r.stderr
    assert "reload failed; generation 1 keeps serving" in err, err
    path = m.config_path
    assert any(line.startswith(path + ":") and "workers:" in line for line in err.splitlines())
    assert any(line.startswith(path + ":") and "limits.drain_timeout:" in line
               for line in err.splitlines()), err
    assert get_status(m.https_port) == 200
    assert m.alive()


def test_moat_s_without_control_socket_says_so(proxy):
    r = ctl(proxy.moat)
    assert r.returncode == 1
    assert "sets no control_socket" in r.stderr
    assert proxy.moat.alive()


def test_sighup_logs_what_changed(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    rewrite(m, lambda c: c.update(workers=2))
    m.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "reload: generation 2 is live: workers 1 -> 2" in m.stderr(), 5), \
        m.stderr()
    assert wait_until(lambda: listening_sockets(m.https_port) == 2, 5)


def test_moat_s_usage_and_no_instance(tmp_path):
    r = run_moat(["-s", "restart", "-c", "x.yaml"])
    assert r.returncode == 2 and "-s takes reload or upgrade" in r.stderr
    cfg = tmp_path / "moat.yaml"
    cfg.write_text('control_socket: "%s"\nworkers: 0\n' % (tmp_path / "none.sock"))
    r = run_moat(["-s", "reload", "-c", str(cfg)])  # invalid file: the line is found all the same
    assert r.returncode == 1 and "none.sock" in r.stderr and "is moat running?" in r.stderr


def test_reload_moves_the_admin_listener(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(control(tmp_path), upstream=up)
    old, new = m.admin_port, free_port()
    rewrite(m, lambda c: c["listen"].update(admin="127.0.0.1:%d" % new))
    r = ctl(m)
    assert r.returncode == 0, r.stderr
    assert "listen.admin 127.0.0.1:%d -> 127.0.0.1:%d" % (old, new) in r.stdout
    assert refused(old)
    c = http.client.HTTPConnection("127.0.0.1", new, timeout=10)
    try:
        c.request("GET", "/healthz")
        assert c.getresponse().status == 200
    finally:
        c.close()


def test_control_socket_bounds_the_command_line_and_waits(tmp_path, upstream, moat_factory):
    """The control socket takes one line of at most 64 bytes: a longer one is refused
    with an error, and a client that sends nothing is closed after 5 s; moat serves on."""
    m = moat_factory(control(tmp_path), upstream=upstream("app"))
    path = m.cfg["control_socket"]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(b"r" * 4096)  # no newline, far past the bound
        reply = s.recv(4096)
        assert reply.startswith(b"error") and b"command line too long" in reply, reply
    finally:
        s.close()
    silent = socket.socket(socket.AF_UNIX)
    silent.settimeout(15)
    try:
        silent.connect(path)
        assert silent.recv(4096) == b""  # closed by moat's 5 s timeout, nothing answered
    finally:
        silent.close()
    assert get_status(m.https_port) == 200
    assert ctl(m).returncode == 0
