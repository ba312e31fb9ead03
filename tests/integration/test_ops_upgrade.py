"""Binary upgrade without refused connections (issue 15 item 3): SIGUSR2 or
`moat -s upgrade` starts the binary again with the listening sockets; once the new
process is ready the old one drains and exits 0. A new process that fails (invalid
config, a binary that cannot run) leaves the old one serving.

Every process is stopped by PID: the new process of an upgrade (its PID comes from
`moat -s upgrade` or the log) in a finally block, the old one by the fixture."""

import errno
import os
import re
import shutil
import signal
import socket

import pytest
from looputil import Loop, get_status, rewrite
from moatctl import (Moat, listening_sockets, moat_bin, run_moat, stop_moats, wait_until,
                     write_config)


# ---- helpers ------------------------------------------------------------------------------

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not reaped by its parent) counts as gone
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_pid(pid, timeout=10):
    """Stops a process this test did not start directly (the upgrade's new moat)."""
    if pid is None or not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not alive(pid), timeout):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), 5)


def new_pid(text):
    m = re.search(r"upgrade: process (\d+) serves", text)
    return int(m.group(1)) if m else None


class CopiedBinary:
    """A moat started from a copy of the binary; replace(text) puts another file (or
    none) where it was, so that the upgrade runs that. Stopped by PID on exit."""

    def __init__(self, tmp_path, up):
        self.binary = os.path.join(str(tmp_path), "moat-copy")
        shutil.copy2(moat_bin(), self.binary)
        path, cfg = write_config(tmp_path, control(tmp_path), upstream_port=up.port)
        self.m = Moat(path, cfg, binary=self.binary, tmpdir=str(tmp_path))

    def __enter__(self):
        self.m.start()
        return self

    def replace(self, script=None):
        os.unlink(self.binary)
        if script is not None:
            with open(self.binary, "w") as f:
                f.write(script)
            os.chmod(self.binary, 0o755)
        self.m.send_signal(signal.SIGUSR2)
        self.m.stopped_by_test = False

    def __exit__(self, *exc):
        crashed = stop_moats([self.m])
        assert not crashed, crashed


def control(tmp_path, **kw):
    return dict(kw, control_socket=os.path.join(str(tmp_path), "control.sock"))


# ---- tests --------------------------------------------------------------------------------

def test_upgrade_under_load_refuses_nobody(tmp_path, upstream, moat_factory):
    """Three upgrades in a row (2 -> 3 -> 1 -> 2 workers: more, fewer sockets than
    workers) while clients connect; each old process exits 0 after draining."""
    up = upstream("app")
    m = moat_factory(control(tmp_path, workers=2), upstream=up)
    pids = [m.pid]
    loop = Loop(m.https_port, threads=3)
    try:
        loop.wait_more(30)
        for workers in (3, 1, 2):
            rewrite(m, lambda c: c.update(workers=workers))
            r = run_moat(["-s", "upgrade", "-c", m.config_path], timeout=60)
            pid = new_pid(r.stdout)
            assert r.returncode == 0 and pid, r.stdout + r.stderr
            assert "process %d drains and exits" % pids[-1] in r.stdout
            pids.append(pid)
            if len(pids) == 2:
                rc = m.wait(15)
                assert rc == 0, "old moat exit %r\n%s" % (rc, m.stderr())
            else:
                assert wait_until(lambda: not alive(pids[-2]), 15), "old moat did not exit"
            assert "moat[%d] info: stopped" % pids[-2] in m.stderr()
            loop.wait_more(40)
        failures = loop.finish()
        assert failures == [], (len(failures), failures[:5])
        assert loop.count() > 150
        assert alive(pids[-1]) and len(set(pids)) == 4
        assert get_status(m.https_port) == 200
        # all three sockets of the 2 -> 3 upgrade were handed on: none was closed
        assert listening_sockets(m.https_port) == 3
        # the new process owns the control socket and the admin listener
        r = run_moat(["-s", "reload", "-c", m.config_path])
        assert r.returncode == 0 and "generation 2 is live" in r.stdout, r.stderr
        pid = pids[-1]
        assert "moat[%d] info: upgrade: process %d took over" % (pid, pid) in m.stderr()
    finally:
        loop.finish()
        for pid in pids[1:]:
            stop_pid(pid)


