"""Helpers for the identity / tenant-isolation integration tests.

Standard library only; builds on moatctl (processes, configs, clients).

- sessions in a real redis-server (`moat:sess:<hex sha256(token)>`)
- config overrides for identity, tenants and routes
- raw requests over TLS for spoofs curl cannot express
- loose header-name folding, as CGI/WSGI servers do it
- scripts/verify-signature.py run as a separate program over what the upstream got
- CaptureUpstream: an in-process upstream that records the exact bytes moat sent
  (request head, body and chunked trailers), for what upstream_server.py does not log
"""

import hashlib
import json
import os
import re
import secrets
import socket
import socketserver
import subprocess
import threading
import time

import pytest

import moatctl
from moatctl import Conn

VERIFIER = os.path.join(moatctl.REPO, "scripts", "verify-signature.py")

IDENTITY_HEADERS = ("X-Tenant-ID", "X-User-ID", "X-Session-MFA")


# ---- header names -------------------------------------------------------------

def fold(name):
    """A header name as a CGI server that turns every non-alphanumeric into '_' sees it."""
    return re.sub(r"[^a-z0-9]", "_", name.strip().lower())


def loose(headers, canonical):
    """Values of every header whose name folds to canonical's (any case, any separator)."""
    want = fold(canonical)
    return [v for k, v in headers if fold(k) == want]


def loose_prefix(headers, prefix):
    """(name, value) of every header whose folded name starts with prefix's."""
    want = fold(prefix)
    return [(k, v) for k, v in headers if fold(k).startswith(want)]


def exact(headers, name):
    """Values of the headers named name (case-insensitive, byte-for-byte otherwise)."""
    return [v for k, v in headers if k.lower() == name.lower()]


def echo_headers(j):
    """The [name, value] list an upstream_server.py /echo answer reports."""
    return [(k, v) for k, v in j["headers"]]


# ---- sessions in redis ----------------------------------------------------------

class Sessions:
    """Creates sessions the way the login service does: HSET moat:sess:<sha256 hex>."""

    def __init__(self, redis, prefix="moat:sess:"):
        self.redis = redis
        self.prefix = prefix

    def add(self, tenant, user, mfa=True, exp=None, token=None):
        token = token or secrets.token_urlsafe(32)
        key = self.prefix + hashlib.sha256(token.encode()).hexdigest()
        exp = exp if exp is not None else int(time.time()) + 3600
        reply = self.redis.command("HSET", key, "tenant", tenant, "user", user,
                                   "mfa", "1" if mfa else "0", "exp", str(exp))
        assert reply.startswith(b":"), reply
        return token


def bearer(token):
    return ("Authorization", "Bearer " + token)


# ---- config -------------------------------------------------------------------

def make_signing_key(tmp_path, name="signing.key"):
    """A fresh 32-byte hex key file (mode 0600); returns its path."""
    path = os.path.join(str(tmp_path), name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


def identity_overrides(redis=None, upstreams=None, routes=None, tenants=None,
                       trusted_proxies=None, signing_key=None, sessions=None, **extra):
    """Config overrides for moatctl.write_config (a dict; JSON is valid YAML).

    upstreams: {name: Upstream or [Upstream, ...]}; "app" replaces the base one."""
    ov = {}
    if redis is not None:
        ov["redis"] = {"address": redis.addr, "timeout": moatctl.TEST_REDIS_TIMEOUT}
    if upstreams:
        ups = {}
        for name, u in upstreams.items():
            us = u if isinstance(u, (list, tuple)) else [u]
            ups[name] = {"servers": [x.addr for x in us]}
        ov["upstreams"] = ups
    if routes is not None:
        ov["routes"] = routes
    if tenants is not None:
        ov["tenants"] = tenants
    ident = {}
    if trusted_proxies is not None:
        ident["trusted_proxies"] = trusted_proxies
    if signing_key is not None:
        ident["signing_key_file"] = signing_key
    if ident:
        ov["identity"] = ident
    if sessions is not None:
        ov["sessions"] = sessions
    ov.update(extra)
    return ov


# ---- raw requests -------------------------------------------------------------

def raw_request(port, head_lines, body=b"", timeout=10.0, method="GET"):
    """Sends one request made of head_lines (str, joined with CRLF; nothing added) plus
    body on a fresh TLS connection; returns moat's Response (None if it closed)."""
    data = ("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1") + body
    with Conn.tls(port, timeout=timeout) as c:
        c.send(data)
        try:
            return c.read_response(method=method)
        except (ConnectionError, OSError):
            return None


def request(port, method, target, headers=(), body=b"", host="localhost", timeout=10.0):
    """One well-formed request (Host first, Content-Length added for a body)."""
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % host]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    lines.append("Connection: close")
    return raw_request(port, lines, body, timeout=timeout, method=method)


