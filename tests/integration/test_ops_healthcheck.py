"""`moat --healthcheck -c FILE` (issue 15 item 6): the container HEALTHCHECK's probe. It asks
the running moat's listen.admin for /readyz within 2 s: exit 0 when ready, 1 with the
reason otherwise (not ready, no admin listener, nobody answering), 2 on usage errors."""

import signal
import socket
import threading
import time

from moatctl import curl, run_moat, wait_until, write_config


def healthcheck(path):
    p = run_moat(["--healthcheck", "-c", path])
    return p.returncode, p.stdout, p.stderr


def test_ready_moat_exits_0(proxy):
    rc, out, err = healthcheck(proxy.moat.config_path)
    assert (rc, out.strip()) == (0, "ready"), (rc, out, err)


def test_unix_admin_socket(upstream, moat_factory, tmp_path):
    up = upstream("app")
    m = moat_factory({"listen": {"admin": "unix:%s" % (tmp_path / "admin.sock")}}, upstream=up)
    rc, out, err = healthcheck(m.config_path)
    assert (rc, out.strip()) == (0, "ready"), (rc, out, err)


def test_draining_moat_exits_1_saying_draining(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"limits": {"drain_timeout": "10s"}}, upstream=up)
    slow = threading.Thread(target=curl, args=(m.https_port, "/slow?ms=2500"),
                            kwargs={"timeout": 30}, daemon=True)
    slow.start()
    assert wait_until(lambda: any(e["path"] == "/slow" for e in up.requests()), 5), up.log()
    m.send_signal(signal.SIGTERM)
    rc, out, err = healthcheck(m.config_path)
    assert rc == 1, (rc, out, err)
    assert "503" in err and "not ready: draining" in err, err
    slow.join(15)
    assert m.wait(10) == 0, m.stderr()


def test_no_admin_listener_exits_1_saying_so(tmp_path):
    path, _ = write_config(tmp_path, {"listen": {"admin": None}})
    rc, out, err = healthcheck(path)
    assert rc == 1 and "no admin listener" in err, (rc, out, err)


def test_nobody_listening_exits_1_connection_refused(tmp_path):
    path, cfg = write_config(tmp_path)  # moat not started
    rc, out, err = healthcheck(path)
    assert rc == 1, (rc, out, err)
    assert cfg["listen"]["admin"] in err and "refused" in err.lower(), err


def test_silent_admin_times_out_in_about_2s(tmp_path):
    """A listener that accepts (in the backlog) and never answers: 2 s, then exit 1."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        path, _ = write_config(tmp_path, {"listen": {"admin": "127.0.0.1:%d"
                                                     % s.getsockname()[1]}})
        t0 = time.monotonic()
        rc, out, err = healthcheck(path)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert rc == 1 and "timed out" in err.lower(), (rc, out, err)
    assert 1.8 <= took < 5, took


def test_invalid_config_exits_1(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("listen: [\n")
    rc, out, err = healthcheck(str(p))
    assert rc == 1 and "bad.yaml" in err and "cannot be read" in err, (rc, out, err)


def test_usage_errors_exit_2(tmp_path):
    path, _ = write_config(tmp_path)
    for args in (["--healthcheck"], ["--healthcheck", "-t", "-c", path],
                 ["--healthcheck", "-c", path, "extra"]):
        p = run_moat(args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.strip(), args
