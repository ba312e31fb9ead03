"""Fixtures for moat's integration tests.

Each fixture stops what it started, by PID, in a finally block, also when the
test fails. A moat that dies on its own during a test (a crash, an abort) is
reported as an error of that test at teardown.

    def test_x(proxy):                       # one upstream "app" + moat, base config
        r = curl(proxy.moat.https_port, "/echo")

    def test_y(upstream, start_moat):        # custom config
        up = upstream("app")
        m = start_moat({"limits": {"header_timeout": "1s"}}, upstream=up)

Every fixture of the suite is here (none is imported into a test module):
upstream, capture_upstream (upstream_server.py processes); moat_factory / start_moat,
proxy, fleet (moat processes); redis_server, redis_factory, redis_sentinels, redis_cluster
(redis-server, sentinel and cluster processes),
fake_redis (a misbehaving Redis in threads), redis_certs (a PKI for Redis over TLS),
rsyslog (rsyslogd receivers, syslogutil.py).
"""

import os
import signal
import subprocess

import pytest

import moatctl
import redisutil
import rlutil
import syslogutil
import tlsutil


@pytest.fixture(scope="session", autouse=True)
def dev_certs():
    """certs/dev/ exists (scripts/gen-dev-certs.sh is idempotent)."""
    if not os.path.exists(os.path.join(moatctl.CERTS, "server.crt")):
        subprocess.run([os.path.join(moatctl.REPO, "scripts", "gen-dev-certs.sh")], check=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    return moatctl.CERTS


@pytest.fixture
def upstream(tmp_path):
    """Factory: upstream(name="app", args=()) starts upstream_server.py on a free port."""
    started = []

    def make(name="app", start=True, args=()):
        u = moatctl.Upstream(tmp_path, name=name, args=args)
        started.append(u)
        return u.start() if start else u

    try:
        yield make
    finally:
        for u in started:
            u.stop()


@pytest.fixture
def moat_factory(tmp_path):
    """Factory: moat_factory(overrides=None, upstream=None) writes a config and starts moat.

    upstream: an Upstream (its port becomes upstreams.app) or None (app points to a
    port nobody listens on). start=False returns the Moat unstarted."""
    started = []

    def make(overrides=None, upstream=None, start=True, name="moat.yaml"):
        port = upstream.port if upstream is not None else None
        path, cfg = moatctl.write_config(tmp_path, overrides, upstream_port=port, name=name)
        m = moatctl.Moat(path, cfg, tmpdir=str(tmp_path))
        started.append(m)
        if start:
            m.start()
        return m

    crashed = []
    try:
        yield make
    finally:
        crashed = moatctl.stop_moats(started)
    if crashed:
        pytest.fail("\n".join(crashed), pytrace=False)


@pytest.fixture
def start_moat(moat_factory):
    return moat_factory


class Proxy:
    def __init__(self, moat, up):
        self.moat = moat
        self.up = up

    @property
    def port(self):
        return self.moat.https_port


@pytest.fixture
def proxy(upstream, moat_factory):
    """An upstream named "app" and a moat in front of it with the base config."""
    up = upstream("app")
    return Proxy(moat_factory(upstream=up), up)


@pytest.fixture
def redis_server(tmp_path):
    """redis-server --port N --save '' --appendonly no in tmp_path (stopped by PID); a moat
    configured with it starts once its workers are connected."""
    r = redisutil.RedisServer(tmp_path)
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture
def redis_factory(tmp_path):
    """Factory: redis_factory(args=(), password=None, tls=None, port=None,
    acl_without=()) -> RedisServer (started; stopped by PID at teardown, also when the
    test restarted, killed or stopped (SIGSTOP) it). Like every RedisServer it has
    conf/redis-acl.conf's user moat (minus the rules in acl_without), and moat configs
    written for it log in as that user. A moat configured with one does not wait for its
    workers to connect (it may be meant to fail) unless moat_waits=True."""
    started = []

    def make(**kw):
        kw.setdefault("moat_waits", False)
        r = redisutil.RedisServer(tmp_path, **kw)
        started.append(r)
        return r.start()

    try:
        yield make
    finally:
        for r in started:
            if r.proc is not None and r.proc.poll() is None:
                try:
                    os.kill(r.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            r.stop()


@pytest.fixture
def redis_sentinels(tmp_path):
    """Factory: redis_sentinels(**kw) -> redisutil.SentinelSet, started: a master, a
    replica and three sentinels (quorum 2, down-after 1000 ms) monitoring it as
    "mymaster", ready for a failover. Every process is stopped by PID at teardown, also
    when the test killed or stopped some of them."""
    made = []

    def make(**kw):
        s = redisutil.SentinelSet(tmp_path, **kw)
        made.append(s)
        return s.start()

    try:
        yield make
    finally:
        for s in made:
            s.stop()


@pytest.fixture
def redis_cluster(tmp_path):
    """Factory: redis_cluster(masters=3, replicas=0, node_timeout_ms=2000) ->
    redisutil.RedisCluster, started (cluster_state ok, slots spread by redis-cli --cluster
    create, replicas in sync). Every node is stopped by PID at
    teardown, also when the test killed or stopped some of them."""
    made = []

    def make(**kw):
        c = redisutil.RedisCluster(tmp_path, **kw)
        made.append(c)
        return c.start()

    try:
        yield make
    finally:
        for c in made:
            c.stop()


@pytest.fixture
def fake_redis():
    """Factory: fake_redis(mode, garbage=b"", replies=None) -> redisutil.FakeRedis (threads
    of this process, stopped at teardown)."""
    made = []

    def make(mode, garbage=b"", replies=None):
        f = redisutil.FakeRedis(mode, garbage, replies)
        made.append(f)
        return f

    try:
        yield make
    finally:
        for f in made:
            f.stop()


@pytest.fixture
def redis_certs(tmp_path):
    """For redis_factory(tls=...): a test CA, a Redis server certificate it signs
    (localhost, 127.0.0.1) and an unrelated CA. {"ca", "cert", "key", "other_ca"} (paths)."""
    pki = tlsutil.PKI(tmp_path / "redis-certs")
    ca = pki.ca("ca", "/CN=moat test ca", key="ec")
    other = pki.ca("other-ca", "/CN=moat test other-ca", key="ec")
    srv = pki.leaf(ca, "redis", "/CN=localhost", dns=["localhost"], ips=["127.0.0.1"], key="ec",
                   days=2)
    return {"ca": ca.cert, "cert": srv.cert, "key": srv.key, "other_ca": other.cert}


@pytest.fixture
def capture_upstream(upstream):
    """Factory: capture_upstream(name="capture") starts upstream_server.py --capture: every
    request is answered with (and logged as) its exact bytes; Upstream.captured() lists
    them."""
    def make(name="capture"):
        return upstream(name, args=["--capture"])
    return make


@pytest.fixture
def fleet(tmp_path):
    """Several moat instances sharing a Redis (rate-limit tests); stopped by PID."""
    f = rlutil.Fleet(tmp_path)
    try:
        yield f
    finally:
        crashed = f.stop_all()
    if crashed:
        pytest.fail("\n".join(crashed), pytrace=False)


@pytest.fixture
def rsyslog(tmp_path):
    """Factory: rsyslog(transport="tcp", port=None, certs=None, start=True) ->
    syslogutil.Rsyslog (a real rsyslogd on 127.0.0.1); every one is stopped by PID at
    teardown, also when the test stopped or restarted it."""
    made = []

    def make(transport="tcp", port=None, certs=None, start=True):
        r = syslogutil.Rsyslog(tmp_path, transport, port=port, certs=certs)
        made.append(r)
        return r.start() if start else r

    try:
        yield make
    finally:
        for r in made:
            r.stop()
