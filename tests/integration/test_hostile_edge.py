"""Hostile clients at the edge: the listeners themselves.

- listen.admin on a unix socket is a real AF_UNIX socket (mode 0600 by default), never
  a TCP port; only loopback addresses are accepted for a TCP admin listener.
- The plain-HTTP (redirect) listener honours limits.max_connections(_per_ip) and an
  absolute header deadline (a byte every 200 ms does not keep a connection alive).
- File descriptors running out (EMFILE) pause accepting instead of spinning the accept
  loop at 100 % CPU and logging every failure; RLIMIT_NOFILE is raised at start and a
  hard limit below the configuration's needs is reported.
"""

import os
import socket
import stat
import subprocess
import time

import pytest

import moatctl
from moatctl import Conn, run_moat, wait_until, write_config


# ---- helpers ----------------------------------------------------------------

def tcp_listen_ports(pid):
    """Local ports of the TCP sockets in LISTEN state that process pid holds."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(fn) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.append(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def unix_get(path, target):
    """GET target over the unix socket at path with curl; returns (status, body)."""
    p = subprocess.run(["curl", "-sS", "--max-time", "5", "--unix-socket", path,
                        "-o", "-", "-w", "\n%{http_code}", "http://localhost" + target],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


def check_config(tmp_path, overrides):
    path, _ = write_config(tmp_path, overrides, name="check.yaml")
    return run_moat(["-t", "-c", path])


def held_open(c, wait=1.0):
    """True if moat keeps the (silent) connection open for wait seconds."""
    return not c.wait_closed(wait)


# ---- 4. listen.admin on a unix socket ------------------------------------------------

def test_admin_unix_socket_is_a_0600_socket_and_no_tcp_port(upstream, moat_factory, tmp_path):
    sock = os.path.join(str(tmp_path), "admin.sock")
    m = moat_factory({"listen": {"admin": "unix:" + sock}}, upstream=upstream("app"))
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode), "no socket file at %s" % sock
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    code, body = unix_get(sock, "/healthz")
    assert (code, body) == (200, "ok\n")
    code, body = unix_get(sock, "/metrics")
    assert code == 200 and "moat_connections_accepted_total" in body, body[:300]
    # Only the https and http listeners are TCP (one socket per worker each).
    ports = tcp_listen_ports(m.pid)
    assert sorted(set(ports)) == sorted({m.https_port, m.http_port}), ports
    assert len(ports) == 2 * m.cfg["workers"], ports
    m.stop()
    assert not os.path.exists(sock), "the admin socket was left behind on exit"


def test_admin_unix_mode_configurable_and_stale_socket_replaced(upstream, moat_factory,
                                                                  tmp_path):
    sock = os.path.join(str(tmp_path), "admin.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)  # a socket file nobody listens on: what a killed moat leaves
    stale.close()
    m = moat_factory({"listen": {"admin": "unix:" + sock, "admin_mode": "0660"}},
                     upstream=upstream("app"))
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    assert unix_get(sock, "/healthz") == (200, "ok\n")
    assert "admin" in m.stderr() and "stale" in m.stderr(), m.stderr()


def test_admin_unix_socket_in_use_is_refused(upstream, moat_factory, tmp_path):
    sock = os.path.join(str(tmp_path), "admin.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(sock)
    live.listen(1)
    try:
        m = moat_factory({"listen": {"admin": "unix:" + sock}}, upstream=upstream("app"),
                         start=False)
        with pytest.raises(AssertionError, match="in use by another process"):
            m.start()
        m.stopped_by_test = True  # its exit status 1 is what this test wants
        assert os.path.exists(sock), "moat removed a socket another process listens on"
    finally:
        live.close()


def test_admin_unix_bad_paths_refused_by_check(tmp_path):
    plain = os.path.join(str(tmp_path), "not-a-socket")
    with open(plain, "w") as f:
        f.write("data\n")
    r = check_config(tmp_path, {"listen": {"admin": "unix:" + plain}})
    assert r.returncode == 1, r.stdout
    assert "listen.admin" in r.stderr and "exists and is not a socket" in r.stderr, r.stderr
    with open(plain) as f:
        assert f.read() == "data\n"
    r = check_config(tmp_path, {"listen": {"admin": "unix:/nonexistent-dir/x/admin.sock"}})
    assert r.returncode == 1, r.stdout
    assert "listen.admin" in r.stderr and "/nonexistent-dir/x" in r.stderr, r.stderr
    r = check_config(tmp_path, {"listen": {"admin": "unix:" + os.path.join(str(tmp_path), "a.s"),
                                           "admin_mode": "0666"}})
    assert r.returncode == 1, r.stdout
    assert "listen.admin_mode" in r.stderr, r.stderr
    r = check_config(tmp_path, {"listen": {"https": ["unix:" + plain]}})
    assert r.returncode == 1 and "listen.https[0]" in r.stderr, r.stderr


def test_admin_tcp_port_is_not_shared_with_another_instance(upstream, moat_factory):
    """The admin socket is not SO_REUSEPORT: a second moat on the same admin port fails
    to start instead of silently answering half of the scrapes."""
    up = upstream("app")
    first = moat_factory(upstream=up)
    second = moat_factory({"listen": {"admin": first.cfg["listen"]["admin"]}}, upstream=up,
                          start=False, name="second.yaml")
    with pytest.raises(AssertionError, match="listen.admin"):
        second.start()
    second.stopped_by_test = True
    assert "Address already in use" in second.stderr(), second.stderr()
    assert first.alive()


@pytest.mark.parametrize("addr", ["[::]:9901", "[2001:db8::1]:9901", "[::ffff:10.0.0.1]:9901",
                                  "admin.example.com:9901", "localhost.example.com:9901",
                                  "0.0.0.0:9901", "10.1.2.3:9901"])
def test_admin_non_loopback_refused_by_check(tmp_path, addr):
    r = check_config(tmp_path, {"listen": {"admin": addr}})
    assert r.returncode == 1, (addr, r.stdout)
    assert "listen.admin: must be a loopback address" in r.stderr, r.stderr


def test_admin_ipv6_loopback_accepted(upstream, moat_factory, tmp_path):
    port = moatctl.free_port()
    r = check_config(tmp_path, {"listen": {"admin": "[::1]:%d" % port}})
    assert r.returncode == 0, r.stderr
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    m = moat_factory({"listen": {"admin": "[::1]:%d" % port}}, upstream=upstream("app"))
    with socket.create_connection(("::1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        c = Conn(s)
        assert c.read_response().status == 200
    assert port in tcp_listen_ports(m.pid)


# ---- 5a. the redirect listener honours the connection caps -----------------------------

def test_redirect_listener_per_ip_cap(upstream, moat_factory):
    m = moat_factory({"limits": {"max_connections_per_ip": 2}}, upstream=upstream("app"))
    held = [Conn.tcp(m.http_port) for _ in range(2)]
    try:
        for c in held:
            assert held_open(c, 0.5)
        for _ in range(3):  # each attempt may land on either worker
            with Conn.tcp(m.http_port) as extra:
                assert extra.wait_closed(5), "a 3rd plain-HTTP connection from one IP was kept"
        # another IP has its own count
        other = socket.socket()
        other.bind(("127.0.0.2", 0))
        other.connect(("127.0.0.1", m.http_port))
        with Conn(other) as c2:
            assert held_open(c2, 0.5)
        # the held ones are still served
        for c in held:
            c.send(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert c.read_response().status == 308
    finally:
        for c in held:
            c.close()
    # released: a new connection is served again
    assert wait_until(lambda: _redirect_ok(m.http_port), 5)


def _redirect_ok(port):
    try:
        with Conn.tcp(port, timeout=3) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            return c.read_response().status == 308
    except (OSError, ConnectionError):
        return False


def test_redirect_listener_total_cap_shared_with_https(upstream, moat_factory):
    m = moat_factory({"limits": {"max_connections": 3}}, upstream=upstream("app"))
    held = []
    try:
        tls = Conn.tls(m.https_port)  # one HTTPS connection counts too
        tls.request("GET", "/")
        assert tls.read_response().status == 200
        held.append(tls)
        for i in range(2):
            s = socket.socket()
            s.bind(("127.0.0.%d" % (2 + i), 0))
            s.connect(("127.0.0.1", m.http_port))
            held.append(Conn(s))
        for c in held[1:]:
            assert held_open(c, 0.5)
        s = socket.socket()
        s.bind(("127.0.0.9", 0))
        s.connect(("127.0.0.1", m.http_port))
        with Conn(s) as extra:
            assert extra.wait_closed(5), "a 4th connection passed max_connections 3"
    finally:
        for c in held:
            c.close()
    assert wait_until(lambda: _redirect_ok(m.http_port), 5)


# ---- 5b. absolute header deadline on the redirect listener ----------------------------

# A dribbling client is sent one byte per DRIBBLE_S; before the fix it lived as long as
# it kept sending. With header_timeout 1s it must be closed long before DRIBBLE_WINDOW
# (generous, so a loaded machine cannot make it fail; no timing is asserted).
DRIBBLE_S = 0.2
DRIBBLE_WINDOW = 20.0


def dribble(c, data):
    """Sends data a byte at a time until moat closes; returns (closed, what moat sent)."""
    c.sock.settimeout(DRIBBLE_S)
    t0 = time.monotonic()
    got = b""
    for b in data:
        if time.monotonic() - t0 > DRIBBLE_WINDOW:
            return False, got
        try:
            c.send(bytes([b]))
            chunk = c.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        except OSError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def test_redirect_slowloris_dribble_closed(upstream, moat_factory):
    m = moat_factory({"limits": {"header_timeout": "1s"}}, upstream=upstream("app"))
    with Conn.tcp(m.http_port, timeout=6) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        closed, got = dribble(c, b"X" * int(DRIBBLE_WINDOW / DRIBBLE_S + 10))
        assert closed, "the dribbling connection outlived header_timeout 1s by far"
        assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:200]


def test_https_handshake_dribble_closed(upstream, moat_factory):
    """The HTTPS header clock starts at accept and covers the handshake: a ClientHello
    sent a byte every 200 ms does not hold the connection (the head itself is covered
    by test_core_limits.py::test_slowloris_dribbling_bytes_still_gets_408)."""
    m = moat_factory({"limits": {"header_timeout": "1s"}}, upstream=upstream("app"))
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(500)
    with Conn.tcp(m.https_port, timeout=6) as c:
        closed, _ = dribble(c, hello)
        assert closed, "a dribbled ClientHello outlived header_timeout 1s by far"


# ---- 5c/d. file descriptors running out --------------------------------------------------

FD_LIMIT = 64


def _limited_moat(moat_factory, upstream, tmp_path, limit=FD_LIMIT, overrides=None):
    wrapper = os.path.join(str(tmp_path), "moat-nofile.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec prlimit --nofile=%d:%d -- '%s' \"$@\"\n"
                % (limit, limit, moatctl.moat_bin()))
    os.chmod(wrapper, 0o755)
    ov = {"workers": 1, "limits": {"header_timeout": "30s", "drain_timeout": "1s"}}
    ov.update(overrides or {})
    m = moat_factory(ov, upstream=upstream("app"), start=False)
    m.binary = wrapper
    return m.start()


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _line_count(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def test_fd_exhaustion_pauses_accept(upstream, moat_factory, tmp_path):
    m = _limited_moat(moat_factory, upstream, tmp_path)
    clients = []
    try:
        # more than moat can take: the rest waits in the listen backlog
        for _ in range(FD_LIMIT + 40):
            clients.append(socket.create_connection(("127.0.0.1", m.https_port), timeout=5))
        assert wait_until(lambda: _open_fds(m.pid) >= FD_LIMIT - 1, 10), _open_fds(m.pid)
        time.sleep(0.3)  # past the first failures
        hz = os.sysconf("SC_CLK_TCK")
        lines0 = _line_count(m.stderr_path)
        cpu0, t0 = _cpu_ticks(m.pid), time.monotonic()
        time.sleep(2)
        cpu = (_cpu_ticks(m.pid) - cpu0) / hz / (time.monotonic() - t0)
        lines = _line_count(m.stderr_path) - lines0
        print("fd exhaustion: moat CPU %.0f%% of one core, %d log lines in 2 s"
              % (cpu * 100, lines))
        assert cpu < 0.5, "accept loop spins: %.0f%% CPU under EMFILE" % (cpu * 100)
        assert lines < 100, "%d log lines in 2 s under EMFILE" % lines
        assert m.alive()
    finally:
        for s in clients:
            s.close()
    # released: moat accepts again and serves a new client

    def served():
        try:
            with Conn.tls(m.https_port, timeout=3) as c:
                c.request("GET", "/")
                return c.read_response().status == 200
        except (OSError, ConnectionError):
            return False
    assert wait_until(served, 15, interval=0.3), "no client served after the fds came back"
    assert "too many open files" in m.stderr().lower(), m.stderr()[-2000:]


def test_low_hard_nofile_limit_is_reported(upstream, moat_factory, tmp_path):
    m = _limited_moat(moat_factory, upstream, tmp_path, limit=256,
                      overrides={"limits": {"max_connections": 1000}})
    err = m.stderr()
    assert "RLIMIT_NOFILE" in err and "hard limit 256" in err, err


def test_nofile_soft_limit_raised_at_start(upstream, moat_factory, tmp_path):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if hard < 2500:
        pytest.skip("the hard RLIMIT_NOFILE here (%d) is below what the test needs" % hard)
    wrapper = os.path.join(str(tmp_path), "moat-soft.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec prlimit --nofile=200:%d -- '%s' \"$@\"\n"
                % (hard, moatctl.moat_bin()))
    os.chmod(wrapper, 0o755)
    m = moat_factory({"limits": {"max_connections": 1000}}, upstream=upstream("app"),
                     start=False)
    m.binary = wrapper
    m.start()
    with open("/proc/%d/limits" % m.pid) as f:
        line = [l for l in f if l.startswith("Max open files")][0]
    soft = int(line.split()[3])
    assert soft > 2000, line
    assert "RLIMIT_NOFILE" in m.stderr(), m.stderr()
