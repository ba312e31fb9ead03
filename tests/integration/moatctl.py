"""Helpers for moat's integration tests: config files, processes, clients.

Standard library only. Every process started here is started in its own session
and stopped by its PID (process group), also when a test fails: the fixtures in
conftest.py call .stop() in a finally block.
"""

import copy
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CERTS = os.path.join(REPO, "certs", "dev")
CA = os.path.join(CERTS, "ca.crt")
UPSTREAM_SERVER = os.path.join(HERE, "upstream_server.py")
PYTHON = sys.executable or "/usr/bin/python3"

if HERE not in sys.path:
    sys.path.insert(0, HERE)
import upstream_server  # noqa: E402  (shares the pattern and websocket helpers)

DELETE = object()  # an override value that removes the key from the base config


def stop_moats(moats):
    """Stops every started moat by PID; messages for those that died on their own
    with a non-zero status during the test (a crash the test did not cause)."""
    crashed = []
    for m in moats:
        if m.proc is None:
            continue
        died_alone = m.proc.poll() is not None and not m.stopped_by_test
        rc = m.stop()
        if died_alone and rc != 0:
            crashed.append("moat pid %d died during the test with %s\nstderr:\n%s"
                           % (m.pid, rc, m.stderr()))
    return crashed


def moat_bin():
    return os.environ.get("MOAT_BIN") or os.path.join(REPO, "build", "moat")


# ---- ports ------------------------------------------------------------------

_given_ports = set()
_ports_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same twice)."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _given_ports:
                _given_ports.add(port)
                return port
    raise RuntimeError("no free port")


