"""log.syslog (issue 16 item 2; docs/logging.md): the access and audit streams, besides
their files, to a real rsyslogd over UDP, TCP and TLS as RFC 5424 messages, kept in a
disk spool while the receiver is away, never slowing traffic when it is dead.

Every wait polls with a generous deadline; nothing here asserts on timing."""

import http.client
import json
import os
import re
import shutil
import subprocess

import pytest

import moatctl
import tlsutil
from moatctl import metric_sum, metrics, run_moat, wait_until

CA = moatctl.CA
DEV_CERTS = {"ca": CA, "cert": os.path.join(moatctl.CERTS, "server.crt"),
             "key": os.path.join(moatctl.CERTS, "server.key")}


def syslog_moat(moat_factory, up, rs, workers=1, **syslog):
    cfg = dict({"address": rs.address, "transport": rs.transport}, **syslog)
    return moat_factory({"workers": workers, "log": {"syslog": cfg}}, upstream=up)


def get(m, n, path="/s"):
    """n requests on one kept-alive connection; every one must be answered 200."""
    with moatctl.KeepAliveClient(m.https_port) as c:
        for i in range(n):
            r = c.request("%s/%d" % (path, i))
            assert r.status == 200, r


def access_msgs(rs):
    return [json.loads(x[6]) for x in rs.messages("access") if x[0] is not None]


def wait_access(rs, n, timeout=30):
    got = wait_until(lambda: len(access_msgs(rs)) >= n, timeout)
    assert got, "rsyslog received %d access messages, want %d:\n%s\n%s" % (
        len(access_msgs(rs)), n, "\n".join(rs.raw()[-5:]),
        moatctl.read_text(rs.log_path))
    return access_msgs(rs)


def check_rfc5424(rs, m, app="moat", facility=16):
    msgs = rs.messages()
    assert msgs and all(x[0] is not None for x in msgs), msgs[:3]
    for pri, _, host, a, pid, msgid, msg in msgs:
        sev = 6 if msgid == "access" else 5  # info, notice
        assert int(pri) == facility * 8 + sev and a == app and int(pid) == m.pid, (pri, a, pid)
        json.loads(msg)
    ids = [json.loads(x[6]).get("request_id") for x in msgs if x[5] == "access"]
    assert len(ids) == len(set(ids)), "a line was sent twice"


def test_udp_delivers_access_and_audit(upstream, moat_factory, rsyslog):
    rs = rsyslog("udp")
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs)
    get(m, 10)
    got = wait_access(rs, 10)
    # the same lines as the file, without the newline
    assert [e["request_id"] for e in got] == [e["request_id"] for e in m.wait_access_log(10)]
    assert wait_until(lambda: rs.messages("audit"), 10), rs.raw()
    check_rfc5424(rs, m)
    assert json.loads(rs.messages("audit")[0][6])["event"] == "start"
    mt = metrics(m)
    assert metric_sum(mt, "moat_syslog_sent_total", stream="access") >= 10
    assert mt["moat_syslog_connected"] == 1


def test_udp_long_lines_are_cut_and_counted(upstream, moat_factory, rsyslog):
    rs = rsyslog("udp")
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, max_datagram=480)
    get(m, 3, path="/" + "p" * 600)
    assert wait_until(lambda: len(rs.raw()) >= 4, 30), rs.raw()
    assert all(len(l.encode()) <= 480 for l in rs.raw())
    assert wait_until(lambda: metric_sum(metrics(m), "moat_syslog_truncated_total",
                                         stream="access") >= 3, 10)


def test_tcp_octet_counting_parsed_by_rsyslog(upstream, moat_factory, rsyslog):
    rs = rsyslog("tcp")
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, facility="local3", app_name="edge-proxy",
                    hostname="gw1.example")
    get(m, 20)
    got = wait_access(rs, 20)
    assert [e["path"] for e in got] == ["/s/%d" % i for i in range(20)]
    check_rfc5424(rs, m, app="edge-proxy", facility=19)
    parsed = [p for p in rs.parsed() if p[5] == "access"]
    assert parsed[0][:6] == ("local3", "info", "gw1.example", "edge-proxy", str(m.pid),
                             "access")
    assert json.loads(parsed[0][6])["path"] == "/s/0"


