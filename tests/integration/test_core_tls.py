"""TLS termination (1.2 and 1.3, nothing older) and worker threads with SO_REUSEPORT."""

import ssl
import warnings

import pytest

from moatctl import Conn, listening_sockets, proc_status, tls_connect, tls_context


def test_tls13_handshake_and_request(proxy):
    with Conn(tls_connect(proxy.port)) as c:
        assert c.sock.version() == "TLSv1.3"
        c.request("GET", "/echo")
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["upstream"] == "app"


def test_tls12_uses_ecdhe_aead(proxy):
    ctx = tls_context(max_version=ssl.TLSVersion.TLSv1_2)
    with Conn(tls_connect(proxy.port, ctx=ctx)) as c:
        assert c.sock.version() == "TLSv1.2"
        name = c.sock.cipher()[0]
        assert name.startswith("ECDHE-"), name
        assert "GCM" in name or "CHACHA20" in name, name
        c.request("GET", "/echo")
        assert c.read_response().status == 200


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_below_12_refused(proxy, version):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        v = getattr(ssl.TLSVersion, version)
        ctx = tls_context(min_version=v, max_version=v, ciphers="DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        s = tls_connect(proxy.port, ctx=ctx)
        s.close()


def test_certificate_names_the_host(proxy):
    # verified against the dev CA for "localhost" and for the IP address
    tls_connect(proxy.port, server_hostname="localhost").close()
    tls_connect(proxy.port, server_hostname="127.0.0.1").close()


def test_workers_each_listen_with_reuseport(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 2}, upstream=up)
    # one listening socket per worker on the same port (SO_REUSEPORT)
    assert listening_sockets(m.https_port) == 2
    # main thread + 2 workers at least
    assert proc_status(m.pid, "Threads") >= 3
    # and both serve: many short connections all get answers
    for i in range(8):
        with Conn.tls(m.https_port) as c:
            c.request("GET", "/echo?i=%d" % i)
            assert c.read_response().status == 200


def test_single_worker(upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"workers": 1}, upstream=up)
    assert listening_sockets(m.https_port) == 1
    with Conn.tls(m.https_port) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200


def test_tls13_key_update_mid_connection(proxy):
    """A TLS 1.3 KeyUpdate with update_requested between two requests on one connection
    (openssl s_client's "K" command): moat answers with its own KeyUpdate, reading and
    writing go on under the new keys, and both requests are answered."""
    import subprocess
    import time
    from tlsutil import OPENSSL
    p = subprocess.Popen([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % proxy.port,
                          "-servername", "localhost", "-tls1_3"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        get = b"GET /echo HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
        p.stdin.write(get % b"")
        p.stdin.flush()
        time.sleep(1.0)
        p.stdin.write(b"K\n")  # s_client: send KeyUpdate, peer update requested
        p.stdin.flush()
        time.sleep(0.5)
        p.stdin.write(get % b"Connection: close\r\n")
        p.stdin.flush()
        time.sleep(1.0)  # s_client quits at the end of its stdin, answer read or not
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.count(b"HTTP/1.1 200") == 2, (out[-500:], err[-500:])
    assert b"KEYUPDATE" in err, err[-500:]


def _closed_by_moat(sock, timeout=5.0):
    """Reads until moat closes the connection; what it sent (at most a TLS alert)."""
    import socket as socketmod
    import time
    sock.settimeout(0.5)
    got = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            d = sock.recv(65536)
        except socketmod.timeout:
            continue
        except ConnectionResetError:
            return got
        if not d:
            return got
        got += d
    raise AssertionError("moat kept the connection open; it sent %r" % got[:100])


def _handshaken_raw(port):
    """A TLS 1.3 session done over a plain socket (MemoryBIO), so that raw bytes can
    follow it: (socket, SSLObject, incoming, outgoing)."""
    import socket as socketmod
    raw = socketmod.create_connection(("127.0.0.1", port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_context().wrap_bio(inc, out, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            d = raw.recv(65536)
            assert d, "moat closed during the handshake"
            inc.write(d)
    raw.sendall(out.read())
    return raw, obj, inc, out


@pytest.mark.parametrize("what", ["plain_http", "random", "huge_record", "bad_version",
                                  "truncated_hello"])
def test_hostile_bytes_instead_of_a_handshake(proxy, what):
    """Whatever arrives instead of a ClientHello ends that connection (an alert at
    most), without a hang or a crash; the next client is served."""
    import random
    import socket as socketmod
    from moatctl import tcp_connect
    data = {
        "plain_http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        # seeded: some random prefixes are a valid start that waits for more bytes
        "random": random.Random(7).randbytes(4096),
        "huge_record": b"\x16\x03\x01\xff\xff" + b"\x01" * 300,
        "bad_version": b"\x16\x7f\x7f\x00\x05hello",
        "truncated_hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20,
    }[what]
    s = tcp_connect(proxy.port)
    try:
        s.sendall(data)
        if what == "truncated_hello":
            s.shutdown(socketmod.SHUT_WR)  # and no more bytes: EOF mid-record
        sent = _closed_by_moat(s)
    finally:
        s.close()
    assert len(sent) <= 7 * 2, sent  # nothing but an alert record or two
    with Conn(tls_connect(proxy.port)) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
    assert proxy.moat.proc.poll() is None


@pytest.mark.parametrize("what", ["random_record", "garbage", "forged_appdata"])
def test_hostile_bytes_after_the_handshake(proxy, what):
    """After a good handshake, bytes that are not valid records under the session's
    keys (a record of random bytes, raw garbage, application data with a made-up
    tag) close the connection without reaching the upstream; moat goes on serving."""
    import random
    before = len(proxy.up.requests())
    raw, obj, inc, out = _handshaken_raw(proxy.port)
    try:
        body = random.Random(8).randbytes(200)
        data = {
            "random_record": b"\x17\x03\x03\x00\xc8" + body,
            "garbage": b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "forged_appdata": b"\x17\x03\x03\x00\x40" + b"\x00" * 64,
        }[what]
        raw.sendall(data)
        _closed_by_moat(raw)
    finally:
        raw.close()
    with Conn(tls_connect(proxy.port)) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
    assert len(proxy.up.requests()) == before + 1  # only the good request went upstream
    assert proxy.moat.proc.poll() is None
