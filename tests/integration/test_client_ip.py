"""The real client IP (issue 15 item 5): PROXY protocol v1/v2 from the sources in
listen.proxy_protocol, X-Forwarded-For from identity.trusted_proxies (rightmost
untrusted address), used by ip rate limits, per-IP connection caps, the access log,
and header:NAME rules without their header (missing: ip | skip | deny).

The test client is always 127.0.0.1 (or another 127/8 source): it plays the load
balancer. PROXY headers are built here, sent on the TCP socket, then TLS runs over
the same socket."""

import socket
import ssl
import struct
import time

import identutil as iu
import moatctl
import rlutil
from moatctl import Conn
from rlutil import rl_route

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp_v1(src, dst="127.0.0.1", sport=40000, dport=443):
    fam = "TCP6" if ":" in src else "TCP4"
    if fam == "TCP6" and ":" not in dst:
        dst = "::1"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def pp_v2(src=None, dst="127.0.0.1", sport=40000, dport=443, tlvs=b""):
    """A v2 PROXY header (src None: LOCAL, as a balancer's health check sends)."""
    if src is None:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    af = socket.AF_INET6 if ":" in src else socket.AF_INET
    if af == socket.AF_INET6 and ":" not in dst:
        dst = "::1"
    addrs = socket.inet_pton(af, src) + socket.inet_pton(af, dst) + struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    fam = 0x21 if af == socket.AF_INET6 else 0x11
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def pp_connect(port, header, source=None, timeout=10.0):
    """TCP to moat, the PROXY header, then TLS on the same socket: a Conn."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        if source:
            raw.bind((source, 0))
        raw.connect(("127.0.0.1", port))
        raw.sendall(header)
        s = moatctl.tls_context().wrap_socket(raw, server_hostname="localhost")
    except Exception:
        raw.close()
        raise
    s.settimeout(timeout)
    return Conn(s)


def pp_get(port, header, path="/echo", headers=()):
    c = pp_connect(port, header)
    try:
        return rlutil.get(c, path, headers, close=True)
    finally:
        c.close()


def served(port, header, path="/echo"):
    """True if a request after header (None: no header) got any HTTP response, False
    if moat closed the connection (TLS fails, or EOF before a response)."""
    try:
        c = pp_connect(port, header) if header is not None else Conn(
            rlutil.tls_connect_from(port))
    except (ssl.SSLError, ConnectionError, OSError) as e:
        if isinstance(e, (socket.timeout, TimeoutError)):
            raise AssertionError("handshake neither completed nor refused")
        return False
    try:
        c.request("GET", path, [("Connection", "close")])
        c.read_response()
        return True
    except (ConnectionError, OSError, ssl.SSLError, AssertionError):
        return False  # TLS 1.3: the handshake may finish before moat closed it
    finally:
        c.close()


def closed_within(sock, seconds):
    """True if the peer closes sock (EOF or reset) within seconds."""
    sock.settimeout(seconds)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def pp_overrides(routes, sources, limits=None, trusted=None, **extra):
    ov = rlutil.overrides(routes, limits=limits, **extra)
    ov["listen"] = {"proxy_protocol": {"enabled": True, "sources": sources}}
    if trusted is not None:
        ov["identity"] = {"trusted_proxies": trusted}
    return ov


def ips_logged(m, path_prefix, n):
    lines = m.wait_access_log(n, pred=lambda e: e.get("path", "").startswith(path_prefix))
    return [e["client_ip"] for e in lines]


IP_RULE = [rl_route("/rl", [{"key": "ip", "rate": "1/h", "burst": 2, "id": "perip"}])]


def test_proxy_v1_v2_client_ip_and_ip_buckets(upstream, start_moat):
    """From a trusted source, the PROXY header's address is the client: the access log
    shows it, the upstream gets it in X-Forwarded-For, and an ip rate limit (burst 2)
    counts per header address, not per balancer."""
    m = start_moat(pp_overrides(IP_RULE, ["127.0.0.1/32"]), upstream=upstream("app"))
    p = m.https_port
    r = pp_get(p, pp_v1("192.0.2.10"))
    assert r.status == 200, r
    assert iu.loose(iu.echo_headers(r.json()), "X-Forwarded-For") == ["192.0.2.10"]
    assert [pp_get(p, pp_v1("192.0.2.10"), "/rl").status for _ in range(3)] == [200, 200, 429]
    assert [pp_get(p, pp_v2("192.0.2.11"), "/rl").status for _ in range(3)] == [200, 200, 429]
    assert pp_get(p, pp_v1("192.0.2.10"), "/rl").status == 429  # v1 and v2: one client
    assert pp_get(p, pp_v2("2001:db8::7"), "/rl").status == 200
    assert pp_get(p, pp_v1("2001:db8::8"), "/rl").status == 200
    # TLVs (here a NOOP and an AWS-style one) are skipped
    tlvs = b"\x04\x00\x03abc" + b"\xea\x00\x05\x01vpce"
    assert pp_get(p, pp_v2("192.0.2.12", tlvs=tlvs), "/rl").status == 200
    # LOCAL (the balancer's own check): the TCP peer is the client
    assert pp_get(p, pp_v2(None), "/rl").status == 200
    got = ips_logged(m, "/rl", 11)
    assert got.count("192.0.2.10") == 4 and got.count("192.0.2.11") == 3, got
    assert {"2001:db8::7", "2001:db8::8", "192.0.2.12", "127.0.0.1"} <= set(got), got


def test_proxy_header_from_untrusted_source_not_honoured(upstream, start_moat):
    """127.0.0.1 is not in sources: its bytes are TLS. A plain client works; one that
    sends a PROXY header first is not served (the header is not TLS)."""
    m = start_moat(pp_overrides(IP_RULE, ["10.0.0.0/8"]), upstream=upstream("app"))
    assert served(m.https_port, None)
    assert not served(m.https_port, pp_v1("192.0.2.10"))
    assert not served(m.https_port, pp_v2("192.0.2.10"))
    assert served(m.https_port, None)
    got = ips_logged(m, "/echo", 2)
    assert set(got) == {"127.0.0.1"}, got


def test_trusted_source_needs_a_valid_timely_header(upstream, start_moat):
    """From a trusted source, no header, an invalid one, a truncated one or one sent too
    slowly (limits.header_timeout 1s) closes the connection; moat serves others."""
    m = start_moat(pp_overrides([], ["127.0.0.1/32"], limits={"header_timeout": "1s"}),
                   upstream=upstream("app"))
    p = m.https_port
    assert not served(p, None)  # a ClientHello where the header should be
    assert not served(p, b"PROXY TCP4 192.0.2.300 127.0.0.1 1 2\r\n")
    assert not served(p, b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n")
    assert not served(p, V2_SIG + b"\x21\x11\x00\x05" + b"\x00" * 5)  # addresses cut short
    assert not served(p, b"PROXY " + b"A" * 120 + b"\r\n")  # longer than 107 bytes
    # truncated: closed once the header timeout passes
    s = socket.create_connection(("127.0.0.1", p), timeout=5)
    try:
        s.sendall(b"PROXY TCP4 192.0.2.1 ")
        t0 = time.monotonic()
        assert closed_within(s, 4), "a truncated header was kept open"
        assert 0.5 < time.monotonic() - t0 < 3.5
    finally:
        s.close()
    # slow: one byte every 200 ms never completes the header in time
    s = socket.create_connection(("127.0.0.1", p), timeout=5)
    t0 = time.monotonic()
    try:
        closed = False
        for b in pp_v1("192.0.2.1"):
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - t0 > 4:
                break
        assert closed or closed_within(s, 0.5), "a slow header was kept open"
        assert time.monotonic() - t0 < 3.5
    finally:
        s.close()
    assert pp_get(p, pp_v1("192.0.2.50")).status == 200
    assert moatctl.port_accepts(p)


def test_xff_from_trusted_peer(upstream, start_moat, tmp_path):
    """The issue's failure: four X-Forwarded-For values from a trusted peer are four
    clients (burst 1 each). Rightmost untrusted: "1.1.1.9, 10.0.0.5" is 1.1.1.9 when
    10.0.0.0/8 is trusted. An untrusted peer's X-Forwarded-For is ignored."""
    rule = [rl_route("/rl", [{"key": "ip", "rate": "1/h", "burst": 1, "id": "xff"}])]
    up = upstream("app")
    m = start_moat(rlutil.overrides(rule, identity={"trusted_proxies": ["127.0.0.1/32",
                                                                        "10.0.0.0/8"]}),
                   upstream=up)
    p = m.https_port

    def get(xff):
        return rlutil.one_shot(p, "/rl", [("X-Forwarded-For", xff)]).status

    assert [get("1.1.1.%d" % i) for i in range(1, 5)] == [200] * 4
    assert get("1.1.1.1") == 429
    assert get("1.1.1.9, 10.0.0.5") == 200
    assert get("1.1.1.9") == 429  # the same client: 10.0.0.5 is a trusted proxy
    assert get("6.6.6.6, 1.1.1.8") == 200  # rightmost untrusted: the left one is not used
    assert get("1.1.1.8") == 429
    got = ips_logged(m, "/rl", 9)
    assert got == ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.1", "1.1.1.9", "1.1.1.9",
                   "1.1.1.8", "1.1.1.8"] or sorted(got) == sorted(
        ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.1", "1.1.1.9", "1.1.1.9", "1.1.1.8",
         "1.1.1.8"]), got

    untrusted = start_moat(rlutil.overrides(rule, identity={"trusted_proxies": ["10.0.0.0/8"]},
                                            log={"access": str(tmp_path / "u.access"),
                                                 "audit": str(tmp_path / "u.audit")}),
                           upstream=up, name="untrusted.yaml")
    q = untrusted.https_port
    statuses = [rlutil.one_shot(q, "/rl", [("X-Forwarded-For", "1.1.1.%d" % i)]).status
                for i in range(1, 5)]
    assert statuses == [200, 429, 429, 429], statuses
    assert set(ips_logged(untrusted, "/rl", 4)) == {"127.0.0.1"}


