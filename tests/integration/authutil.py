"""Helpers for the session-authentication tests (test_auth_*.py).

Standard library only; builds on moatctl / conftest.py (write_config, Moat, the
moat_factory / start_moat / upstream / redis_server fixtures):

- RedisServer: moatctl.Redis with extra redis-server arguments (requirepass,
  ACL users, TLS listener); started in its own session, stopped by PID.
- rcall(): one Redis command over RESP (plain or TLS, with AUTH) with the reply
  parsed, for any moatctl.Redis.
- make_certs(): a throw-away CA, a Redis server certificate and an unrelated CA.
- FakeRedis: a TCP server in a thread of the test process that behaves badly
  (never answers, answers the handshake and then nothing, answers garbage).
- sessions (put_session), moat configs with one route per auth mode
  (auth_overrides), requests over fresh or kept-alive TLS connections, the
  upstream's view of the identity headers, and /metrics.

The fixtures at the bottom are imported by the test modules.
"""

import hashlib
import http.client
import os
import secrets
import signal
import socket
import ssl
import subprocess
import shutil
import threading
import time

import pytest

import moatctl

PREFIX = "moat:sess:"
IDENTITY_HEADERS = ("X-Tenant-ID", "X-User-ID", "X-Session-MFA")


# ---- RESP client -----------------------------------------------------------

class RespError(Exception):
    """An error reply (-ERR ..., -WRONGPASS ...)."""