@pytest.mark.parametrize("server_name", [None, "localhost"])
def test_tls_receiver_verified(upstream, moat_factory, rsyslog, server_name):
    rs = rsyslog("tls", certs=DEV_CERTS)
    up = upstream("app")
    # without server_name, 127.0.0.1 is checked against the certificate's IP SAN
    m = syslog_moat(moat_factory, up, rs, ca_file=CA, server_name=server_name,
                    streams=["access"])
    get(m, 15)
    wait_access(rs, 15)
    check_rfc5424(rs, m)
    assert not rs.messages("audit")  # streams: [access]
    assert metrics(m)["moat_syslog_connected"] == 1


def test_tls_wrong_server_name_is_refused(upstream, moat_factory, rsyslog):
    rs = rsyslog("tls", certs=DEV_CERTS)
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, ca_file=CA, server_name="other.example")
    get(m, 3)
    assert wait_until(lambda: metrics(m)["moat_syslog_connect_errors_total"] >= 1, 30)
    assert wait_until(lambda: "hostname mismatch" in m.stderr(), 10), m.stderr()
    assert rs.raw() == []


def test_tls_wrong_ca_is_refused(upstream, moat_factory, rsyslog, tmp_path):
    rs = rsyslog("tls", certs=DEV_CERTS)
    pki = tlsutil.PKI(tmp_path / "pki")
    other = pki.ca("other-ca", "/CN=moat test other ca", key="ec")
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, ca_file=other.cert)
    get(m, 10)  # traffic is unaffected
    assert wait_until(lambda: metrics(m)["moat_syslog_connect_errors_total"] >= 2, 30)
    mt = metrics(m)
    assert mt["moat_syslog_connected"] == 0
    assert metric_sum(mt, "moat_syslog_sent_total") == 0
    assert mt["moat_syslog_queue_bytes"] > 0  # held for when the receiver can be trusted
    assert rs.raw() == []
    err = m.stderr()
    assert "certificate verify failed" in err, err
    assert len(re.findall(r"syslog: 127\.0\.0\.1:\d+: ", err)) == 1, err  # once per outage


def test_receiver_restart_loses_nothing(upstream, moat_factory, rsyslog, tmp_path):
    rs = rsyslog("tcp")
    up = upstream("app")
    spool = str(tmp_path / "spool")
    m = syslog_moat(moat_factory, up, rs, spool_dir=spool)
    get(m, 20, path="/a")
    wait_access(rs, 20)
    rs.stop()
    get(m, 50, path="/b")  # while the receiver is down: spooled
    assert wait_until(lambda: metrics(m)["moat_syslog_spool_bytes"] > 0, 30)
    files = os.listdir(spool)
    assert files and all(os.stat(os.path.join(spool, f)).st_mode & 0o777 == 0o600
                         for f in files)
    rs.start()
    got = wait_access(rs, 70, timeout=60)
    assert [e["path"] for e in got] == (["/a/%d" % i for i in range(20)] +
                                        ["/b/%d" % i for i in range(50)])
    assert wait_until(lambda: metrics(m)["moat_syslog_spool_bytes"] == 0, 30)
    assert metric_sum(metrics(m), "moat_syslog_dropped_total") == 0
    assert "reachable again" in m.stderr()