def test_header_rule_missing(upstream, start_moat):
    """header:X-Client without the header: missing ip (default) counts per client IP
    (two clients behind a trusted proxy, separate budgets); skip never limits; deny
    answers 400."""
    def rule(missing):
        r = {"key": "header:X-Client", "rate": "1/h", "burst": 1, "id": "hdr-" + missing}
        if missing != "default":
            r["missing"] = missing
        return r
    routes = [rl_route("/ip", [rule("default")]), rl_route("/skip", [rule("skip")]),
              rl_route("/deny", [rule("deny")])]
    m = start_moat(rlutil.overrides(routes, identity={"trusted_proxies": ["127.0.0.1/32"]}),
                   upstream=upstream("app"))
    p = m.https_port

    def get(path, xff, client=None):
        h = [("X-Forwarded-For", xff)] + ([("X-Client", client)] if client else [])
        return rlutil.one_shot(p, path, h)

    assert [get("/ip", "1.1.1.1").status, get("/ip", "1.1.1.2").status,
            get("/ip", "1.1.1.1").status] == [200, 200, 429]
    # the header's own buckets are apart from the IP ones, even for a value like an IP
    assert [get("/ip", "1.1.1.2", "1.1.1.2").status, get("/ip", "1.1.1.3", "1.1.1.2").status] \
        == [200, 429]
    assert [get("/skip", "1.1.1.1").status for _ in range(4)] == [200] * 4
    assert [get("/skip", "1.1.1.1", "k").status for _ in range(2)] == [200, 429]
    r = get("/deny", "1.1.1.1")
    assert r.status == 400 and b"missing header X-Client" in r.body, r
    assert get("/deny", "1.1.1.1", "k").status == 200