def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_read(f):
    """Reads one reply from a binary file object; errors come back as RespError objects."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection (had %r)" % line)
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise ConnectionError("unexpected reply from redis: %r" % line)


def _redis_socket(redis, timeout):
    s = socket.create_connection(("127.0.0.1", redis.port), timeout=timeout)
    ca = getattr(redis, "tls_ca", None)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname="localhost")
    return s


def rcall_many(redis, commands, timeout=5.0, user=None, password=None):
    """Runs commands (lists of args) on one connection; returns the parsed replies.
    Authenticates with password (or redis.password, the admin's) first."""
    password = password if password is not None else getattr(redis, "password", None)
    with _redis_socket(redis, timeout) as s:
        f = s.makefile("rb")
        pre = []
        if password:
            pre = [["AUTH", user, password] if user else ["AUTH", password]]
        s.sendall(b"".join(resp_encode(c) for c in pre + list(commands)))
        replies = [resp_read(f) for _ in range(len(pre) + len(commands))]
        for r in replies[:len(pre)]:
            if isinstance(r, RespError):
                raise r
        return replies[len(pre):]


def rcall(redis, *args, timeout=5.0):
    """One command; an error reply is raised as RespError."""
    r = rcall_many(redis, [args], timeout=timeout)[0]
    if isinstance(r, RespError):
        raise r
    return r


class RedisServer(moatctl.Redis):
    """moatctl.Redis with extra arguments.

    password: requirepass of the default user (used by rcall as the admin).
    tls: {"cert", "key", "ca"}: TLS only (--port 0 --tls-port N), clients not
    asked for certificates."""

    def __init__(self, tmpdir, port=None, args=(), password=None, tls=None):
        super().__init__(tmpdir, port=port)
        self.args = list(args)
        self.password = password
        self.tls = tls
        self.tls_ca = tls["ca"] if tls else None

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server")
        if not exe:
            raise AssertionError("redis-server not installed (scripts/install-deps.sh)")
        cmd = [exe, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir]
        if self.tls:
            cmd += ["--port", "0", "--tls-port", str(self.port),
                    "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                    "--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no"]
        else:
            cmd += ["--port", str(self.port)]
        if self.password:
            cmd += ["--requirepass", self.password]
        cmd += self.args
        self.out = open(os.path.join(self.dir, "redis.out"), "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if not moatctl.wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout) \
                or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("redis-server did not start:\n"
                                 + moatctl.read_text(os.path.join(self.dir, "redis.out")))
        return self

    def ping(self):
        try:
            return rcall(self, "PING", timeout=0.5) == "PONG"
        except (OSError, ConnectionError, RespError, ssl.SSLError):
            return False

    def kill(self):
        """SIGKILL by PID: no goodbye to its clients."""
        rc = moatctl.stop_process(self.proc, sig=signal.SIGKILL, timeout=5)
        if getattr(self, "out", None):
            self.out.close()
            self.out = None
        return rc

    def restart(self):
        """Starts a fresh redis-server on the same port (empty: sessions must be re-put)."""
        self.kill()
        return self.start()


def client_list(redis):
    """The other clients connected to redis (CLIENT LIST, without this one): dicts."""
    text = rcall(redis, "CLIENT", "LIST")
    text = text.decode() if isinstance(text, bytes) else text
    out = []
    for line in text.splitlines():
        c = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if c.get("cmd") != "client|list":
            out.append(c)
    return out


def client_names(redis):
    return [c.get("name", "") for c in client_list(redis)]


# ---- certificates ----------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=60)


def make_certs(d):
    """A test CA, a Redis server certificate it signs (localhost, 127.0.0.1) and an
    unrelated CA. Returns {"ca", "cert", "key", "other_ca"} (paths)."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", name + ".key", "-out", name + ".crt",
                 "-days", "2", "-subj", "/CN=moat test %s" % name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *ec, "-keyout", "redis.key", "-out", "redis.csr", "-subj", "/CN=localhost",
             cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "redis.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return {k: os.path.join(d, v) for k, v in
            (("ca", "ca.crt"), ("cert", "redis.crt"), ("key", "redis.key"),
             ("other_ca", "other-ca.crt"))}


# ---- a misbehaving Redis -----------------------------------------------------

class FakeRedis:
    """A TCP server on 127.0.0.1 (threads of this process) that speaks bad Redis.

    mode:
      "silent"     accepts, reads, never answers anything
      "blackhole"  answers the handshake (AUTH, SELECT, CLIENT *, PING), never HGETALL
      "garbage"    answers every command with `garbage` (bytes)
      "ok"         answers every command with +OK (a well-formed but wrong reply)
      "scripted"   the blackhole handshake; a command named in .replies (upper-case
                   bytes -> reply bytes, changeable while running) gets that reply
    Every connection is counted in .connections; stop() closes everything."""

    def __init__(self, mode, garbage=b"", replies=None):
        self.mode = mode
        self.garbage = garbage
        self.replies = dict(replies or {})
        self.connections = 0
        self.commands = []
        self._socks = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.settimeout(0.2)
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                buf += data
                cmds, buf = self._split(buf)
                out = b"".join(self._answer(c) for c in cmds)
                if out:
                    s.sendall(out)
        except OSError:
            return

    @staticmethod
    def _split(buf):
        """Complete RESP commands (arrays of bulk strings) at the head of buf."""
        cmds = []
        while buf.startswith(b"*"):
            try:
                end = buf.index(b"\r\n")
                n = int(buf[1:end])
                pos = end + 2
                args = []
                for _ in range(n):
                    e = buf.index(b"\r\n", pos)
                    ln = int(buf[pos + 1:e])
                    args.append(buf[e + 2:e + 2 + ln])
                    if len(buf) < e + 4 + ln:
                        raise ValueError
                    pos = e + 4 + ln
            except ValueError:
                break
            cmds.append(args)
            buf = buf[pos:]
        return cmds, buf

    def _answer(self, args):
        name = args[0].upper() if args else b""
        with self._lock:
            self.commands.append([a.decode("latin-1") for a in args])
        if self.mode == "silent":
            return b""
        if self.mode == "garbage":
            return self.garbage
        if self.mode == "ok":
            return b"+OK\r\n"
        if self.mode == "scripted" and name in self.replies:
            return self.replies[name]
        # blackhole: a plausible handshake, then nothing for data commands
        if name in (b"AUTH", b"SELECT", b"PING"):
            return b"+PONG\r\n" if name == b"PING" else b"+OK\r\n"
        if name == b"CLIENT":
            sub = args[1].upper() if len(args) > 1 else b""
            return b":7\r\n" if sub == b"ID" else b"+OK\r\n"
        return b""

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass
        self._thread.join(timeout=5)


# ---- sessions ----------------------------------------------------------------

def new_token(n=32):
    """A fresh random token in the accepted alphabet (base64url)."""
    return secrets.token_urlsafe(n)


def session_key(token, prefix=PREFIX):
    return prefix + hashlib.sha256(token.encode()).hexdigest()


def put_session(redis, token=None, tenant="acme", user="user-1", mfa=0, exp=None, roles=None,
                prefix=PREFIX, ttl=None):
    """Writes a session hash the way the login service does; returns the token."""
    token = token or new_token()
    fields = ["tenant", tenant, "user", user, "mfa", str(mfa)]
    if roles is not None:
        fields += ["roles", roles]
    if exp is not None:
        fields += ["exp", str(int(exp))]
    key = session_key(token, prefix)
    cmds = [["DEL", key], ["HSET", key] + fields]
    if ttl:
        cmds.append(["EXPIRE", key, str(ttl)])
    for r in rcall_many(redis, cmds):
        if isinstance(r, RespError):
            raise r
    return token


def delete_session(redis, token, prefix=PREFIX):
    return rcall(redis, "DEL", session_key(token, prefix))


# ---- moat config ---------------------------------------------------------------

ROUTES = [
    {"match": {"path_prefix": "/public"}, "auth": "none", "upstream": "app"},
    {"match": {"path_prefix": "/opt"}, "auth": "optional", "upstream": "app"},
    {"match": {"path_prefix": "/admin"}, "auth": "required", "mfa": "required", "upstream": "app"},
    {"match": {"path_prefix": "/web"}, "auth": "required", "browser": True, "upstream": "app"},
    {"match": {"path_prefix": "/"}, "auth": "required", "upstream": "app"},
]


def auth_overrides(redis_address, redis=None, sessions=None, **top):
    """Overrides for moatctl.write_config: a redis section, sessions, and ROUTES:
    /public none, /opt optional, /admin required+mfa, /web browser, / required."""
    r = {"address": redis_address, "timeout": moatctl.TEST_REDIS_TIMEOUT}
    r.update(redis or {})  # a test about timeouts sets its own
    s = {"login_url": "/login"}
    s.update(sessions or {})
    out = {"redis": r, "sessions": s, "routes": ROUTES}
    out.update(top)
    return out


# ---- requests --------------------------------------------------------------------

def auth_headers(token=None, cookie=None, headers=()):
    h = list(headers)
    if token is not None:
        h.append(("Authorization", "Bearer " + token))
    if cookie is not None:
        h.append(("Cookie", "session=" + cookie))
    return h


def get(port, path="/echo", token=None, cookie=None, headers=(), timeout=10.0):
    """One GET on a fresh TLS connection; returns a moatctl.Response."""
    with moatctl.Conn.tls(port, timeout=timeout) as c:
        c.request("GET", path, headers=auth_headers(token, cookie, headers))
        return c.read_response()


class Client(moatctl.KeepAliveClient):
    """A kept-alive TLS connection (so requests stay on one worker and its cache)."""

    def get(self, path="/echo", token=None, cookie=None, headers=()):
        return self.request(path, auth_headers(token, cookie, headers))


def identity(resp):
    """The identity headers the upstream received (from /echo's JSON), name -> [values]."""
    assert resp.status == 200, resp
    got = {}
    for k, v in resp.json()["headers"]:
        for want in IDENTITY_HEADERS + ("Authorization", "Cookie"):
            if k.lower() == want.lower():
                got.setdefault(want, []).append(v)
    return got


def metrics(m):
    """moat's /metrics as {name: value} (label-less lines)."""
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=5)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_sessions_ready(m, redis, workers=2, push=False, timeout=15.0):
    """Waits until every worker's Redis connection is up (CLIENT LIST shows them),
    then until a bogus token gets its 401 (not 503) a few times in a row on fresh
    connections."""
    def clients_ok():
        # by name when CLIENT SETNAME is allowed, else by count (an ACL may refuse it)
        n = client_names(redis)
        if "moat" in n:
            return n.count("moat") >= workers and \
                (not push or n.count("moat-revocation") >= workers)
        return len(n) >= workers * (2 if push else 1)
    assert moatctl.wait_until(clients_ok, timeout), \
        "moat's redis clients did not connect: %r\nstderr:\n%s" % (client_list(redis),
                                                                  m.stderr())
    streak = [0]

    def probe():
        r = get(m.https_port, "/", token=new_token())
        streak[0] = streak[0] + 1 if r.status == 401 else 0
        return streak[0] >= 4
    assert moatctl.wait_until(probe, timeout), "sessions never answered 401 for a bogus token"
    if push:
        # the tracking connections report live only after SUBSCRIBE's confirmation
        time.sleep(0.2)


def poll(fn, timeout, interval=0.01):
    """Calls fn until it returns a truthy value or timeout; returns (value, seconds)."""
    t0 = time.monotonic()
    v = moatctl.wait_until(fn, timeout, interval=interval)
    return v, time.monotonic() - t0


def audit_events(m, event="auth_rejected"):
    return [e for e in m.audit_log() if e.get("event") == event]


def raw_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


# ---- fixtures ----------------------------------------------------------------------

@pytest.fixture
def redis_factory(tmp_path):
    """Factory: redis_factory(args=(), password=None, tls=None, port=None) -> RedisServer
    (started; stopped by PID at teardown, also when the test restarted or killed it)."""
    started = []

    def make(**kw):
        r = RedisServer(tmp_path, **kw)
        started.append(r)
        return r.start()

    try:
        yield make
    finally:
        for r in started:
            r.stop()


@pytest.fixture
def fake_redis():
    """Factory: fake_redis(mode, garbage=b"", replies=None) -> FakeRedis (stopped at
    teardown)."""
    made = []

    def make(mode, garbage=b"", replies=None):
        f = FakeRedis(mode, garbage, replies)
        made.append(f)
        return f

    try:
        yield make
    finally:
        for f in made:
            f.stop()


@pytest.fixture
def certs(tmp_path):
    return make_certs(os.path.join(str(tmp_path), "certs"))
