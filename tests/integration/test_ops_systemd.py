"""moat under systemd (issue 15 item 9): conf/moat.service passes `systemd-analyze verify`
with no warning (and the check fails on a broken copy), and moat speaks the sd_notify
protocol on NOTIFY_SOCKET: READY=1 once its ports accept, RELOADING=1 ... READY=1 around
every reload (a refused one too, STATUS= telling which), STOPPING=1 when it drains.

No systemd runs here: the notifications go to a datagram socket the test binds, as
systemd's would be, and moat is started by the test with NOTIFY_SOCKET set."""

import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

import moatctl
from moatctl import REPO, curl, port_accepts, wait_until

UNIT = os.path.join(REPO, "conf", "moat.service")
INSTALLED_BIN = "/usr/local/bin/moat"


# ---- the unit file ------------------------------------------------------------------------

def analyze():
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze not found (package systemd: scripts/install-deps.sh --test)"
    return exe


def unit_for_this_build(tmp_path, text=None):
    """The unit with its binary paths pointing at the moat under test (verify checks that
    ExecStart's program exists and is executable); its path."""
    text = open(UNIT).read() if text is None else text
    assert INSTALLED_BIN in text, "the unit no longer runs %s: update this test" % INSTALLED_BIN
    d = tmp_path / "units"
    d.mkdir(exist_ok=True)
    p = d / "moat.service"
    p.write_text(text.replace(INSTALLED_BIN, os.path.abspath(moatctl.moat_bin())))
    return str(p)