def get_json(port, target, headers=(), **kw):
    r = request(port, "GET", target, headers, **kw)
    assert r is not None, "moat closed the connection without answering"
    assert r.status == 200, r
    return r, r.json()


# ---- signature ----------------------------------------------------------------

def dump_from_echo(j, **override):
    """A verify-signature.py --json dump of what the upstream received.

    override: method=, target=, headers= (list of [n, v]) replace the received ones."""
    d = {"method": j["method"], "target": j["target"], "headers": [list(h) for h in j["headers"]]}
    d.update(override)
    return d


def replace_header(headers, name, value):
    """headers with every header named name (case-insensitive) given value; asserts one."""
    out, n = [], 0
    for k, v in headers:
        if k.lower() == name.lower():
            out.append([k, value])
            n += 1
        else:
            out.append([k, v])
    assert n == 1, "expected exactly one %s in %r" % (name, headers)
    return out


def run_verifier(dump, key_file, tmp_path, extra=()):
    """Runs scripts/verify-signature.py --json over dump; returns (exit code, output)."""
    fd, path = _tmpfile(tmp_path, "dump-", ".json")
    with os.fdopen(fd, "w") as f:
        json.dump(dump, f)
    p = subprocess.run([moatctl.PYTHON, VERIFIER, "--key-file", key_file, "--json", path]
                       + list(extra), capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    return p.returncode, (p.stdout + p.stderr).strip()


def _tmpfile(tmp_path, prefix, suffix):
    import tempfile
    return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=str(tmp_path))


# ---- an upstream that records raw bytes ---------------------------------------

class _CaptureHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        sock = self.request
        sock.settimeout(30)
        buf = b""

        def fill():
            nonlocal buf
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("eof")
            buf += data

        def take_until(sep):
            nonlocal buf
            while sep not in buf:
                fill()
            i = buf.index(sep) + len(sep)
            out, buf = buf[:i], buf[i:]
            return out

        def take(n):
            nonlocal buf
            while len(buf) < n:
                fill()
            out, buf = buf[:n], buf[n:]
            return out

        try:
            while True:
                head = take_until(b"\r\n\r\n")
                lines = head[:-4].split(b"\r\n")
                names = {}
                for l in lines[1:]:
                    k, _, v = l.partition(b":")
                    names.setdefault(k.strip().lower(), []).append(v.strip())
                raw = head
                te = b",".join(names.get(b"transfer-encoding", [])).lower()
                if b"chunked" in te:
                    while True:
                        size_line = take_until(b"\r\n")
                        raw += size_line
                        size = int(size_line.split(b";")[0].strip(), 16)
                        if size == 0:
                            while True:  # trailer section up to the empty line
                                t = take_until(b"\r\n")
                                raw += t
                                if t == b"\r\n":
                                    break
                            break
                        raw += take(size + 2)
                elif b"content-length" in names:
                    raw += take(int(names[b"content-length"][0]))
                with srv.lock:
                    srv.captured.append(raw)
                body = json.dumps({"raw": raw.decode("latin-1"), "upstream": srv.name}).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except (ConnectionError, OSError, ValueError):
            return


class CaptureUpstream:
    """A thread in the test process (no child process) answering 200 to every request
    and keeping the exact bytes of each one (head, body, trailers) in .captured."""

    def __init__(self, name="capture"):
        self.name = name
        self.srv = None
        self.thread = None

    def start(self):
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CaptureHandler,
                                              bind_and_activate=False)
        srv.daemon_threads = True
        srv.allow_reuse_address = True
        srv.server_bind()
        srv.server_activate()
        srv.captured = []
        srv.lock = threading.Lock()
        srv.name = self.name
        self.srv = srv
        self.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    @property
    def port(self):
        return self.srv.server_address[1]

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    @property
    def captured(self):
        with self.srv.lock:
            return list(self.srv.captured)

    def stop(self):
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()
            self.thread.join(5)
            self.srv = None


def parse_raw_head(raw):
    """(request line, [(name, value)], rest) of raw request bytes."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = []
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs.append((k, v.strip(" \t")))
    return lines[0], hdrs, rest


# ---- fixtures (import them into a test module to use them) --------------------

@pytest.fixture
def capture_upstream():
    """Factory: capture_upstream(name) starts a CaptureUpstream; all stopped at teardown."""
    started = []

    def make(name="capture"):
        u = CaptureUpstream(name)
        started.append(u)
        return u.start()

    try:
        yield make
    finally:
        for u in started:
            u.stop()


@pytest.fixture
def sessions(redis_server):
    return Sessions(redis_server)
