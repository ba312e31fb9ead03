#!/usr/bin/env python3
"""The demo application behind moat for scripts/run.sh (standard library only).

    scripts/demo-app.py --port 9000 --name shared --redis 127.0.0.1:6390 \\
        --signing-key certs/dev/signing.key [--host 127.0.0.1] [--cookie session] \\
        [--key-prefix moat:sess:] [--session-ttl 3600]

It plays both parts a real deployment has behind moat:

- the **login service** (docs/sessions.md is its contract): GET /login shows a form,
  POST /login (user, tenant, mfa, return_to) writes the session record to Redis
  (`HSET moat:sess:<sha256(token)> tenant user mfa exp` + `EXPIRE`), sets the session
  cookie (Secure, HttpOnly, SameSite=Lax) and sends the browser back to return_to;
  POST /logout deletes the record (revocation) and clears the cookie;
- an **application**: every other path shows who moat says the user is (X-Tenant-ID,
  X-User-ID, X-Session-MFA) after checking X-Moat-Signature with the signing key the
  way scripts/verify-signature.py does (docs/signature.md). A request whose signature
  does not verify gets 401 and its identity headers are not read. /api/... answers
  JSON, /healthz "ok".

Pages are HTML for browsers (Accept: text/html) and plain text for curl.
"""

import argparse
import hashlib
import html
import importlib.util
import json
import os
import re
import secrets
import socket
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("verify_signature",
                                               os.path.join(HERE, "verify-signature.py"))
vs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vs)

# The record's tenant and user: what moat accepts (docs/sessions.md).
VALUE_RE = re.compile(r"[A-Za-z0-9._:@-]{1,127}")
IDENTITY = ("X-Tenant-ID", "X-User-ID", "X-Session-MFA", "X-Request-ID", "X-Forwarded-For",
            "X-Forwarded-Proto", "X-Forwarded-Host", "X-Moat-Signature")


# ---- a tiny Redis client: RESP over a socket, one connection per call --------------

class RedisError(Exception):
    pass


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RedisError("bad reply %r" % line)