def port_accepts(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---- processes --------------------------------------------------------------

def stop_process(proc, sig=signal.SIGTERM, timeout=10.0, group=True):
    """Stops proc (a Popen started with start_new_session=True) by PID; returns its code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    # The group may hold children of proc that outlived it.
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode


def read_text(path, limit=20000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


def read_json_lines(path):
    out = []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"_unparsed": line})
    except FileNotFoundError:
        pass
    return out


# ---- config -----------------------------------------------------------------

def deep_merge(base, overrides):
    """Returns base with overrides merged in: dicts recursively, anything else replaced.
    A value of DELETE (or None for a top-level section) removes the key."""
    out = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def base_config(tmpdir, upstream_port):
    """The DESIGN.md shape, everything on 127.0.0.1 free ports, logs in tmpdir."""
    https = free_port()
    return {
        "workers": 2,
        "listen": {
            "https": ["127.0.0.1:%d" % https],
            "http": ["127.0.0.1:%d" % free_port()],
            "admin": "127.0.0.1:%d" % free_port(),
            "redirect_https_port": https,
        },
        "tls": {
            "certificates": [{"cert": os.path.join(CERTS, "server.crt"),
                              "key": os.path.join(CERTS, "server.key")}],
        },
        "upstreams": {
            "app": {"servers": ["127.0.0.1:%d" % upstream_port]},
        },
        "routes": [
            {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"},
        ],
        "limits": {"drain_timeout": "5s"},
        "log": {
            "access": os.path.join(str(tmpdir), "access.log"),
            "audit": os.path.join(str(tmpdir), "audit.log"),
        },
    }


def redis_credentials(cfg):
    """Makes moat use the ACL users of conf/redis-acl.conf (REDIS_ACL) with the Redis the
    tests started: a `redis` section whose address, cluster seeds or sentinels are such
    servers, and that names no credentials of its own, gets username + password_file (and
    redis.sentinel the sentinel user's). A test that sets its own credentials (a custom
    ACL, the default user with requirepass, a wrong password) keeps them."""
    r = cfg.get("redis")
    if not isinstance(r, dict):
        return
    own = ("username", "password_file", "password_env")
    sen = r.get("sentinel") if isinstance(r.get("sentinel"), dict) else {}
    addrs = [r.get("address")] + list((r.get("cluster") or {}).get("seeds") or [])
    data = next((REDIS_ACL[a] for a in addrs if "username" in REDIS_ACL.get(a, {})), None)
    sentinel = next((REDIS_ACL[a] for a in sen.get("addresses") or []
                     if "sentinel" in REDIS_ACL.get(a, {})), None)
    if sentinel and not any(k in sen for k in own):
        sen.update(sentinel["sentinel"])
    if data is None and sentinel:
        data = sentinel["data"]
    if data and not any(k in r for k in own):
        r.update(data)


def write_config(tmpdir, overrides=None, upstream_port=None, name="moat.yaml"):
    """Writes base_config deep-merged with overrides as JSON (valid YAML), with the
    Redis ACL user's credentials added (redis_credentials). Returns (path, config dict)."""
    if upstream_port is None:
        upstream_port = free_port()  # nothing listens there: upstream down
    cfg = deep_merge(base_config(tmpdir, upstream_port), overrides)
    redis_credentials(cfg)
    path = os.path.join(str(tmpdir), name)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return path, cfg


def _addr_port(addr):
    return int(str(addr).rsplit(":", 1)[1])


class Moat:
    """One moat process: `moat -c FILE`, started in its own session, cwd = repo root."""

    def __init__(self, config_path, cfg=None, binary=None, tmpdir=None):
        self.config_path = config_path
        if cfg is None:
            with open(config_path) as f:
                cfg = json.load(f)
        self.cfg = cfg
        self.binary = binary or moat_bin()
        self.tmpdir = tmpdir or os.path.dirname(config_path)
        self.proc = None
        self.stdout_path = os.path.join(self.tmpdir, "moat.stdout")
        self.stderr_path = os.path.join(self.tmpdir, "moat.stderr")
        self.stopped_by_test = False

    # ports and files from the config
    @property
    def https_port(self):
        return _addr_port(self.cfg["listen"]["https"][0])

    @property
    def http_port(self):
        return _addr_port(self.cfg["listen"]["http"][0])

    @property
    def admin_port(self):
        return _addr_port(self.cfg["listen"]["admin"])

    @property
    def access_log_path(self):
        return self.cfg["log"]["access"]

    @property
    def audit_log_path(self):
        return self.cfg["log"]["audit"]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=10.0):
        if not os.path.exists(self.binary):
            raise AssertionError("moat binary not found at %s (did the build fail? set MOAT_BIN "
                                 "to use another)" % self.binary)
        self.out = open(self.stdout_path, "ab")
        self.err = open(self.stderr_path, "ab")
        self.err_start = self.err.tell()  # this run's part of an appended stderr file
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path], cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("moat exited with %s before listening on %d\nstderr:\n%s"
                                     % (self.proc.returncode, self.https_port, self.stderr()))
            if self._listening():
                self._wait_redis()
                return self
            time.sleep(0.05)
        rc = self.stop(sig=signal.SIGKILL)
        raise AssertionError("moat did not accept on https port %d within %.0fs (rc %s)\n"
                             "stderr:\n%s" % (self.https_port, timeout, rc, self.stderr()))

    def _wait_redis(self, timeout=15.0):
        """With a redis-server of the tests configured, waits (bounded, never failing) until
        each worker has logged its connection: moat listens before its workers' Redis
        clients are up, and a request that comes first gets 503 "session store
        unavailable". Tests pointing moat at anything else (a fake or dead Redis) wait
        for nothing here."""
        if (self.cfg.get("redis") or {}).get("address") not in LIVE_REDIS:
            return
        workers = self.cfg.get("workers", 2)
        workers = workers if isinstance(workers, int) else (os.cpu_count() or 1)
        pat = re.compile(rb"worker (\d+): redis: connected")

        def connected():
            with open(self.stderr_path, "rb") as f:
                f.seek(self.err_start)
                return len(set(pat.findall(f.read()))) >= workers or not self.alive()
        wait_until(connected, timeout)

    def _listening(self):
        """Ready when the https port is in LISTEN state. Looked up in /proc rather than by
        connecting, so the probe is not a client connection moat could log."""
        if os.path.exists("/proc/net/tcp"):
            return listening_sockets(self.https_port) > 0
        return port_accepts(self.https_port, timeout=0.2)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if sig != signal.SIGHUP:
            self.stopped_by_test = True
        os.kill(self.proc.pid, sig)

    def reload(self):
        self.send_signal(signal.SIGHUP)

    def wait(self, timeout):
        """Waits for moat to exit by itself; returns the exit code or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """SIGTERM (drain), wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        self.stopped_by_test = True
        rc = stop_process(self.proc, sig=sig, timeout=timeout, group=True)
        for f in (getattr(self, "out", None), getattr(self, "err", None)):
            if f:
                f.close()
        return rc

    def stderr(self):
        return read_text(self.stderr_path)

    def stdout(self):
        return read_text(self.stdout_path)

    def access_log(self):
        return read_json_lines(self.access_log_path)

    def wait_access_log(self, n, timeout=5.0, pred=None):
        """Waits until at least n access-log lines (matching pred) exist; returns them."""
        def lines():
            got = [e for e in self.access_log() if pred is None or pred(e)]
            return got if len(got) >= n else None
        got = wait_until(lines, timeout)
        if got is None:
            raise AssertionError("expected %d access log lines in %s, have:\n%s"
                                 % (n, self.access_log_path, read_text(self.access_log_path)))
        return got

    def audit_log(self):
        return read_json_lines(self.audit_log_path)


