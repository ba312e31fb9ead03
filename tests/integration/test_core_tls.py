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
