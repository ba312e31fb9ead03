"""log.format (operational messages as JSON), log.access_query (query strings only when
asked for) and the audit stream's own default destination (issue 16 items 3 and 4)."""
import json
import os

import moatctl
from moatctl import curl, run_moat, wait_until


def test_operational_messages_as_json(upstream, moat_factory):
    m = moat_factory({"log": {"format": "json"}}, upstream=upstream("app"))
    m.reload()
    assert wait_until(lambda: "generation 2 is live" in m.stderr(), 10), m.stderr()
    lines = [json.loads(x) for x in m.stderr().splitlines() if x.strip()]
    assert any(e["level"] == "info" and "generation 2 is live" in e["msg"] for e in lines), lines
    assert all(set(e) == {"time", "level", "pid", "msg"} for e in lines), lines
    assert all(e["pid"] == m.proc.pid for e in lines), lines


def test_query_strings_are_not_logged_by_default(upstream, moat_factory):
    m = moat_factory(upstream=upstream("app"))
    assert curl(m.https_port, "/search?token=s3cret&q=1").status == 200
    line = m.wait_access_log(1)[0]
    assert line["path"] == "/search" and "query" not in line, line
    assert "s3cret" not in moatctl.read_text(m.access_log_path)


def test_query_strings_logged_when_configured(upstream, moat_factory):
    m = moat_factory({"log": {"access_query": True}}, upstream=upstream("app"))
    assert curl(m.https_port, "/search?q=%22x%22&page=2").status == 200
    assert curl(m.https_port, "/plain").status == 200
    # two connections may land on two workers, whose lines reach the file in either order
    by_path = {e["path"]: e for e in m.wait_access_log(2)}
    assert by_path["/search"]["query"] == "q=%22x%22&page=2", by_path
    assert "query" not in by_path["/plain"], by_path


def test_audit_default_is_its_own_file(upstream, tmp_path):
    """Without log.audit, audit events go to /var/log/moat/audit.log, not to stderr with
    the operational messages; a missing directory stops the start with a clear error."""
    if os.path.isdir("/var/log/moat"):
        import pytest
        pytest.skip("/var/log/moat exists on this machine: the default would write there")
    path, cfg = moatctl.write_config(tmp_path, None, upstream_port=upstream("app").port)
    del cfg["log"]["audit"]
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = run_moat(["-c", path])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "log.audit: /var/log/moat/audit.log: No such file or directory" in r.stderr, r.stderr
    assert "create the directory" in r.stderr, r.stderr
