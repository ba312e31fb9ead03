"""The tamper-evident audit trail (issue 16 item 3; docs/audit.md): with
log.audit_key_file, audit lines carry seq, prev and an HMAC; `moat audit-verify`
names the first edited, removed, inserted or reordered line; the chain goes on
across a restart, a kill and a logrotate (rename + SIGUSR1).

Audit events here come from the admin listener (drain/ready of a server: one
upstream_admin event each), which any test can produce in any number."""

import http.client
import json
import os
import signal

import moatctl
from moatctl import run_moat, wait_until

KEY_HEX = "5f" * 32


def admin(m, path, method="POST"):
    c = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def make_events(m, up, pairs):
    """2 * pairs upstream_admin audit events; waits until they are in the file."""
    server = "/upstreams/app/127.0.0.1:%d" % up.port
    before = count_lines(m.audit_log_path)
    for _ in range(pairs):
        assert admin(m, server + "/drain") == 200
        assert admin(m, server + "/ready") == 200
    assert wait_until(lambda: count_lines(m.audit_log_path) >= before + 2 * pairs, 5), \
        m.audit_log()


def key_file(tmp_path, text=KEY_HEX + "\n", name="audit.key"):
    p = tmp_path / name
    p.write_text(text)
    os.chmod(p, 0o600)
    return str(p)


def verify(key, *files):
    args = ["audit-verify"] + (["--key", key] if key else []) + list(files)
    return run_moat(args)


def lines_of(path):
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.write(b"".join(lines))
    return path


def chained_moat(moat_factory, up, key, **log):
    return moat_factory({"log": dict({"audit_key_file": key}, **log)}, upstream=up)


def test_chain_verifies_and_names_tampered_lines(upstream, moat_factory, tmp_path):
    up = upstream("app")
    key = key_file(tmp_path)
    m = chained_moat(moat_factory, up, key)
    make_events(m, up, 3)
    assert m.stop() == 0
    log = m.audit_log_path
    ev = m.audit_log()
    assert ev[0]["event"] == "audit_chain_start" and ev[0]["seq"] == 1, ev[0]
    assert ev[0]["prev"] == "0" * 64
    # audit_chain_start, start, certificate_loaded, 3 x (drain, ready), stop
    assert [e["seq"] for e in ev] == list(range(1, 11))
    assert ev[1]["event"] == "start" and ev[-1]["event"] == "stop", ev
    for a, b in zip(ev, ev[1:]):
        assert b["prev"] == a["mac"]
    # the mac field is the last one: the canonical line is what comes before it
    assert all(l.rstrip(b"\n").endswith(b'"}') and b',"mac":"' in l for l in lines_of(log))

    r = verify(key, log)
    assert r.returncode == 0 and r.stdout.startswith("ok: 10 events"), (r.stdout, r.stderr)

    orig = lines_of(log)
    copy = str(tmp_path / "copy.log")

    edited = list(orig)
    edited[3] = edited[3].replace(b'"drain"', b'"drair"', 1) if b'"drain"' in edited[3] \
        else edited[3].replace(b'"ready"', b'"reade"', 1)
    assert edited[3] != orig[3]
    r = verify(key, write_lines(copy, edited))
    assert r.returncode == 1 and "copy.log:4: edited (mac mismatch)" in r.stdout, r.stdout

    r = verify(key, write_lines(copy, orig[:3] + orig[4:]))
    assert r.returncode == 1 and "copy.log:4: removed (seq 4 expected, got 5)" in r.stdout, r.stdout

    r = verify(key, write_lines(copy, orig[:5] + [orig[2]] + orig[5:]))
    assert r.returncode == 1 and "copy.log:6: inserted" in r.stdout, r.stdout

    r = verify(key, write_lines(copy, orig[:2] + [orig[3], orig[2]] + orig[4:]))
    assert r.returncode == 1 and "copy.log:3: reordered (seq 3 expected, got 4)" in r.stdout, \
        r.stdout

    wrong = key_file(tmp_path, "6a" * 32 + "\n", name="wrong.key")
    r = verify(wrong, log)
    assert r.returncode == 1 and "audit.log:1: edited (mac mismatch)" in r.stdout, r.stdout