def test_dead_receiver_does_not_slow_traffic(upstream, moat_factory, rsyslog):
    rs = rsyslog("tcp", start=False)  # nothing listens on its port yet
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, queue="64KiB", streams=["access"])
    get(m, 400)  # ~550 bytes each: well over the 64 KiB queue
    m.wait_access_log(400)  # flushed to the file, so handed to syslog too
    mt = metrics(m)
    assert metric_sum(mt, "moat_syslog_dropped_total", stream="access", reason="queue_full") > 0
    assert mt["moat_syslog_queue_bytes"] <= 65536
    kept = 400 - metric_sum(mt, "moat_syslog_dropped_total")
    rs.start()
    got = wait_access(rs, kept, timeout=60)
    seen = [int(e["path"].rsplit("/", 1)[1]) for e in got]
    assert len(seen) == kept and seen[0] == 0 and seen == sorted(set(seen)), seen  # in order
    err = m.stderr()
    assert len(re.findall(r"reachable again after [\d.]+ s; [1-9]\d* lines could not be kept",
                          err)) == 1, err


def test_audit_chain_arrives_in_order(upstream, moat_factory, rsyslog, tmp_path):
    rs = rsyslog("tcp")
    up = upstream("app")
    key = tmp_path / "audit.key"
    key.write_text("5f" * 32 + "\n")
    os.chmod(key, 0o600)
    m = moat_factory({"workers": 1, "log": {"audit_key_file": str(key), "syslog": {
        "address": rs.address, "transport": "tcp", "streams": ["audit"]}}}, upstream=up)
    server = "/upstreams/app/127.0.0.1:%d" % up.port
    for _ in range(5):
        for action in ("drain", "ready"):
            c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
            c.request("POST", server + "/" + action)
            assert c.getresponse().status == 200
            c.close()
    assert m.stop() == 0  # the stop event is sent before exit
    assert wait_until(lambda: any('"event":"stop"' in x[6] for x in rs.messages("audit")), 30)
    lines = [x[6] for x in rs.messages("audit")]
    with open(m.audit_log_path) as f:
        assert lines == f.read().splitlines()  # the same lines, in the chain's order
    received = tmp_path / "received.log"
    received.write_text("".join(l + "\n" for l in lines))
    r = run_moat(["audit-verify", "--key", str(key), str(received)])
    assert r.returncode == 0 and r.stdout.startswith("ok: %d events" % len(lines)), r.stdout


def test_reload_applies_new_syslog_settings(upstream, moat_factory, rsyslog):
    rs = rsyslog("tcp")
    rs2 = rsyslog("tcp")
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs)
    get(m, 5, path="/one")
    wait_access(rs, 5)
    m.cfg["log"]["syslog"] = {"address": rs2.address, "transport": "tcp", "app_name": "moat2"}
    with open(m.config_path, "w") as f:
        json.dump(m.cfg, f)
    m.reload()
    assert wait_until(lambda: "generation 2 is live" in m.stderr(), 20), m.stderr()
    get(m, 5, path="/two")
    got = wait_access(rs2, 5)
    assert [e["path"] for e in got] == ["/two/%d" % i for i in range(5)]
    assert all(x[3] == "moat2" for x in rs2.messages())
    assert [e["path"] for e in access_msgs(rs)] == ["/one/%d" % i for i in range(5)]


def test_bad_syslog_settings_are_refused(tmp_path):
    for overrides, needle in [
        ({"address": "unix:/dev/log"}, "log.syslog.address: must be host:port"),
        ({"address": "127.0.0.1:514", "transport": "udp", "ca_file": CA},
         "log.syslog.ca_file: only used with transport: tls"),
        ({"address": "127.0.0.1:514", "facility": "local9"}, "log.syslog.facility"),
        ({"address": "127.0.0.1:514", "streams": ["error"]}, "must be access or audit"),
        ({"address": "127.0.0.1:514", "queue": "1KiB"}, "log.syslog.queue"),
    ]:
        path, _ = moatctl.write_config(tmp_path, {"log": {"syslog": overrides}})
        p = run_moat(["-t", "-c", path])
        assert p.returncode == 1 and needle in p.stderr, (overrides, p.stderr)


