"""moat -t --preflight: after the config checks, connect to Redis as configured and probe
every command the config will send (conf/redis-acl.conf's user), and connect to every
upstream server. One line per check; exit 0 only when all pass; every wait bounded."""

import os
import subprocess
import time

import moatctl
import redisutil
from authutil import auth_overrides
from rlutil import rl_route

RULE = {"key": "ip", "rate": "10/s", "burst": 10, "scope": "global", "id": "pf"}


def preflight(path, timeout=30):
    """(CompletedProcess, seconds) of moat -t --preflight -c path."""
    t0 = time.monotonic()
    p = subprocess.run([moatctl.moat_bin(), "-t", "--preflight", "-c", path],
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p, time.monotonic() - t0


def write(tmp_path, redis_addr, up_port, redis=None, push=True):
    """A config with every Redis feature of single mode: sessions, push revocation, a
    global rate limit."""
    ov = auth_overrides(redis_addr, redis=redis, sessions={"push_revocation": push})
    ov["routes"] = [rl_route("/rl", [RULE])] + ov["routes"]
    path, _ = moatctl.write_config(tmp_path, ov, upstream_port=up_port)
    return path


def lines_with(out, needle):
    return [line for line in out.splitlines() if needle in line]


def test_all_ok_with_the_acl_user(upstream, redis_server, tmp_path):
    up = upstream("app")
    p, _ = preflight(write(tmp_path, redis_server.addr, up.port))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "configuration is valid" in out, out
    for what in ("connect (TCP, AUTH as moat)", "HGETALL (sessions): ok",
                 "EVALSHA <unknown script> (global rate limits): ok",
                 "EVAL <a script that only checks the ACL>", "the rate-limit scripts' commands",
                 "CLIENT TRACKING", "SUBSCRIBE __redis__:invalidate (push revocation): ok",
                 "CLIENT ID (push revocation): ok", "upstream app 127.0.0.1:%d" % up.port):
        assert lines_with(out, what), (what, out)
    assert "FAIL" not in out and "warning" not in out, out
    assert "preflight: all" in out, out
    # nothing was written: the probes are read-only
    assert redisutil.call(redis_server, "DBSIZE") == 0


def test_missing_evalsha_is_named(upstream, redis_factory, tmp_path):
    """A user without +evalsha (the README's old ACL): exit 1 and the line says what to
    add."""
    r = redis_factory(acl_without=["+evalsha"])
    up = upstream("app")
    p, _ = preflight(write(tmp_path, r.addr, up.port))
    assert p.returncode == 1, p.stdout + p.stderr
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1, p.stdout
    assert "EVALSHA" in bad[0] and "NOPERM" in bad[0] and "'evalsha'" in bad[0], bad
    assert "needed by global rate limits: add +evalsha" in bad[0], bad
    assert "1 of" in p.stdout and "checks failed" in p.stdout, p.stdout


def test_missing_script_command_is_named(upstream, redis_factory, tmp_path):
    """The rate-limit scripts' own commands are checked too (Redis 7 runs them under the
    caller's ACL): without +time and +hget every decision would fail."""
    r = redis_factory(acl_without=["+time", "+hget"])
    up = upstream("app")
    p, _ = preflight(write(tmp_path, r.addr, up.port))
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1 and "+time +hget" in bad[0], p.stdout


def test_missing_tracking_and_channel(upstream, redis_factory, tmp_path):
    r = redis_factory(acl_without=["+client|tracking", "&__redis__:invalidate"])
    up = upstream("app")
    p, _ = preflight(write(tmp_path, r.addr, up.port))
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 2, p.stdout
    assert "add +client|tracking" in bad[0], bad
    assert "SUBSCRIBE" in bad[1] and "add &__redis__:invalidate" in bad[1], bad
    # without push revocation neither is needed
    p, _ = preflight(write(tmp_path, r.addr, up.port, push=False))
    assert p.returncode == 0, p.stdout


def test_wrong_password(upstream, redis_server, tmp_path):
    """A test of another password than the ACL user's: the file holds a wrong one."""
    pw = tmp_path / "wrong.pw"
    pw.write_text("not-the-password\n")
    up = upstream("app")
    p, _ = preflight(write(tmp_path, redis_server.addr, up.port,
                           redis={"username": "moat", "password_file": str(pw)}))
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1 and "AUTH failed: WRONGPASS" in bad[0], p.stdout
    assert "not-the-password" not in p.stdout + p.stderr


def test_redis_down_fails_fast(upstream, tmp_path):
    up = upstream("app")
    p, took = preflight(write(tmp_path, "127.0.0.1:%d" % moatctl.free_port(), up.port))
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1 and "connection refused" in bad[0].lower(), p.stdout
    assert took < 5, took


def test_redis_silent_times_out(upstream, fake_redis, tmp_path):
    """A Redis that accepts and never answers: bounded by the 2 s timeout."""
    f = fake_redis("silent")
    up = upstream("app")
    p, took = preflight(write(tmp_path, f.addr, up.port))
    assert p.returncode == 1, p.stdout
    assert "timed out" in lines_with(p.stdout, "FAIL")[0], p.stdout
    assert took < 8, took


def test_upstream_down_is_reported(upstream, redis_server, tmp_path):
    up = upstream("app")
    dead = moatctl.free_port()
    ov = auth_overrides(redis_server.addr)
    ov["upstreams"] = {"app": {"servers": ["127.0.0.1:%d" % up.port, "127.0.0.1:%d" % dead]}}
    path, _ = moatctl.write_config(tmp_path, ov, upstream_port=up.port)
    p, took = preflight(path)
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1, p.stdout
    assert "upstream app 127.0.0.1:%d" % dead in bad[0] and "refused" in bad[0], bad
    assert lines_with(p.stdout, "upstream app 127.0.0.1:%d: connect (TCP): ok" % up.port)
    assert took < 5, took


def test_tls_redis_and_upstream(upstream, redis_factory, redis_certs, tmp_path):
    """Redis over TLS (verified), and a TLS upstream: its certificate is checked as the
    workers check it (a wrong server_name fails the handshake)."""
    r = redis_factory(tls=redis_certs)
    up = upstream("tls-app", args=["--tls-cert", os.path.join(moatctl.CERTS, "server.crt"),
                                   "--tls-key", os.path.join(moatctl.CERTS, "server.key")])
    ov = auth_overrides(r.addr, redis={"tls": {"enabled": True, "ca": redis_certs["ca"]}})
    ov["upstreams"] = {"app": {"servers": ["127.0.0.1:%d" % up.port],
                               "tls": {"enabled": True, "ca": moatctl.CA,
                                       "server_name": "localhost"}}}
    path, _ = moatctl.write_config(tmp_path, ov)
    p, _ = preflight(path)
    assert p.returncode == 0, p.stdout
    assert lines_with(p.stdout, "connect (TCP, TLS verified, AUTH as moat): ok"), p.stdout
    assert lines_with(p.stdout, "connect (TCP, TLS): ok"), p.stdout
    ov["upstreams"]["app"]["tls"]["server_name"] = "not-this-host.example"
    path, _ = moatctl.write_config(tmp_path, ov)
    p, _ = preflight(path)
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1 and "certificate verification failed" in bad[0], p.stdout


def test_preflight_needs_t(tmp_path):
    path, _ = moatctl.write_config(tmp_path, {})
    p = subprocess.run([moatctl.moat_bin(), "--preflight", "-c", path], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "--preflight goes with -t" in p.stderr, p


def _mode_config(tmp_path, up, redis):
    ov = auth_overrides("unused", redis=redis, sessions={"push_revocation": True})
    del ov["redis"]["address"]
    ov["routes"] = [rl_route("/rl", [RULE])] + ov["routes"]
    path, _ = moatctl.write_config(tmp_path, ov, upstream_port=up.port)
    return path


def test_sentinel_mode(upstream, redis_sentinels, tmp_path):
    """Every sentinel (as moat-sentinel), then the master they name (as moat)."""
    ss = redis_sentinels()
    up = upstream("app")
    path = _mode_config(tmp_path, up, {"mode": "sentinel", "sentinel": {
        "addresses": ss.addresses, "master_name": ss.name}})
    p, _ = preflight(path)
    assert p.returncode == 0, p.stdout
    assert len(lines_with(p.stdout, "SENTINEL get-master-addr-by-name (sentinel mode): ok")) == 3
    assert len(lines_with(p.stdout, "SUBSCRIBE +switch-master (sentinel failover): ok")) == 3
    assert lines_with(p.stdout, "redis master 127.0.0.1:%d: ROLE (sentinel mode): ok"
                      % ss.primary.port), p.stdout
    # a sentinel user without the subscription permission is caught
    redisutil.call(ss.sentinels[1], "ACL", "SETUSER", "moat-sentinel", "-subscribe")
    p, _ = preflight(path)
    assert p.returncode == 1, p.stdout
    bad = lines_with(p.stdout, "FAIL")
    assert len(bad) == 1 and "sentinel %s" % ss.sentinels[1].addr in bad[0], p.stdout
    assert "add +subscribe" in bad[0], bad


def test_cluster_mode(upstream, redis_cluster, tmp_path):
    """Every seed (CLUSTER SLOTS), then every master of the map, as moat."""
    cl = redis_cluster(masters=3)
    up = upstream("app")
    path = _mode_config(tmp_path, up, {"mode": "cluster", "cluster": {"seeds": cl.seeds}})
    p, _ = preflight(path)
    assert p.returncode == 0, p.stdout
    assert len(lines_with(p.stdout, "CLUSTER SLOTS (cluster mode): ok")) == 3, p.stdout
    assert len(lines_with(p.stdout, "ASKING (cluster -ASK redirects): ok")) == 3, p.stdout
    assert len(lines_with(p.stdout, "HGETALL (sessions): ok")) == 3, p.stdout