def test_per_ip_connection_cap_counts_the_proxied_client(upstream, start_moat):
    """max_connections_per_ip 2 with PROXY protocol: the cap is on the header's address,
    not on the balancer (every connection comes from 127.0.0.1)."""
    m = start_moat(pp_overrides([], ["127.0.0.1/32"], limits={"max_connections_per_ip": 2}),
                   upstream=upstream("app"))
    p = m.https_port
    held = []
    try:
        for _ in range(2):
            c = pp_connect(p, pp_v1("192.0.2.20"))
            held.append(c)
            assert rlutil.get(c, "/echo").status == 200
        assert not served(p, pp_v1("192.0.2.20")), "a 3rd connection of 192.0.2.20 was served"
        for ip in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):  # the balancer is not capped
            c = pp_connect(p, pp_v1(ip))
            held.append(c)
            assert rlutil.get(c, "/echo").status == 200
        held.pop(0).close()
        assert moatctl.wait_until(lambda: served(p, pp_v1("192.0.2.20")), 5)
    finally:
        for c in held:
            c.close()


def test_global_cap_covers_connections_waiting_for_their_header(upstream, start_moat):
    """Connections from the balancer count in limits.max_connections while their header
    is awaited: a flood of headerless connections cannot push the total past it."""
    m = start_moat(pp_overrides([], ["127.0.0.1/32"],
                                limits={"max_connections": 2, "header_timeout": "10s"}),
                   upstream=upstream("app"))
    p = m.https_port
    idle = [socket.create_connection(("127.0.0.1", p), timeout=5) for _ in range(2)]
    try:
        assert moatctl.wait_until(
            lambda: moatctl.metrics(m).get("moat_connections_active", 0) == 2, 5), \
            "the two headerless connections are not both accepted"
        assert not served(p, pp_v1("192.0.2.30"))
    finally:
        for s in idle:
            s.close()
    assert moatctl.wait_until(lambda: served(p, pp_v1("192.0.2.30")), 5)


def test_refused_proxied_connection_is_uncounted_once(upstream, start_moat):
    """A PROXY connection refused by the per-IP cap gives back its place in the total
    exactly once: max_connections 2 still holds afterwards."""
    m = start_moat(pp_overrides([], ["127.0.0.1/32"],
                                limits={"max_connections": 2, "max_connections_per_ip": 1}),
                   upstream=upstream("app"))
    p = m.https_port
    held = []
    try:
        held.append(pp_connect(p, pp_v1("192.0.2.40")))
        assert rlutil.get(held[0], "/echo").status == 200
        for _ in range(3):
            assert not served(p, pp_v1("192.0.2.40"))
        held.append(pp_connect(p, pp_v1("192.0.2.41")))
        assert rlutil.get(held[1], "/echo").status == 200
        assert not served(p, pp_v1("192.0.2.42")), "max_connections 2 let a 3rd in"
    finally:
        for c in held:
            c.close()
