"""Certificate reload (SIGHUP): a new certificate for new connections, the open ones
untouched; an invalid new certificate keeps the old one and says why.

The config points at live.crt / live.key in the test's tmp dir; the files are replaced
atomically (rename), as a deploy tool or certbot would, then moat gets SIGHUP.
"""

import os
import ssl

import pytest

import moatctl
import tlsutil


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = tlsutil.PKI(tmp_path_factory.mktemp("reload-pki"))
    p.root = p.ca("ca", "/O=moat tests/CN=reload test CA")
    p.gen1 = p.leaf(p.root, "gen1", "/O=generation 1/CN=localhost", dns=["localhost"])
    p.gen2 = p.leaf(p.root, "gen2", "/O=generation 2/CN=localhost", dns=["localhost"])
    p.other_key = p.leaf(p.root, "stray", "/O=stray/CN=localhost", dns=["localhost"])
    return p


@pytest.fixture
def live(pki, tmp_path, upstream, moat_factory):
    crt, key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    tlsutil.replace_file(pki.gen1.cert, crt)
    tlsutil.replace_file(pki.gen1.key, key)
    up = upstream("app")
    m = moat_factory({"tls": {"certificates": [{"cert": crt, "key": key}]}}, upstream=up)
    m.crt, m.key = crt, key
    return m


def ctx_for(pki):
    return ssl.create_default_context(cafile=pki.root.cert)


def peer_der(conn):
    return conn.sock.getpeercert(binary_form=True)


def get(conn, path="/echo"):
    conn.request("GET", path)
    return conn.read_response()


def reload_and_wait(m, marker):
    """SIGHUP, then waits for the reload's outcome in moat's log; returns the new lines."""
    before = len(m.stderr())
    m.reload()
    got = moatctl.wait_until(lambda: marker in m.stderr()[before:] or
                             "keeping generation" in m.stderr()[before:], 10)
    assert got, "no reload outcome in moat's log:\n" + m.stderr()
    return m.stderr()[before:]


def test_reload_swaps_certificate_keeping_open_connection(pki, live):
    old = moatctl.Conn(moatctl.tls_connect(live.https_port, ctx=ctx_for(pki)))
    try:
        assert get(old).status == 200
        assert peer_der(old) == tlsutil.der_of_pem(pki.gen1.pem)

        tlsutil.replace_file(pki.gen2.key, live.key)
        tlsutil.replace_file(pki.gen2.cert, live.crt)
        log = reload_and_wait(live, "generation 2 is live")
        assert "generation 2 is live" in log, log

        # the open keep-alive connection goes on, on the old certificate
        for i in range(3):
            r = get(old, "/echo?after_reload=%d" % i)
            assert r.status == 200, r
        assert peer_der(old) == tlsutil.der_of_pem(pki.gen1.pem)
        # a new connection sees the new certificate
        with moatctl.Conn(moatctl.tls_connect(live.https_port, ctx=ctx_for(pki))) as new:
            assert peer_der(new) == tlsutil.der_of_pem(pki.gen2.pem)
            assert get(new).status == 200
        r = tlsutil.s_client(live.https_port, "-tls1_2", cafile=pki.root.cert)
        assert tlsutil.cert_field(r.peer_pem, "subject") == "CN=localhost,O=generation 2"
    finally:
        old.close()
    assert live.alive()


@pytest.mark.parametrize("breakage", ["key_mismatch", "garbage_cert", "missing_key"])
def test_invalid_new_certificate_keeps_the_old_one(pki, live, breakage):
    old = moatctl.Conn(moatctl.tls_connect(live.https_port, ctx=ctx_for(pki)))
    try:
        assert get(old).status == 200
        if breakage == "key_mismatch":
            # the certificate was renewed but the key not deployed
            tlsutil.replace_file(pki.gen2.cert, live.crt)
            tlsutil.replace_file(pki.other_key.key, live.key)
            why = "key"
        elif breakage == "garbage_cert":
            tlsutil.write_atomic(live.crt, "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                                           "-----END CERTIFICATE-----\n")
            why = live.crt
        else:
            os.unlink(live.key)
            why = live.key
        log = reload_and_wait(live, "generation 2 is live")
        assert "keeping generation 1" in log, log
        assert why in log, "the log does not say why:\n" + log
        # the open connection and new ones: still the old certificate
        assert get(old).status == 200
        with moatctl.Conn(moatctl.tls_connect(live.https_port, ctx=ctx_for(pki))) as new:
            assert peer_der(new) == tlsutil.der_of_pem(pki.gen1.pem)
            assert get(new).status == 200
    finally:
        old.close()

    # fixing the files and reloading again works
    tlsutil.replace_file(pki.gen2.key, live.key)
    tlsutil.replace_file(pki.gen2.cert, live.crt)
    log = reload_and_wait(live, "is live")
    assert "generation 2 is live" in log, log
    with moatctl.Conn(moatctl.tls_connect(live.https_port, ctx=ctx_for(pki))) as new:
        assert peer_der(new) == tlsutil.der_of_pem(pki.gen2.pem)
    assert live.alive()