def run_moat(args, timeout=20):
    """Runs the moat binary with args (e.g. ["-V"]); returns CompletedProcess (text)."""
    b = moat_bin()
    if not os.path.exists(b):
        raise AssertionError("moat binary not found at %s" % b)
    return subprocess.run([b] + list(args), cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


class Upstream:
    """An upstream_server.py process on a free port, logging requests to a file.

    args: more upstream_server.py options, e.g. ["--capture"] (answer with the raw bytes
    of each request) or ["--tls-cert", CRT, "--tls-key", KEY] (HTTPS)."""

    def __init__(self, tmpdir, name="app", port=None, args=()):
        self.name = name
        self.args = list(args)
        self.port = port or free_port()
        self.log_path = os.path.join(str(tmpdir), "upstream-%s-%d.log" % (name, self.port))
        self.out_path = os.path.join(str(tmpdir), "upstream-%s-%d.out" % (name, self.port))
        self.proc = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        self.out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, UPSTREAM_SERVER, "--port", str(self.port), "--name", self.name,
             "--log", self.log_path] + self.args,
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)
        ok = wait_until(lambda: self.proc.poll() is not None or port_accepts(self.port), timeout)
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("upstream %s did not start on %d:\n%s"
                                 % (self.name, self.port, read_text(self.out_path)))
        # Our own readiness probe is a connection: forget it.
        time.sleep(0.05)
        return self

    def stop(self):
        rc = stop_process(self.proc, sig=signal.SIGTERM, timeout=5)
        if getattr(self, "out", None):
            self.out.close()
        return rc

    def log(self):
        return read_json_lines(self.log_path)

    def requests(self, include_health=False):
        """Request heads this upstream received (in order)."""
        return [e for e in self.log() if e.get("event") == "request"
                and (include_health or e.get("path") != "/healthz")]

    def completed(self):
        return [e for e in self.log() if e.get("event") == "complete"]

    def bad(self):
        return [e for e in self.log() if e.get("event") == "bad"]

    def forwarded(self):
        """Everything that reached it but the connects and health checks."""
        return [e for e in self.log() if e.get("event") in ("request", "bad", "ws_frame")
                and e.get("path") != "/healthz"]

    def captured(self):
        """With args=["--capture"]: the exact bytes of every request received, in order."""
        return [e["raw"].encode("latin-1") for e in self.log() if e.get("event") == "raw"]


# Addresses of the redis-servers (redisutil.RedisServer) the tests started and have not
# stopped: a moat configured with one of them is started only once its workers are
# connected to it.
LIVE_REDIS = set()

# The Redis servers and sentinels the tests started with the users of
# conf/redis-acl.conf: address -> {"username", "password_file"} of a data node, or
# {"sentinel": {...}, "data": {...}} of a sentinel (its own user, and the data nodes').
# write_config() gives moat these credentials (redis_credentials).
REDIS_ACL = {}

# Generous for a test that is not about Redis timeouts: a loaded 2-core machine can keep
# Redis (or moat) from answering for far longer than the 250 ms default. Tests about
# timeouts and outages set their own short redis.timeout.
TEST_REDIS_TIMEOUT = "5s"


# ---- clients ----------------------------------------------------------------

class _HeadersBody:
    """Lookups shared by CurlResult and Response (both have .headers and .body)."""

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class CurlResult(_HeadersBody):
    def __init__(self, rc, status, headers, body, stderr, elapsed, all_heads):
        self.rc = rc
        self.status = status
        self.headers = headers  # list of (name, value) of the final response
        self.body = body
        self.stderr = stderr
        self.elapsed = elapsed
        self.all_heads = all_heads  # every head received (100 Continue, redirects...)

    def __repr__(self):
        return "<curl rc=%s status=%s headers=%r body=%r stderr=%r>" % (
            self.rc, self.status, self.headers, self.body[:300], self.stderr[-500:])


