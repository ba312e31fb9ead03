"""The Prometheus exposition of /metrics (docs/metrics.md): `promtool check metrics`
accepts it, and each family moves as traffic, handshakes, rate limits, sessions and
reloads happen: requests by route, status class and protocol, histograms whose
buckets are cumulative with +Inf equal to _count, auth results by reason, rate-limit
decisions by rule, TLS handshakes by version and cipher and failures by reason, Redis
connections and latency by role, reloads and the generation, the certificate's
notAfter, build_info and process_*. The example alert rules pass `promtool check
rules` and `promtool test rules`."""

import calendar
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import moatctl
from redisutil import put_session

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                "(scripts/install-deps.sh --test: Debian package prometheus)")

ROUTES = [
    {"id": "public", "match": {"path_prefix": "/public"}, "auth": "none", "upstream": "app",
     "rate_limit": [{"id": "burst3", "key": "ip", "rate": "1/h", "burst": 3},
                    {"id": "shared", "key": "ip", "rate": "1000/s", "scope": "global"}]},
    {"match": {"path_prefix": "/private"}, "auth": "required", "upstream": "app"},
    {"match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"},
]

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(m):
    """The /metrics text of m, checked by promtool (exit 0, no lint problem)."""
    text = subprocess.run(["curl", "-sf", "http://127.0.0.1:%d/metrics" % m.admin_port],
                          capture_output=True, text=True, timeout=10, check=True).stdout
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        "promtool check metrics:\n%s%s" % (p.stdout, p.stderr)
    return text


def series(text):
    """[(name, {label: value}, float)] of an exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        mt = LINE.match(line)
        assert mt, line
        out.append((mt.group(1), dict(LABEL.findall(mt.group(2) or "")), float(mt.group(3))))
    return out


def value(ss, name, **labels):
    """The sum of name's series whose labels include labels."""
    return sum(v for n, ls, v in ss if n == name and all(ls.get(k) == w for k, w in labels.items()))


def check_histograms(ss):
    """Every histogram: buckets cumulative per label set, +Inf == _count, _sum >= 0."""
    groups = {}
    for n, ls, v in ss:
        if n.endswith("_bucket"):
            key = (n[:-7], tuple(sorted((k, w) for k, w in ls.items() if k != "le")))
            groups.setdefault(key, []).append((float(ls["le"]), v))
    assert groups
    for (base, key), buckets in groups.items():
        vals = [v for _, v in sorted(buckets)]
        assert vals == sorted(vals), (base, key, buckets)
        labels = dict(key)
        assert sorted(buckets)[-1][0] == float("inf")
        assert vals[-1] == value(ss, base + "_count", **labels), (base, key)
        assert value(ss, base + "_sum", **labels) >= 0
    return groups


def curl(m, path, *args):
    """One request with curl (its own connection); the status code."""
    out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", *args,
                          "https://127.0.0.1:%d%s" % (m.https_port, path)],
                         capture_output=True, text=True, timeout=15).stdout
    return int(out or 0)


def cert_not_after(path):
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path],
                         capture_output=True, text=True, check=True).stdout
    when = out.strip().split("=", 1)[1]  # "Jan  1 00:00:00 2030 GMT"
    return calendar.timegm(time.strptime(when, "%b %d %H:%M:%S %Y %Z"))


@pytest.fixture
def env(upstream, start_moat, redis_server):
    up = upstream("app")
    m = start_moat({"redis": {"address": redis_server.addr, "timeout": moatctl.TEST_REDIS_TIMEOUT},
                    "sessions": {}, "routes": ROUTES}, upstream=up)
    # both workers' session clients up (the gauge this file tests, checked again below)
    assert moatctl.wait_until(lambda: value(series(scrape(m)), "moat_redis_connected",
                                            role="sessions") == 2, 15), m.stderr()
    return m, redis_server


