"""Certificate selection: RSA or ECDSA by client capability, SNI, the default certificate.

Checked on the certificate moat actually sends (its SHA-256 fingerprint from
openssl s_client's output), against the files it was configured with.
"""

import os

import pytest

import moatctl
import tlsutil
from tlsutil import s_client

CERTS = moatctl.CERTS
RSA = os.path.join(CERTS, "server.crt")
EC = os.path.join(CERTS, "server-ec.crt")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA with leaves for a.test and b.test (RSA)."""
    p = tlsutil.PKI(tmp_path_factory.mktemp("sni-pki"))
    p.root = p.ca("ca", "/O=moat tests/CN=SNI test CA")
    p.a = p.leaf(p.root, "a", "/O=moat tests/CN=a.test", dns=["a.test"])
    p.b = p.leaf(p.root, "b", "/O=moat tests/CN=b.test", dns=["b.test"])
    return p


@pytest.fixture
def dual(upstream, moat_factory):
    """moat with the dev RSA and ECDSA certificates, both for localhost."""
    up = upstream("app")
    return moat_factory({"tls": {"certificates": [
        {"cert": RSA, "key": os.path.join(CERTS, "server.key")},
        {"cert": EC, "key": os.path.join(CERTS, "server-ec.key")}]}}, upstream=up)


def test_tls12_ecdsa_only_client_gets_ec_certificate(dual):
    r = s_client(dual.https_port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256",
                 data=tlsutil.http_get())
    assert r.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256", r
    assert r.peer_fingerprint == tlsutil.fingerprint(EC), r
    assert "HTTP/1.1 200" in r.out


def test_tls12_rsa_only_client_gets_rsa_certificate(dual):
    r = s_client(dual.https_port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert r.cipher == "ECDHE-RSA-AES128-GCM-SHA256", r
    assert r.peer_fingerprint == tlsutil.fingerprint(RSA), r


def test_tls12_client_offering_both_gets_rsa_first(dual):
    # the policy's suite order puts ECDHE-RSA-AES128-GCM-SHA256 first (docs/tls.md)
    r = s_client(dual.https_port, "-tls1_2", "-cipher",
                 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    assert r.cipher == "ECDHE-RSA-AES128-GCM-SHA256", r
    assert r.peer_fingerprint == tlsutil.fingerprint(RSA), r


def test_tls13_ecdsa_sigalgs_client_gets_ec_certificate(dual):
    r = s_client(dual.https_port, "-tls1_3", "-sigalgs", "ECDSA+SHA256")
    assert r.protocol == "TLSv1.3", r
    assert r.peer_fingerprint == tlsutil.fingerprint(EC), r


def test_tls13_rsa_sigalgs_client_gets_rsa_certificate(dual):
    r = s_client(dual.https_port, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384")
    assert r.protocol == "TLSv1.3", r
    assert r.peer_fingerprint == tlsutil.fingerprint(RSA), r


def test_tls13_default_client_gets_ecdsa(dual):
    # server preference orders signature algorithms ECDSA first in TLS 1.3 (docs/tls.md)
    r = s_client(dual.https_port, "-tls1_3")
    assert r.peer_fingerprint == tlsutil.fingerprint(EC), r


def test_client_supporting_neither_fails(dual):
    r = s_client(dual.https_port, "-tls1_3", "-sigalgs", "ed25519")
    assert not r.handshake_ok, r


# ---- SNI ---------------------------------------------------------------------------

@pytest.fixture
def sni(pki, upstream, moat_factory):
    up = upstream("app")
    return moat_factory({"tls": {"certificates": [
        {"cert": pki.a.cert, "key": pki.a.key},
        {"cert": pki.b.cert, "key": pki.b.key}]}}, upstream=up)


@pytest.mark.parametrize("name,expected", [
    ("a.test", "a"), ("b.test", "b"), ("B.TEST", "b"),
    ("unknown.test", "a"), ("c.a.test", "a"), (None, "a"),
])
def test_sni_picks_the_certificate(pki, sni, name, expected):
    r = s_client(sni.https_port, servername=name, cafile=pki.root.cert)
    want = getattr(pki, expected)
    assert r.peer_fingerprint == want.fingerprint, r
    assert tlsutil.cert_field(r.peer_pem, "subject") == "CN=%s.test,O=moat tests" % expected
    if name and name.lower() == want.name + ".test":
        assert "Verify return code: 0 (ok)" in r.out, r


def test_sni_with_python_verification(pki, sni):
    ctx = moatctl.ssl.create_default_context(cafile=pki.root.cert)
    for name in ("a.test", "b.test"):
        with moatctl.Conn(moatctl.tls_connect(sni.https_port, server_hostname=name,
                                              ctx=ctx)) as c:
            c.request("GET", "/echo", host=name)
            r = c.read_response()
            assert r.status == 200, r


def test_ticket_from_one_name_is_not_resumed_on_another(pki, sni, tmp_path):
    # each certificate set has its own session id context (docs/tls.md "Resumption is
    # bound to the set"): a.test's ticket must not skip b.test's certificate
    sess = tmp_path / "a.sess"
    r = s_client(sni.https_port, "-tls1_2", servername="a.test", sess_out=sess)
    assert r.handshake_ok and os.path.getsize(sess) > 0, r
    again = s_client(sni.https_port, "-tls1_2", servername="a.test", sess_in=sess)
    assert again.reused is True, again
    other = s_client(sni.https_port, "-tls1_2", servername="b.test", sess_in=sess)
    assert other.reused is False, other
    assert other.peer_fingerprint == pki.b.fingerprint, other