def verify(path):
    """(ok, output) of `systemd-analyze verify`: ok only with exit 0 AND no output, as
    systemd ignores a bad setting with a warning and exits 0 all the same."""
    p = subprocess.run([analyze(), "verify", path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    out = (p.stdout + p.stderr).strip()
    return p.returncode == 0 and not out, "exit %d: %s" % (p.returncode, out)


def unit_settings():
    """{section: {key: [values]}} of conf/moat.service."""
    out, section = {}, None
    for line in open(UNIT):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.match(r"\[(\w+)\]$", line)
        if m:
            section = out.setdefault(m.group(1), {})
            continue
        k, v = line.split("=", 1)
        section.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_file_verifies_without_warnings(tmp_path):
    ok, out = verify(unit_for_this_build(tmp_path))
    assert ok, out


@pytest.mark.parametrize("good,bad", [
    ("Type=notify", "Type=notifyy"),                        # an unknown value: a warning
    ("ProtectSystem=strict", "ProtectSystem=stric"),
    ("Restart=on-failure", "Restar=on-failure"),            # an unknown key
    ("KillSignal=SIGTERM", "KillSignal=SIGTERN"),
    ("[Service]", "[Servic]"),                              # no ExecStart=: an error
    ("ExecStart=" + INSTALLED_BIN, "ExecStart=/nonexistent/moat"),
])
def test_verify_fails_on_a_broken_unit(tmp_path, good, bad):
    text = open(UNIT).read()
    assert text.count(good) >= 1, "the unit has no %r any more: update this test" % good
    ok, out = verify(unit_for_this_build(tmp_path, text.replace(good, bad, 1)))
    assert not ok, "systemd-analyze accepted a unit with %r: %s" % (bad, out)


def test_unit_has_the_expected_settings():
    s = unit_settings()["Service"]
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == INSTALLED_BIN + " -c /etc/moat/moat.yaml"
    assert one["ExecStartPre"] == INSTALLED_BIN + " -t -c /etc/moat/moat.yaml"
    assert one["ExecReload"] == INSTALLED_BIN + " -s reload -c /etc/moat/moat.yaml"
    assert one["User"] == "moat" and one["KillSignal"] == "SIGTERM"
    assert one["CapabilityBoundingSet"] == one["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                 ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                 ("Restart", "on-failure")):
        assert one[k] == v, (k, one.get(k))
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert one["LimitNOFILE"].split(":")[-1] == "1048576"  # fdlimit.c's FD_NR_OPEN_DEFAULT
    assert one["LogsDirectory"] == "moat" and one["RuntimeDirectory"] == "moat"
    # the stop timeout covers the sample config's drain (and the default, 30s)
    with open(os.path.join(REPO, "conf", "moat.yaml")) as f:
        drain = re.search(r"^\s*drain_timeout:\s*(\d+)s\s*$", f.read(), re.M)
    drain_s = int(drain.group(1)) if drain else 30
    stop = re.fullmatch(r"(\d+)s?", one["TimeoutStopSec"])
    assert stop and int(stop.group(1)) >= max(drain_s, 30) + 10, one["TimeoutStopSec"]


# ---- sd_notify ----------------------------------------------------------------------------

class NotifySocket:
    """The service manager's end: an abstract unix datagram socket; NOTIFY_SOCKET's value
    is .address. Every datagram is kept as a dict of its KEY=VALUE lines, plus "_pid": the
    sender's PID from its credentials, as systemd reads them (NotifyAccess=)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        name = "moat-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        self.sock.bind("\0" + name)
        self.address = "@" + name
        self.got = []

    def close(self):
        self.sock.close()

    def poll(self, timeout):
        """Reads what arrives within timeout; returns the new messages."""
        new = []
        self.sock.settimeout(timeout)
        try:
            while True:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
                msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
                for level, kind, cred in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        msg["_pid"] = struct.unpack("iII", cred[:12])[0]
                new.append(msg)
                self.sock.settimeout(0.01)
        except (socket.timeout, BlockingIOError):
            pass
        self.got += new
        return new


def states(msgs):
    """The sequence of state words and STATUS texts, e.g. ["RELOADING", "STATUS:...", ...]."""
    out = []
    for m in msgs:
        for k, v in m.items():
            if k == "STATUS":
                out.append("STATUS:" + v)
            elif k == "MAINPID":
                out.append("MAINPID")
            elif v == "1":
                out.append(k)
    return out


@pytest.fixture
def notify():
    n = NotifySocket()
    try:
        yield n
    finally:
        n.close()


def start_notifying(m, address):
    """Starts the (unstarted) Moat m with NOTIFY_SOCKET=address, without waiting: its
    proc is set, so the fixture stops it by PID."""
    m.out = open(m.stdout_path, "ab")
    m.err = open(m.stderr_path, "ab")
    m.err_start = m.err.tell()
    env = dict(os.environ, NOTIFY_SOCKET=address)
    m.proc = subprocess.Popen([m.binary, "-c", m.config_path], cwd=REPO, env=env,
                              stdin=subprocess.DEVNULL, stdout=m.out, stderr=m.err,
                              start_new_session=True)
    return m


def collect_until(n, key, m, timeout=10.0, alive=None):
    """Every message up to the first holding key; fails if moat (or alive() is false)
    exits first."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in n.poll(0.02):
            seen.append(msg)
            if key in msg:
                return seen
        if not (alive or m.alive)():
            raise AssertionError("moat exited (%s) before %s; received %r\nstderr:\n%s"
                                 % (m.proc.returncode, key, seen, m.stderr()))
    raise AssertionError("no %s within %.0fs; received %r\nstderr:\n%s"
                         % (key, timeout, seen, m.stderr()))


def readyz(m):
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=5)
    try:
        c.request("GET", "/readyz")
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_ready_only_once_the_ports_accept(upstream, moat_factory, notify):
    up = upstream("app")
    m = start_notifying(moat_factory(upstream=up, start=False), notify.address)
    ports = (m.https_port, m.http_port, m.admin_port)
    msgs = collect_until(notify, "READY", m)
    # at the moment READY=1 is read, every listener accepts
    accepting = [p for p in ports if port_accepts(p, timeout=2)]
    assert accepting == list(ports), "READY=1 before ports %s accept" % (
        set(ports) - set(accepting))
    assert states(msgs) == ["STATUS:generation 1 live: 2 workers", "READY"], msgs
    assert readyz(m) == (200, "ready\n")
    assert curl(m.https_port, "/echo").status == 200
    # nothing else is announced while it simply serves
    assert notify.poll(0.3) == []


def test_reload_is_announced_whatever_its_result(upstream, moat_factory, notify):
    up = upstream("app")
    m = start_notifying(moat_factory(upstream=up, start=False), notify.address)
    collect_until(notify, "READY", m)
    good = open(m.config_path).read()

    m.reload()
    msgs = collect_until(notify, "READY", m)
    assert states(msgs) == ["RELOADING", "STATUS:generation 2 live (reloaded)", "READY"], msgs
    usec = int(msgs[0]["MONOTONIC_USEC"])  # Type=notify-reload (systemd 253) wants it
    assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 60_000_000

    with open(m.config_path, "w") as f:
        f.write(good.replace('"routes"', '"routez"', 1))  # an unknown key: refused
    m.reload()
    msgs = collect_until(notify, "READY", m)
    assert states(msgs) == [
        "RELOADING",
        "STATUS:reload refused (reasons in the log); generation 2 still serves",
        "READY"], msgs
    assert curl(m.https_port, "/echo").status == 200  # the old generation serves

    with open(m.config_path, "w") as f:
        f.write(good)
    m.reload()
    msgs = collect_until(notify, "READY", m)
    assert states(msgs)[1] == "STATUS:generation 3 live (reloaded)", msgs


def test_stopping_on_sigterm_then_exit_0(upstream, moat_factory, notify):
    up = upstream("app")
    m = start_notifying(moat_factory(upstream=up, start=False), notify.address)
    collect_until(notify, "READY", m)
    m.send_signal(signal.SIGTERM)
    msgs = collect_until(notify, "STOPPING", m)
    assert states(msgs) == ["STATUS:draining (SIGTERM)", "STOPPING"], msgs
    assert m.wait(15) == 0, m.stderr()
    assert notify.poll(0.1) == []  # nothing after STOPPING=1: systemd sees the exit


def test_no_listener_on_notify_socket_does_not_matter(upstream, moat_factory, tmp_path):
    """A NOTIFY_SOCKET nobody listens on (a stale environment): moat serves and stops."""
    up = upstream("app")
    m = start_notifying(moat_factory(upstream=up, start=False),
                        str(tmp_path / "nobody-listens.sock"))
    assert wait_until(lambda: port_accepts(m.https_port) or not m.alive(), 10), m.stderr()
    assert curl(m.https_port, "/echo").status == 200
    m.send_signal(signal.SIGTERM)
    assert m.wait(15) == 0, m.stderr()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:  # a zombie is not serving
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_upgrade_makes_the_new_process_the_main_one(upstream, moat_factory, notify):
    """SIGUSR2: the old process, still systemd's main PID, sends MAINPID=<new> when it
    hands over, then drains without STOPPING=1; the new one sends nothing before (it is
    not main yet: NotifyAccess=main would drop it), and everything after."""
    up = upstream("app")
    m = start_notifying(moat_factory(upstream=up, start=False), notify.address)
    collect_until(notify, "READY", m)
    old, new = m.pid, None
    try:
        m.send_signal(signal.SIGUSR2)
        msgs = collect_until(notify, "MAINPID", m, timeout=20)
        new = int(msgs[-1]["MAINPID"])
        assert new != old and all(x.get("_pid") == old for x in msgs), msgs
        assert states(msgs) == ["STATUS:upgraded: process %d serves" % new, "MAINPID"], msgs
        assert m.wait(15) == 0, m.stderr()
        assert [x for x in notify.poll(0.3) if x.get("_pid") == old] == []  # no STOPPING=1
        assert curl(m.https_port, "/echo").status == 200

        os.kill(new, signal.SIGHUP)
        msgs = collect_until(notify, "READY", m, alive=lambda: pid_alive(new))
        assert states(msgs)[0] == "RELOADING" and {x["_pid"] for x in msgs} == {new}, msgs

        os.kill(new, signal.SIGTERM)
        msgs = collect_until(notify, "STOPPING", m, alive=lambda: pid_alive(new))
        assert states(msgs)[-1] == "STOPPING" and {x["_pid"] for x in msgs} == {new}, msgs
        assert wait_until(lambda: not pid_alive(new), 15), "the new process did not exit"
    finally:
        if new and pid_alive(new):
            os.kill(new, signal.SIGKILL)


def test_moat_s_reload_as_execreload(upstream, moat_factory, notify, tmp_path):
    """The unit's ExecReload, `moat -s reload`: the same RELOADING=1 ... READY=1 from the
    main process, and its exit status tells systemctl whether the reload took."""
    up = upstream("app")
    m = start_notifying(moat_factory({"control_socket": str(tmp_path / "control.sock")},
                                     upstream=up, start=False), notify.address)
    collect_until(notify, "READY", m)
    p = moatctl.run_moat(["-s", "reload", "-c", m.config_path])
    assert p.returncode == 0, p.stdout + p.stderr
    msgs = collect_until(notify, "READY", m)
    assert states(msgs) == ["RELOADING", "STATUS:generation 2 live (reloaded)", "READY"], msgs
    assert {x["_pid"] for x in msgs} == {m.pid}, msgs

    good = open(m.config_path).read()
    with open(m.config_path, "w") as f:
        f.write(good.replace('"routes"', '"routez"', 1))
    p = moatctl.run_moat(["-s", "reload", "-c", m.config_path])
    assert p.returncode == 1 and "routez" in p.stdout + p.stderr, p.stdout + p.stderr
    msgs = collect_until(notify, "READY", m)
    assert states(msgs)[1].startswith("STATUS:reload refused"), msgs