def test_chain_continues_after_restart_and_kill(upstream, moat_factory, tmp_path):
    up = upstream("app")
    key = key_file(tmp_path)
    m = chained_moat(moat_factory, up, key)
    make_events(m, up, 1)
    assert m.stop() == 0
    state = json.loads(open(m.audit_log_path + ".chain").read())
    assert state["seq"] == 6 and state["mac"] == m.audit_log()[-1]["mac"]  # ... stop

    m.start()  # a clean restart: from <audit>.chain
    make_events(m, up, 1)
    m.stop(sig=signal.SIGKILL)  # no head saved: the next start reads the log's last line
    m.start()
    make_events(m, up, 1)
    assert m.stop() == 0

    ev = m.audit_log()
    # chain start, 3 x (start, certificate_loaded, drain, ready), 2 stops (the killed run
    # wrote none)
    assert [e["seq"] for e in ev] == list(range(1, 16)), ev
    assert [e["event"] for e in ev].count("audit_chain_start") == 1
    r = verify(key, m.audit_log_path)
    assert r.returncode == 0 and r.stdout.startswith("ok: 15 events"), (r.stdout, r.stderr)


def test_logrotate_old_and_new_file_verify_together(upstream, moat_factory, tmp_path):
    up = upstream("app")
    key = key_file(tmp_path)
    m = chained_moat(moat_factory, up, key)
    make_events(m, up, 2)
    log = m.audit_log_path
    os.rename(log, log + ".1")
    m.send_signal(signal.SIGUSR1)
    m.stopped_by_test = False
    assert wait_until(lambda: "log files reopened" in m.stderr(), 5), m.stderr()
    state = json.loads(open(log + ".chain").read())  # the head, saved at SIGUSR1
    assert state["seq"] == 7  # chain start, start, certificate_loaded, 2 x (drain, ready)
    make_events(m, up, 1)
    assert m.stop() == 0
    new = m.audit_log()
    assert new[0]["seq"] == 8 and new[0]["event"] == "upstream_admin", new[0]
    r = verify(key, log + ".1", log)
    assert r.returncode == 0 and r.stdout.startswith("ok: 10 events"), (r.stdout, r.stderr)
    # the wrong order: the old file's first line starts a chain, so the break is reported
    r = verify(key, log, log + ".1")
    assert "audit.log.1:1: note: a new chain starts here" in r.stdout and "2 chains" in r.stdout


def test_missing_state_starts_a_new_chain_reported(upstream, moat_factory, tmp_path):
    up = upstream("app")
    key = key_file(tmp_path)
    m = chained_moat(moat_factory, up, key)
    make_events(m, up, 1)
    assert m.stop() == 0
    os.unlink(m.audit_log_path + ".chain")
    m.start()
    make_events(m, up, 1)
    assert m.stop() == 0
    ev = m.audit_log()
    # chain start, start, certificate_loaded, drain, ready, stop; then the new chain
    assert ev[6]["event"] == "audit_chain_start" and ev[6]["seq"] == 1
    assert ".chain" in ev[6]["reason"]
    r = verify(key, m.audit_log_path)
    assert r.returncode == 0, r.stdout
    assert "audit.log:7: note: a new chain starts here" in r.stdout and "2 chains" in r.stdout


def test_audit_on_stdout_is_chained(upstream, moat_factory, tmp_path):
    up = upstream("app")
    key = key_file(tmp_path)
    m = chained_moat(moat_factory, up, key, audit="stdout")
    server = "/upstreams/app/127.0.0.1:%d" % up.port
    assert admin(m, server + "/drain") == 200
    assert m.stop() == 0
    out = [json.loads(l) for l in open(m.stdout_path) if l.startswith("{")]
    assert out[0]["event"] == "audit_chain_start" and "not a file" in out[0]["reason"]
    assert out[1]["event"] == "start" and out[1]["prev"] == out[0]["mac"]
    assert out[2]["event"] == "certificate_loaded" and out[2]["prev"] == out[1]["mac"]
    assert out[3]["event"] == "upstream_admin" and out[3]["prev"] == out[2]["mac"]
    assert out[4]["event"] == "stop"
    r = verify(key, m.stdout_path)
    assert r.returncode == 0 and r.stdout.startswith("ok: 5 events"), (r.stdout, r.stderr)


def test_without_key_no_chain_fields(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory(upstream=up)
    make_events(m, up, 1)
    assert m.stop() == 0
    ev = m.audit_log()
    for e in ev:
        assert "mac" not in e and "seq" not in e and "prev" not in e, e
    assert [e["event"] for e in ev] == ["start", "certificate_loaded", "upstream_admin",
                                        "upstream_admin", "stop"], ev
    assert not os.path.exists(m.audit_log_path + ".chain")
    r = verify(None, m.audit_log_path)
    assert r.returncode == 1 and "not a chained audit line" in r.stdout


def test_short_key_refused(upstream, moat_factory, tmp_path):
    up = upstream("app")
    key = key_file(tmp_path, "tooshort\n")
    path, cfg = moatctl.write_config(tmp_path, {"log": {"audit_key_file": key}},
                                     upstream_port=up.port, name="short.yaml")
    r = run_moat(["-c", path, "-t"])
    assert r.returncode == 1 and "log.audit_key_file" in r.stderr, r.stderr