def test_spool_survives_a_restart_of_moat(upstream, moat_factory, rsyslog, tmp_path):
    rs = rsyslog("tcp", start=False)
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, spool_dir=str(tmp_path / "spool"))
    get(m, 30)
    m.wait_access_log(30)
    assert m.stop() == 0  # what is still queued at exit goes to the spool
    assert "still unreachable at exit" in m.stderr()
    rs.start()
    m.start()
    got = wait_access(rs, 30, timeout=60)
    assert [e["path"] for e in got][:30] == ["/s/%d" % i for i in range(30)]
    assert wait_until(lambda: [x for x in rs.messages("audit") if '"event":"start"' in x[6]][1:],
                      30)
    ev = [json.loads(x[6])["event"] for x in rs.messages("audit")]
    first = ev.index("start")
    assert first < ev.index("stop") < ev.index("start", first + 1), ev  # in order, none lost


def test_idle_connection_is_kept_and_file_targets_may_be_off(upstream, moat_factory, rsyslog):
    """write_timeout bounds a stalled write, not silence; syslog works with the files off."""
    rs = rsyslog("tls", certs=DEV_CERTS)
    up = upstream("app")
    m = moat_factory({"workers": 1, "log": {"access": "off", "audit": "off", "syslog": {
        "address": rs.address, "ca_file": CA, "write_timeout": "300ms"}}}, upstream=up)
    get(m, 2, path="/before")
    wait_access(rs, 2)
    assert not wait_until(lambda: "syslog: 127.0.0.1" in m.stderr(), 3)  # idle, not stalled
    get(m, 2, path="/after")
    got = wait_access(rs, 4)
    assert [e["path"] for e in got] == ["/before/0", "/before/1", "/after/0", "/after/1"]
    assert metrics(m)["moat_syslog_connect_errors_total"] == 0


def test_full_spool_keeps_order_and_counts_drops(upstream, moat_factory, rsyslog, tmp_path):
    rs = rsyslog("tcp", start=False)
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, spool_dir=str(tmp_path / "spool"), spool_max="1MiB",
                    queue="64KiB", streams=["access"])
    n = 2600  # ~1.5 MB of lines: over the spool and the queue together
    get(m, n)
    m.wait_access_log(n, timeout=30)
    mt = metrics(m)
    dropped = metric_sum(mt, "moat_syslog_dropped_total", stream="access", reason="queue_full")
    assert dropped > 0 and mt["moat_syslog_spool_bytes"] <= 1 << 20
    rs.start()
    got = wait_access(rs, n - dropped, timeout=90)
    seen = [int(e["path"].rsplit("/", 1)[1]) for e in got]
    assert len(seen) == n - dropped and seen[0] == 0 and seen == sorted(set(seen)), seen[:5]


def test_reload_with_unusable_tls_files_keeps_the_sender(upstream, moat_factory, rsyslog,
                                                         tmp_path):
    rs = rsyslog("tls", certs=DEV_CERTS)
    up = upstream("app")
    m = syslog_moat(moat_factory, up, rs, ca_file=CA)
    get(m, 3, path="/one")
    wait_access(rs, 3)
    m.cfg["log"]["syslog"]["ca_file"] = str(tmp_path / "missing-ca.pem")
    with open(m.config_path, "w") as f:
        json.dump(m.cfg, f)
    m.reload()
    assert wait_until(lambda: "generation 2 is live" in m.stderr(), 20), m.stderr()
    assert "log.syslog.ca_file: cannot load" in m.stderr()
    get(m, 3, path="/two")
    got = wait_access(rs, 6)
    assert [e["path"] for e in got][3:] == ["/two/0", "/two/1", "/two/2"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_metrics_pass_promtool(upstream, moat_factory, rsyslog):
    rs = rsyslog("tcp")
    m = syslog_moat(moat_factory, upstream("app"), rs)
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
    c.request("GET", "/metrics")
    body = c.getresponse().read()
    c.close()
    assert b"moat_syslog_connected" in body
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       timeout=30)
    assert p.returncode == 0 and not p.stdout and not p.stderr, (p.stdout, p.stderr)
