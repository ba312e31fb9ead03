"""Helpers for the identity / tenant-isolation integration tests.

Standard library only; builds on moatctl (processes, configs, clients).

- config overrides for identity, tenants and routes
- raw requests over TLS for spoofs curl cannot express
- loose header-name folding, as CGI/WSGI servers do it
- scripts/verify-signature.py run as a separate program over what the upstream got
- parse_raw_head(): the exact bytes an upstream_server.py --capture received (the
  capture_upstream fixture), split into request line, headers and the rest

Sessions are written with redisutil.put_session.
"""

import json
import os
import re
import secrets
import subprocess

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


# ---- raw bytes an upstream received -------------------------------------------

def parse_raw_head(raw):
    """(request line, [(name, value)], rest) of raw request bytes."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = []
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs.append((k, v.strip(" \t")))
    return lines[0], hdrs, rest