def redis_call(addr, *commands, timeout=2.0):
    """Sends commands (lists of arguments) in one write; returns their replies. An
    error reply is raised."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(b"".join(_resp_encode(c) for c in commands))
        f = s.makefile("rb")
        replies = [_resp_read(f) for _ in commands]
    for r in replies:
        if isinstance(r, RedisError):
            raise r
    return replies


# ---- the application ---------------------------------------------------------------

class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: moat reuses its upstream connections
    server_version = "demo-app"
    opts = None   # argparse namespace, set in main()
    keys = None   # signing keys

    def log_message(self, fmt, *args):  # moat's access log already says it all
        pass

    def note(self, msg):
        sys.stderr.write("demo-app[%s]: %s\n" % (self.opts.name, msg))

    # -- plumbing

    def wants_html(self):
        return "text/html" in self.headers.get("Accept", "")

    def send(self, status, body, ctype="text/plain; charset=utf-8", headers=()):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def page(self, status, title, lines, headers=(), form=""):
        """lines: text lines; HTML shows them in <pre> plus an optional form."""
        if self.wants_html():
            body = ("<!doctype html><meta charset=utf-8><title>%s</title>"
                    "<h1>%s</h1><pre>%s</pre>%s" % (html.escape(title), html.escape(title),
                                                     html.escape("\n".join(lines)), form))
            self.send(status, body, "text/html; charset=utf-8", headers)
        else:
            self.send(status, "\n".join([title, ""] + lines) + "\n", headers=headers)

    def read_form(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 65536:
            raise ValueError("form too large")
        data = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        return {k: v[-1] for k, v in urllib.parse.parse_qs(data).items()}

    def token(self):
        """The session token the client sent (cookie or bearer), or None."""
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        for h in self.headers.get_all("Cookie") or []:
            for part in h.split(";"):
                name, _, value = part.strip().partition("=")
                if name == self.opts.cookie and value:
                    return value
        return None

    def cookie(self, value, max_age):
        # Secure: only over HTTPS (moat); HttpOnly: no script can read it;
        # SameSite=Lax: not sent on cross-site POSTs (CSRF), sent on top-level links.
        return ("Set-Cookie", "%s=%s; Path=/; Max-Age=%d; Secure; HttpOnly; SameSite=Lax"
                % (self.opts.cookie, value, max_age))

    def key(self, token):
        return self.opts.key_prefix + hashlib.sha256(token.encode()).hexdigest()

    def signature(self):
        """(ok, reason) of X-Moat-Signature for this request."""
        return vs.check(self.headers.items(), self.command, self.path, self.keys)

    # -- routes

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/healthz":
            return self.send(200, "ok\n")
        if path == "/login":
            return self.login_form()
        if path == "/logout":
            return self.page(405, "log out with POST /logout", [], headers=[("Allow", "POST")])
        return self.whoami(path)

    do_HEAD = do_GET

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/login":
            return self.login()
        if path == "/logout":
            return self.logout()
        return self.whoami(path)

    def login_form(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        return_to = safe_return_to(q.get("return_to", ["/"])[-1])
        form = ("<form method=post action=/login>"
                "<p><label>user <input name=user value=alice></label>"
                "<p><label>tenant <input name=tenant value=acme></label>"
                "<p><label><input type=checkbox name=mfa value=1> passed MFA</label>"
                "<input type=hidden name=return_to value=\"%s\">"
                "<p><button>log in</button></form>" % html.escape(return_to, quote=True))
        self.page(200, "demo login", [
            "No password here: this page shows what a login service hands to moat.",
            "It writes the session record to Redis and sets the '%s' cookie." % self.opts.cookie,
            "",
            "curl -k -c jar -b jar -d user=alice -d tenant=acme -d mfa=1 "
            "https://localhost:8443/login",
            "(then you go back to: %s)" % return_to,
        ], form=form)

    def login(self):
        try:
            f = self.read_form()
        except ValueError as e:
            return self.page(400, "bad form", [str(e)])
        user, tenant = f.get("user", ""), f.get("tenant", "")
        mfa = "1" if f.get("mfa", "") in ("1", "on", "true", "yes") else "0"
        bad = [n for n, v in (("user", user), ("tenant", tenant)) if not VALUE_RE.fullmatch(v)]
        if bad:
            return self.page(400, "refused: bad " + " and ".join(bad), [
                "user and tenant: 1 to 127 of A-Z a-z 0-9 - _ . : @ (docs/sessions.md)"])
        token = secrets.token_urlsafe(32)  # 43 characters of base64url
        ttl = self.opts.session_ttl
        key = self.key(token)
        try:
            # one MULTI: the record and its TTL appear together
            redis_call(self.opts.redis, ["MULTI"],
                       ["HSET", key, "tenant", tenant, "user", user, "mfa", mfa,
                        "exp", str(int(time.time()) + ttl)],
                       ["EXPIRE", key, str(ttl)], ["EXEC"])
        except (OSError, RedisError) as e:
            return self.page(503, "session store unavailable", [str(e)])
        self.note("login %s (tenant %s, mfa %s): wrote %s..., expires in %d s"
                  % (user, tenant, mfa, key[:24], ttl))
        return_to = safe_return_to(f.get("return_to", "/"))
        self.page(303, "logged in as %s (tenant %s)" % (user, tenant), [
            "mfa: %s" % ("yes" if mfa == "1" else "no"),
            "session record: HSET %s... tenant %s user %s mfa %s exp <now+%d>; EXPIRE %d"
            % (key[:24], tenant, user, mfa, ttl, ttl),
            "cookie: %s=<token>; Secure; HttpOnly; SameSite=Lax" % self.opts.cookie,
            "next: %s" % return_to,
        ], headers=[self.cookie(token, ttl), ("Location", return_to)])

    def logout(self):
        token = self.token()
        deleted = 0
        if token:
            try:
                deleted = redis_call(self.opts.redis, ["DEL", self.key(token)])[0]
            except (OSError, RedisError) as e:
                return self.page(503, "session store unavailable", [str(e)])
        self.note("logout: %s" % ("session deleted" if deleted else "no session"))
        self.page(200, "logged out" if deleted else "no session to log out", [
            "The session record is deleted from Redis: moat refuses the token from now on",
            "(docs/sessions.md, \"Logout and revocation\"). The cookie is cleared too.",
        ], headers=[self.cookie("", 0)], form="<p><a href=/login>log in again</a>")

    def whoami(self, path):
        ok, reason = self.signature()
        if not ok:  # docs/signature.md: then do not look at the identity headers at all
            return self.page(401, "signature: invalid (%s)" % reason, [
                "This request did not come through moat (or not with our key):",
                "its identity headers are not trusted."])
        user = self.headers.get("X-User-ID", "")
        tenant = self.headers.get("X-Tenant-ID", "")
        mfa = self.headers.get("X-Session-MFA", "") == "1"
        who = "logged in as %s (tenant %s)" % (user, tenant) if user else "anonymous"
        if path.startswith("/api/"):
            return self.send(200, json.dumps({
                "user": user, "tenant": tenant, "mfa": mfa, "signature": "valid",
                "server": self.opts.name, "path": path}) + "\n", "application/json")
        title = "admin area (MFA passed): " + who if path.startswith("/admin") else who
        lines = ["signature: valid (X-Moat-Signature checked with the signing key)",
                 "served by: %s (127.0.0.1:%d)" % (self.opts.name, self.opts.port),
                 "", "what moat sent:",
                 "  %s %s" % (self.command, self.path)]
        lines += ["  %s: %s" % (h, self.headers.get(h)) for h in IDENTITY
                  if self.headers.get(h) is not None]
        lines += ["", "mfa: %s" % ("yes: /admin is open" if mfa else "no: /admin answers 403"),
                  "try: /admin, /api/whoami (5 requests, then 429), POST /logout"]
        self.page(200, title, lines,
                  form="<form method=post action=/logout><button>log out</button></form>")


def safe_return_to(v):
    """A local path only (no open redirect): "/x?y", not "//evil", "https://..." or "\\"."""
    if (not v.startswith("/") or v.startswith("//") or "\\" in v or len(v) > 2048
            or any(ord(c) < 0x21 or ord(c) > 0x7e for c in v)):
        return "/"
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description="moat's demo application (scripts/run.sh)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--name", default="shared", help="shown on every page")
    ap.add_argument("--redis", default="127.0.0.1:6390", help="host:port of the session store")
    ap.add_argument("--signing-key", required=True, help="moat's identity.signing_key_file")
    ap.add_argument("--cookie", default="session", help="moat's sessions.cookie")
    ap.add_argument("--key-prefix", default="moat:sess:", help="moat's sessions.key_prefix")
    ap.add_argument("--session-ttl", type=int, default=3600, help="seconds")
    opts = ap.parse_args(argv)
    try:
        App.keys = [vs.load_key(opts.signing_key)]
    except (OSError, vs.KeyFileError) as e:
        print("demo-app: %s" % e, file=sys.stderr)
        return 2
    App.opts = opts
    srv = ThreadingHTTPServer((opts.host, opts.port), App)
    srv.daemon_threads = True
    print("demo-app[%s]: listening on %s:%d" % (opts.name, opts.host, opts.port),
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
