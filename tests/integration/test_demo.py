"""scripts/run.sh, the README's first command, run the way a newcomer runs it (with
conf/demo.yaml and scripts/demo-app.py), walked through as README's "Try it" does:
a redirect to the login page, a login that writes the session to Redis, the page
showing who moat says the user is with a valid signature, acme's dedicated server,
the MFA route, the rate limit, a logout that revokes the session. Then Ctrl-C (SIGINT
to the process group, as a terminal sends it) must leave no moat, redis-server or
demo app behind, checked by PID.

The ports are free ones (DEMO_*_PORT) and MOAT_BIN is the binary under test, so the
script skips the build; everything else is the script as shipped."""

import http.client
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.parse

import pytest

import moatctl
import redisutil

PORTS = ("DEMO_HTTPS_PORT", "DEMO_HTTP_PORT", "DEMO_ADMIN_PORT", "DEMO_REDIS_PORT",
         "DEMO_APP_PORT", "DEMO_ACME_PORT")


def group_pids(pgid):
    """{pid: command name} of the live processes in process group pgid."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out[int(d)] = comm
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Demo:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.ports = {k: moatctl.free_port() for k in PORTS}
        self.https = self.ports["DEMO_HTTPS_PORT"]
        self.proc = None
        self.pids = {}
        self.ctx = ssl.create_default_context(cafile=moatctl.CA)

    def start(self):
        env = dict(os.environ, MOAT_BIN=moatctl.moat_bin(), TMPDIR=str(self.tmp),
                   **{k: str(v) for k, v in self.ports.items()})
        env.pop("MOAT_CONF", None)
        self.out = open(self.tmp / "run.out", "wb")
        self.err = open(self.tmp / "run.err", "wb")
        self.proc = subprocess.Popen(["bash", os.path.join(moatctl.REPO, "scripts", "run.sh")],
                                     cwd=str(self.tmp), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.err, start_new_session=True)
        ok = moatctl.wait_until(lambda: self.proc.poll() is not None or
                                moatctl.port_accepts(self.https), 90, interval=0.1)
        assert ok and self.proc.poll() is None, "run.sh did not start moat:\n" + self.logs()
        self.pids = group_pids(self.proc.pid)
        return self

    def logs(self):
        return "stdout:\n%s\nstderr:\n%s" % (moatctl.read_text(self.tmp / "run.out"),
                                             moatctl.read_text(self.tmp / "run.err"))

    def request(self, method, path, cookie=None, form=None, headers=()):
        """One request on a fresh TLS connection: (status, headers dict, body text)."""
        c = http.client.HTTPSConnection("localhost", self.https, context=self.ctx, timeout=10)
        try:
            h = dict(headers)
            body = None
            if cookie:
                h["Cookie"] = "session=" + cookie
            if form is not None:
                body = urllib.parse.urlencode(form)
                h["Content-Type"] = "application/x-www-form-urlencoded"
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            hdrs = {}
            for k, v in r.getheaders():
                hdrs.setdefault(k.lower(), []).append(v)
            return r.status, hdrs, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def stop(self):
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
        if self.proc is None:
            return None
        rc = moatctl.stop_process(self.proc, sig=signal.SIGINT, timeout=40)
        # run.sh stops its children by PID; anything left is killed here, by PID
        for pid in self.pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for f in (self.out, self.err):
            f.close()
        return rc


@pytest.fixture
def demo(tmp_path):
    d = Demo(tmp_path)
    try:
        yield d.start()
    finally:
        d.stop()


def login(demo, user, tenant, mfa=False, return_to="/"):
    form = {"user": user, "tenant": tenant, "return_to": return_to}
    if mfa:
        form["mfa"] = "1"
    return demo.request("POST", "/login", form=form)


def cookie_of(hdrs):
    """(token, attributes) of the session cookie set by a response."""
    for v in hdrs.get("set-cookie", []):
        name, _, rest = v.partition("=")
        if name == "session":
            value, _, attrs = rest.partition(";")
            return value, [a.strip() for a in attrs.split(";")]
    raise AssertionError("no session cookie in %r" % hdrs)


def test_demo_walkthrough(demo):
    names = sorted(demo.pids.values())
    assert names.count("moat") == 1 and names.count("redis-server") == 1, names
    assert names.count("python3") == 2, names  # the shared and the acme demo apps

    # the session store keeps nothing on disk
    redis = type("R", (), {"port": demo.ports["DEMO_REDIS_PORT"]})()
    assert redisutil.call(redis, "CONFIG", "GET", "save") == [b"save", b""]
    assert redisutil.call(redis, "CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]

    # no session: a page sends the browser to the login page, the API says 401
    st, h, _ = demo.request("GET", "/")
    assert st == 302 and h["location"] == ["/login?return_to=/"], (st, h)
    st, h, _ = demo.request("GET", "/api/whoami")
    assert st == 401, (st, h)
    st, _, body = demo.request("GET", "/login?return_to=/admin")
    assert st == 200 and "demo login" in body and "/admin" in body, body

    # log in: the record is in Redis, the cookie has the right attributes
    st, h, body = login(demo, "alice", "acme")
    assert st == 303 and h["location"] == ["/"], (st, h, body)
    assert "logged in as alice (tenant acme)" in body, body
    token, attrs = cookie_of(h)
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= set(attrs), attrs
    key = redisutil.session_key(token)
    rec = redisutil.call(redis, "HGETALL", key)
    rec = dict(zip(rec[::2], rec[1::2]))
    assert rec[b"tenant"] == b"acme" and rec[b"user"] == b"alice" and rec[b"mfa"] == b"0", rec
    assert abs(int(rec[b"exp"]) - (time.time() + 3600)) < 60, rec
    assert 3500 < redisutil.call(redis, "TTL", key) <= 3600

    # the page: who moat says alice is, signed; acme is served by its own server
    def page():
        r = demo.request("GET", "/", cookie=token)
        return r if r[0] != 503 else None  # moat's Redis clients may still be connecting
    st, _, body = moatctl.wait_until(page, 10) or demo.request("GET", "/", cookie=token)
    assert st == 200, (st, body)
    for want in ("logged in as alice (tenant acme)", "signature: valid", "X-Tenant-ID: acme",
                 "X-User-ID: alice", "X-Session-MFA: 0", "served by: acme-dedicated",
                 "X-Moat-Signature: t="):
        assert want in body, (want, body)

    # a client cannot claim another tenant: moat replaces the header and signs its own
    st, _, body = demo.request("GET", "/", cookie=token, headers={"X-Tenant-ID": "globex"})
    assert st == 200 and "X-Tenant-ID: acme" in body and "globex" not in body, body

    # MFA route: 403 without MFA; bob logs in with MFA and comes back to /admin
    st, _, body = demo.request("GET", "/admin", cookie=token)
    assert st == 403, (st, body)
    st, h, _ = login(demo, "bob", "globex", mfa=True, return_to="/admin")
    assert st == 303 and h["location"] == ["/admin"], (st, h)
    bob, _ = cookie_of(h)
    st, _, body = demo.request("GET", "/admin", cookie=bob)
    assert st == 200, (st, body)
    assert "admin area (MFA passed): logged in as bob (tenant globex)" in body, body
    assert "served by: shared" in body and "signature: valid" in body, body
    # return_to is a local path only
    st, h, _ = login(demo, "bob", "globex", return_to="//evil.example/")
    assert st == 303 and h["location"] == ["/"], (st, h)
    # a value outside the record's alphabet is refused by the login service
    st, _, _ = login(demo, "al ice", "acme")
    assert st == 400

    # the rate limit: 5 requests per session, then 429 (one more every 6 s)
    statuses = []
    for _ in range(8):
        st, h, body = demo.request("GET", "/api/whoami", cookie=token)
        statuses.append(st)
        if st == 200:
            j = json.loads(body)
            assert j["user"] == "alice" and j["tenant"] == "acme" and \
                j["signature"] == "valid", j
        if st == 429:
            assert int(h["retry-after"][0]) >= 1, h
            break
    assert statuses[:5] == [200] * 5 and statuses[-1] == 429, statuses

    # log out: the record is deleted and the old token is refused at once
    st, h, body = demo.request("POST", "/logout", cookie=token)
    assert st == 200 and "logged out" in body, (st, body)
    _, attrs = cookie_of(h)
    assert "Max-Age=0" in attrs, attrs
    assert redisutil.call(redis, "EXISTS", key) == 0

    def refused():
        st_api = demo.request("GET", "/api/whoami", cookie=token)[0]
        st_page, h_page, _ = demo.request("GET", "/", cookie=token)
        return st_api == 401 and st_page == 302 and \
            h_page["location"] == ["/login?return_to=/"]
    # push revocation drops the cached session within milliseconds
    assert moatctl.wait_until(refused, 2, interval=0.05), demo.logs()

    # Ctrl-C: moat drains, run.sh stops the demo apps and redis-server
    pids = dict(demo.pids)
    rc = demo.stop()
    assert rc == 0, (rc, demo.logs())
    left = [(pid, name) for pid, name in pids.items() if alive(pid)]
    assert left == [], left
    assert not [p for p in os.listdir(demo.tmp) if p.startswith("moat-demo.")], \
        os.listdir(demo.tmp)
    assert not moatctl.port_accepts(demo.https)
    assert not moatctl.port_accepts(demo.ports["DEMO_REDIS_PORT"])


def test_demo_sigterm_to_the_script_stops_everything(demo):
    """`kill <run.sh's pid>` (no terminal, no group signal): run.sh itself stops moat,
    the demo apps and redis-server by PID and removes its temporary directory."""
    pids = dict(demo.pids)
    assert sorted(pids.values()).count("python3") == 2, pids
    os.kill(demo.proc.pid, signal.SIGTERM)
    rc = demo.proc.wait(timeout=40)
    assert rc == 0, (rc, demo.logs())  # moat drained and exited 0
    left = [(pid, name) for pid, name in pids.items() if alive(pid)]
    assert left == [], left
    assert not [p for p in os.listdir(demo.tmp) if p.startswith("moat-demo.")]