def test_upgrade_with_an_invalid_config_keeps_the_old_one(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(control(tmp_path), upstream=up)
    rewrite(m, lambda c: (c.update(workers=0), c["limits"].update(drain_timeout="abc")))
    r = run_moat(["-s", "upgrade", "-c", m.config_path], timeout=60)
    assert r.returncode == 1, r.stdout
    assert "upgrade failed; process %d keeps serving" % m.pid in r.stderr, r.stderr
    assert "workers:" in r.stderr and "limits.drain_timeout:" in r.stderr, r.stderr
    assert m.alive()
    assert get_status(m.https_port) == 200
    assert listening_sockets(m.https_port) == 2
    ev = [e for e in m.audit_log() if e["event"] == "upgrade"]
    assert len(ev) == 1 and ev[0]["result"] == "failure" and ev[0]["old_pid"] == m.pid, ev
    assert "limits.drain_timeout" in ev[0]["detail"], ev


def test_upgrade_to_a_binary_that_cannot_run_keeps_the_old_one(tmp_path, upstream):
    """moat runs from a copy of the binary that is then removed: the exec fails."""
    with CopiedBinary(tmp_path, upstream("app")) as c:
        m = c.m
        c.replace(None)
        assert wait_until(lambda: "upgrade failed" in m.stderr(), 10), m.stderr()
        assert "cannot run the new binary" in m.stderr()
        assert m.alive()
        assert get_status(m.https_port) == 200


def test_sigusr2_upgrades(tmp_path, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(control(tmp_path, workers=1), upstream=up)
    old = m.pid
    pid = None
    try:
        m.send_signal(signal.SIGUSR2)
        assert wait_until(lambda: new_pid(m.stderr()), 30), m.stderr()
        pid = new_pid(m.stderr())
        assert m.wait(15) == 0
        assert "SIGUSR2: draining" in m.stderr()
        assert pid != old and alive(pid)
        assert get_status(m.https_port) == 200
        # the port stays moat's: a stranger (or a second moat's probe) cannot bind it
        stranger = socket.socket()
        try:
            with pytest.raises(OSError) as e:
                stranger.bind(("127.0.0.1", m.https_port))
            assert e.value.errno == errno.EADDRINUSE
        finally:
            stranger.close()
    finally:
        stop_pid(pid)


def test_upgrade_while_one_is_in_progress_is_refused(tmp_path, upstream):
    """moat runs from a copy of the binary, then replaced by a script that never says
    ready: a second upgrade and a reload are refused meanwhile; the script's exit fails
    the first."""
    with CopiedBinary(tmp_path, upstream("app")) as c:
        m = c.m
        c.replace("#!/bin/sh\nsleep 2\n")
        assert wait_until(lambda: "upgrade: started" in m.stderr(), 10), m.stderr()
        r = run_moat(["-s", "upgrade", "-c", m.config_path], timeout=60)
        assert r.returncode == 1, r.stdout
        assert "upgrade refused: an upgrade is in progress" in r.stderr
        r = run_moat(["-s", "reload", "-c", m.config_path], timeout=60)
        assert r.returncode == 1 and "reload refused: an upgrade is in progress" in r.stderr
        assert wait_until(lambda: "upgrade failed" in m.stderr(), 10), m.stderr()
        assert "the new process exited before it was ready (exit status 0)" in m.stderr()
        assert m.alive()
        assert get_status(m.https_port) == 200


def test_upgrade_keeps_one_audit_chain(tmp_path, upstream, moat_factory):
    """Both processes append to the chained audit file while they overlap (the old
    one's drain and stop, the new one's start): audit-verify still sees one chain."""
    up = upstream("app")
    key = tmp_path / "audit.key"
    key.write_text("5f" * 32 + "\n")
    os.chmod(key, 0o600)
    m = moat_factory(control(tmp_path, log={"audit_key_file": str(key)}), upstream=up)
    pid = None
    loop = Loop(m.https_port)
    try:
        loop.wait_more(10)
        for _ in range(2):
            r = run_moat(["-s", "upgrade", "-c", m.config_path], timeout=60)
            assert r.returncode == 0, r.stderr
            old, pid = pid, new_pid(r.stdout)
            if old:
                assert wait_until(lambda: not alive(old), 15)
            loop.wait_more(10)
        assert m.wait(15) == 0
        assert loop.finish() == []
    finally:
        loop.finish()
        stop_pid(pid)
    events = [e["event"] for e in m.audit_log()]
    assert events.count("start") == 3 and events.count("stop") == 3, events
    ups = [e for e in m.audit_log() if e["event"] == "upgrade"]
    assert [(e["result"], e["old_pid"]) for e in ups] == [("success", m.pid),
                                                          ("success", ups[0]["new_pid"])], ups
    assert "audit_chain_start" not in events[1:], events
    r = run_moat(["audit-verify", "--key", str(key), m.audit_log_path])
    assert r.returncode == 0 and r.stdout.startswith("ok: "), r.stdout + r.stderr