def test_families_move_with_traffic(env):
    m, redis = env
    before = series(scrape(m))
    tok = put_session(redis, tenant="acme", user="alice")

    assert curl(m, "/public/a", "--http1.1") == 200
    assert curl(m, "/public/b", "--http2") == 200
    assert curl(m, "/public/c", "--http1.1") == 200
    assert curl(m, "/public/d", "--http1.1") == 429  # burst3 spent
    assert curl(m, "/other", "--http2") == 200
    assert curl(m, "/private/x", "--http1.1") == 401  # no token
    assert curl(m, "/private/x", "--http1.1", "-H", "Authorization: Bearer short") == 401
    assert curl(m, "/private/x", "--http2", "-H", "Authorization: Bearer " + tok) == 200
    # a failed handshake: plain HTTP on the TLS port
    with socket.create_connection(("127.0.0.1", m.https_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            s.recv(100)
        except OSError:
            pass

    def settled():
        ss = series(scrape(m))
        return value(ss, "moat_tls_handshake_failures_total", reason="http_request") >= 1 and \
            value(ss, "moat_http_requests_total") - value(before, "moat_http_requests_total") >= 8
    assert moatctl.wait_until(settled, 5)
    ss = series(scrape(m))

    def grew(name, **labels):
        return value(ss, name, **labels) - value(before, name, **labels)

    # requests by route id (given, or the match as written), class and protocol
    req = "moat_http_requests_total"
    assert grew(req, route="public", code_class="2xx", protocol="http/1.1") == 2
    assert grew(req, route="public", code_class="2xx", protocol="h2") == 1
    assert grew(req, route="public", code_class="4xx", protocol="http/1.1") == 1
    assert grew(req, route="/", code_class="2xx", protocol="h2") == 1
    assert grew(req, route="/private", code_class="4xx") == 2
    assert grew(req, route="/private", code_class="2xx", protocol="h2") == 1
    # histograms: consistent, and counting what happened
    groups = check_histograms(ss)
    assert ("moat_request_duration_seconds", (("route", "public"),)) in groups
    assert grew("moat_request_duration_seconds_count", route="public") == 4
    assert grew("moat_request_duration_seconds_count", route="/private") == 3
    assert grew("moat_upstream_response_duration_seconds_count", pool="app") == 5
    assert value(ss, "moat_upstream_response_duration_seconds_sum", pool="app") > 0
    assert grew("moat_redis_command_duration_seconds_count", role="sessions") >= 1
    assert grew("moat_redis_command_duration_seconds_count", role="ratelimit") >= 1
    # auth, rate limits
    auth = "moat_auth_results_total"
    assert grew(auth, result="rejected", reason="missing") == 1
    assert grew(auth, result="rejected", reason="malformed") == 1
    assert grew(auth, result="accepted", reason="ok") == 1
    rl = "moat_ratelimit_decisions_total"
    assert grew(rl, rule="burst3", result="allowed") == 3
    assert grew(rl, rule="burst3", result="rejected") == 1
    assert grew(rl, rule="shared", result="allowed") == 3
    # TLS: every successful handshake by version and cipher; the failure by reason
    hs = [(ls["version"], ls["cipher"]) for n, ls, v in ss
          if n == "moat_tls_handshakes_total" and v > 0]
    assert ("TLSv1.3", "TLS_AES_256_GCM_SHA384") in hs or ("TLSv1.3", "TLS_AES_128_GCM_SHA256") \
        in hs, hs
    assert grew("moat_tls_handshakes_total") >= 8
    assert grew("moat_tls_handshake_failures_total", reason="http_request") == 1
    # Redis: both workers' session clients are up
    assert value(ss, "moat_redis_connected", role="sessions") == 2
    assert value(ss, "moat_redis_connected", role="ratelimit") >= 1
    # unlabelled families kept
    assert grew("moat_requests_received_total") >= 8
    assert value(ss, "moat_connections_accepted_total") >= 9


def test_build_process_and_certificate(env):
    m, _ = env
    ss = series(scrape(m))
    info = [ls for n, ls, v in ss if n == "moat_build_info" and v == 1]
    assert len(info) == 1 and info[0]["version"] and info[0]["openssl"].startswith("3.") and \
        info[0]["libevent"].startswith("2.1"), info
    crt = m.cfg["tls"]["certificates"][0]["cert"]
    certs = {ls["name"]: v for n, ls, v in ss if n == "moat_tls_certificate_not_after_seconds"}
    assert len(certs) == 1, certs
    assert list(certs.values())[0] == cert_not_after(crt)
    assert os.path.basename(list(certs)[0]) == os.path.basename(crt)
    now = time.time()
    start = value(ss, "process_start_time_seconds")
    assert now - 120 < start <= now + 1
    assert 0 <= value(ss, "process_cpu_seconds_total") < 600  # ticks of 10 ms: 0 at first
    assert 1 << 20 < value(ss, "process_resident_memory_bytes") < 1 << 32
    assert value(ss, "process_virtual_memory_bytes") >= value(ss, "process_resident_memory_bytes")
    assert 5 < value(ss, "process_open_fds") <= value(ss, "process_max_fds")
    assert value(ss, "moat_config_generation") == 1
    loaded = value(ss, "moat_config_last_reload_success_timestamp_seconds")
    assert loaded == pytest.approx(start, abs=2)


def test_reload_counters_and_generation(env):
    m, _ = env
    ss = series(scrape(m))
    assert value(ss, "moat_config_reloads_total", result="success") == 0
    t0 = time.time()
    m.reload()
    assert moatctl.wait_until(
        lambda: value(series(scrape(m)), "moat_config_generation") == 2, 10), m.stderr()
    ss = series(scrape(m))
    assert value(ss, "moat_config_reloads_total", result="success") == 1
    assert value(ss, "moat_config_reloads_total", result="failure") == 0
    assert value(ss, "moat_config_last_reload_success_timestamp_seconds") >= int(t0)

    good = open(m.config_path).read()
    cfg = json.loads(good)
    cfg["routes"][0]["upstream"] = "nowhere"  # refused: no such pool
    with open(m.config_path, "w") as f:
        json.dump(cfg, f)
    try:
        m.reload()
        assert moatctl.wait_until(lambda: value(series(scrape(m)), "moat_config_reloads_total",
                                                result="failure") == 1, 10), m.stderr()
    finally:
        with open(m.config_path, "w") as f:
            f.write(good)
    ss = series(scrape(m))
    assert value(ss, "moat_config_generation") == 2
    assert value(ss, "moat_config_reloads_total", result="success") == 1
    # counters of a config label survive the reload: no series went backwards
    assert curl(m, "/public/z", "--http1.1") == 200
    after = series(scrape(m))
    assert value(after, "moat_http_requests_total", route="public") >= \
        value(ss, "moat_http_requests_total", route="public") + 1


def test_alert_rules_pass_promtool():
    rules = os.path.join(moatctl.REPO, "conf", "moat-alerts.yml")
    p = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    tests = os.path.join(moatctl.REPO, "tests", "integration", "data", "moat-alerts.test.yml")
    p = subprocess.run([PROMTOOL, "test", "rules", tests], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(tests))
    assert p.returncode == 0, p.stdout + p.stderr