def _parse_heads(raw):
    """Splits curl -D output into heads: [(status, [(k, v)...]), ...]."""
    heads = []
    for block in re.split(rb"\r?\n\r?\n", raw):
        lines = [l for l in block.split(b"\n") if l.strip()]
        if not lines or not lines[0].startswith(b"HTTP/"):
            continue
        status = int(lines[0].split()[1])
        hdrs = []
        for l in lines[1:]:
            k, _, v = l.decode("latin-1").partition(":")
            hdrs.append((k.strip(), v.strip()))
        heads.append((status, hdrs))
    return heads


def curl(port, path="/", *args, host="localhost", scheme="https", timeout=60, tmpdir=None,
         resolve=True):
    """Runs curl against 127.0.0.1:port with the dev CA; returns a CurlResult.
    Extra args go to curl as given (e.g. "-X", "POST", "--data-binary", "@file")."""
    import tempfile
    d = tempfile.mkdtemp(prefix="curl-", dir=tmpdir)
    hfile = os.path.join(d, "headers")
    bfile = os.path.join(d, "body")
    url = "%s://%s:%d%s" % (scheme, host, port, path)
    cmd = ["curl", "-q", "-sS", "--http1.1", "--noproxy", "*", "-D", hfile, "-o", bfile,
           "--max-time", str(timeout)]
    if scheme == "https":
        cmd += ["--cacert", CA]
    if resolve and host not in ("127.0.0.1",):
        cmd += ["--resolve", "%s:%d:127.0.0.1" % (host, port)]
    cmd += list(args) + [url]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 10, env=env)
    elapsed = time.monotonic() - t0
    raw = b""
    body = b""
    if os.path.exists(hfile):
        with open(hfile, "rb") as f:
            raw = f.read()
    if os.path.exists(bfile):
        with open(bfile, "rb") as f:
            body = f.read()
    shutil.rmtree(d, ignore_errors=True)
    heads = _parse_heads(raw)
    final = [h for h in heads if h[0] >= 200] or heads or [(0, [])]
    status, hdrs = final[-1]
    return CurlResult(p.returncode, status, hdrs, body, p.stderr.decode("utf-8", "replace"),
                      elapsed, heads)


def tls_context(min_version=None, max_version=None, ciphers=None, alpn=None):
    ctx = ssl.create_default_context(cafile=CA)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, server_hostname="localhost", timeout=10.0, ctx=None):
    """A verified TLS connection to moat on 127.0.0.1:port."""
    ctx = ctx or tls_context()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_hostname)
    except Exception:
        raw.close()
        raise
    s.settimeout(timeout)
    return s


def tcp_connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


class Response(_HeadersBody):
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_head = raw_head
        self.chunked = False

    def __repr__(self):
        return "<Response %s %s headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                        self.body[:300])


class Conn:
    """A raw HTTP/1.1 client over a (TLS or TCP) socket: send bytes, read responses."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()  # bytearray: appends stay cheap for big bodies
        self.eof = False

    @classmethod
    def tls(cls, port, **kw):
        return cls(tls_connect(port, **kw))

    @classmethod
    def tcp(cls, port, **kw):
        return cls(tcp_connect(port, **kw))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method, path, headers=(), body=b"", host="localhost"):
        """Sends one well-formed request (adds Host and Content-Length)."""
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
        names = {k.lower() for k, _ in headers}
        lines += ["%s: %s" % (k, v) for k, v in headers]
        if body and "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self.send(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        except ssl.SSLError as e:
            if "EOF" in str(e) or "eof" in str(e) or "reset" in str(e):
                data = b""
            else:
                raise
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes: %r" % (sep, limit, self.buf[:200]))
            if not self._fill():
                raise ConnectionError("connection closed; had %r" % self.buf[:500])

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed after %d of %d bytes"
                                      % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n):
        return self._read_exact(n)

    def read_head(self):
        raw = self._read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        first = lines[0].decode("latin-1")
        parts = first.split(" ", 2)
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for l in lines[1:]:
            k, _, v = l.decode("latin-1").partition(":")
            headers.append((k, v.strip()))
        return version, status, reason, headers, raw

    def read_response(self, method="GET", skip_interim=True):
        """Reads one response (body framed as RFC 9112 says); 1xx are skipped unless asked."""
        while True:
            version, status, reason, headers, raw = self.read_head()
            r = Response(version, status, reason, headers, b"", raw)
            if 100 <= status < 200 and status != 101:
                if skip_interim:
                    continue
                return r
            break
        if method == "HEAD" or status in (101, 204, 304):
            return r
        te = ",".join(r.header_all("transfer-encoding")).lower()
        if "chunked" in te:
            r.chunked = True
            body = []
            while True:
                line = self._read_until(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n", "bad chunk framing from moat"
            r.body = b"".join(body)
        elif r.header("content-length") is not None:
            r.body = self._read_exact(int(r.header("content-length")))
        else:
            while self._fill():
                pass
            r.body, self.buf = bytes(self.buf), bytearray()
        return r

    def wait_closed(self, timeout=5.0):
        """True if the peer closes (or resets) within timeout. Extra bytes are kept in .buf."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not self._fill():
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        return False


def raw_exchange(port, data, timeout=5.0, tls=True):
    """Sends data on a fresh connection and returns (first Response or None, closed?)."""
    c = Conn.tls(port, timeout=timeout) if tls else Conn.tcp(port, timeout=timeout)
    try:
        c.send(data)
        try:
            r = c.read_response()
        except (ConnectionError, OSError):
            return None, True
        return r, c.wait_closed(timeout)
    finally:
        c.close()


# ---- websocket client -------------------------------------------------------

def ws_handshake(conn, path="/ws", host="localhost"):
    """Sends the client handshake on conn; returns (Response, expected accept)."""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    conn.send("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, host, key))
    r = conn.read_response()
    return r, upstream_server.websocket_accept(key)


def ws_send(conn, opcode, payload):
    conn.send(upstream_server.ws_frame(opcode, payload, mask=os.urandom(4)))


def ws_recv(conn):
    return upstream_server.ws_read_frame(conn.read_exact)


# ---- misc -------------------------------------------------------------------

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_file(path, size):
    """Writes size pseudo-random bytes to path (fast: a random 1 MiB block, varied)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            b = block if left >= len(block) else block[:left]
            b = i.to_bytes(8, "big") + b[8:] if len(b) > 8 else b
            f.write(b)
            left -= len(b)
            i += 1
    return path


def proc_status(pid, field):
    """A field of /proc/PID/status in kB (VmRSS, VmHWM) or as text (Threads)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                v = line.split(":", 1)[1].strip()
                return int(v.split()[0]) if v.endswith("kB") else int(v)
    return None


def listening_sockets(port):
    """How many TCP LISTEN sockets exist on this port (IPv4 and IPv6)."""
    n = 0
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state = parts[1], parts[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


def metrics(m):
    """moat's admin /metrics (a Moat) as {name: value}."""
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode("utf-8", "replace")
    finally:
        c.close()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric_sum(mt, family, **labels):
    """The sum of family's series in mt (a metrics() dict) whose labels include labels."""
    total = 0.0
    for key, value in mt.items():
        name, _, rest = key.partition("{")
        if name != family:
            continue
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += value
    return total


def audit_events(m, event):
    """The audit-log entries of a Moat whose "event" is event, in order."""
    return [e for e in m.audit_log() if e.get("event") == event]


def bearer(token):
    """The Authorization header of a bearer token, as a (name, value) pair."""
    return ("Authorization", "Bearer " + token)


def hsts_directives(value):
    return {d.strip().lower() for d in (value or "").split(";") if d.strip()}


class KeepAliveClient:
    """One kept-alive TLS connection to moat (requests stay on one worker); when moat
    has closed it (Connection: close, idle timeout, a dropped connection) the next
    request reconnects, once. Subclasses choose how to connect and how to send."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.reconnects = -1

    def _connect(self):
        return Conn.tls(self.port, timeout=self.timeout)

    def _send(self, path, headers):
        self.conn.request("GET", path, headers=headers)
        return self.conn.read_response()

    def request(self, path, headers=()):
        for attempt in (0, 1):
            if self.conn is None or getattr(self.conn, "eof", False):
                self.close()
                self.conn = self._connect()
                self.reconnects += 1
            try:
                r = self._send(path, headers)
            except (ConnectionError, OSError):  # ssl.SSLError is an OSError
                self.close()
                if attempt:
                    raise
                continue
            if (r.header("connection") or "").lower() == "close":
                self.close()
            return r
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
