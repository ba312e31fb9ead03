"""OCSP stapling with a real responder and `openssl s_client -status`.

A test CA issues leaves whose AIA OCSP URL points at a responder on 127.0.0.1
(tlsutil.OcspResponder: the openssl CLI's responder, `openssl ocsp -index ... -reqin`,
behind a small HTTP server bound to 127.0.0.1 only; `openssl ocsp -port` would listen on
every interface). Both ways moat gets a staple are covered: a DER file fetched by the
operator (tls.certificates[].ocsp) and moat fetching it itself (tls.ocsp_fetch: true).
"""

import os
import time

import pytest

import moatctl
import tlsutil
from tlsutil import s_client


@pytest.fixture(scope="module")
def ocsp(tmp_path_factory):
    d = tmp_path_factory.mktemp("ocsp-pki")
    pki = tlsutil.PKI(d)
    port = moatctl.free_port()
    url = "http://127.0.0.1:%d/" % port
    pki.root = pki.ca("ca", "/O=moat tests/CN=OCSP test root CA")
    # the public-PKI shape: root -> intermediate -> leaf, the chain file holds leaf +
    # intermediate; the intermediate signs the OCSP responses for its leaves
    pki.inter = pki.ca("inter", "/O=moat tests/CN=OCSP test intermediate CA", issuer=pki.root)
    pki.good = pki.leaf(pki.inter, "good", "/O=moat tests/CN=localhost", dns=["localhost"],
                        ocsp_url=url)
    pki.other = pki.leaf(pki.inter, "other", "/O=moat tests/CN=other.test",
                         dns=["other.test"], ocsp_url=url)
    pki.revoked = pki.leaf(pki.inter, "revoked", "/O=moat tests/CN=localhost",
                           dns=["localhost"], ocsp_url=url)
    index = pki.write_index(os.path.join(str(d), "index.txt"),
                            [(pki.good, "V"), (pki.other, "V"), (pki.revoked, "R")])
    responder = tlsutil.OcspResponder(pki.inter, index, port=port)
    responder.start()
    pki.responder = responder
    pki.dir = str(d)
    try:
        yield pki
    finally:
        responder.stop()


def staple_file(pki, cert, name):
    return tlsutil.ocsp_response_file(pki.inter, cert, pki.responder.url,
                                      os.path.join(pki.dir, name))


def assert_stapled(r, cert):
    assert r.handshake_ok, r
    assert r.ocsp_status == "successful", r
    assert r.ocsp_cert_status == "good", r
    assert r.ocsp_serial and r.ocsp_serial.upper().lstrip("0") == cert.serial.lstrip("0"), r


@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_file_staple_is_sent_and_valid(ocsp, upstream, moat_factory, proto):
    der = staple_file(ocsp, ocsp.good, "good.ocsp.der")
    up = upstream("app")
    m = moat_factory({"tls": {"certificates": [
        {"cert": ocsp.good.chain, "key": ocsp.good.key, "ocsp": der}]}}, upstream=up)
    r = s_client(m.https_port, proto, "-status", cafile=ocsp.root.cert)
    assert_stapled(r, ocsp.good)
    assert "Verify return code: 0 (ok)" in r.out, r
    # and the staple verifies against the CA (what a client does)
    v = tlsutil.openssl("ocsp", "-respin", der, "-CAfile", ocsp.root.cert, "-verify_other",
                        ocsp.inter.cert, "-issuer", ocsp.inter.cert, "-cert", ocsp.good.cert)
    assert "Response verify OK" in (v.stdout + v.stderr).decode()


def test_no_staple_without_status_request(ocsp, upstream, moat_factory):
    der = staple_file(ocsp, ocsp.good, "good2.ocsp.der")
    up = upstream("app")
    m = moat_factory({"tls": {"certificates": [
        {"cert": ocsp.good.chain, "key": ocsp.good.key, "ocsp": der}]}}, upstream=up)
    r = s_client(m.https_port, "-tls1_2", cafile=ocsp.root.cert)
    assert r.handshake_ok and "OCSP Response Status" not in r.out, r


@pytest.mark.parametrize("which", ["other", "revoked"])
def test_unusable_staple_file_is_not_stapled(ocsp, upstream, moat_factory, which):
    # a response for another certificate of the same CA, or a "revoked" one: moat warns
    # and serves the certificate without a staple (docs/tls.md)
    cert = getattr(ocsp, which)
    der = staple_file(ocsp, cert, "%s.ocsp.der" % which)
    up = upstream("app")
    m = moat_factory({"tls": {"certificates": [
        {"cert": ocsp.good.chain, "key": ocsp.good.key, "ocsp": der}]}}, upstream=up)
    for proto in ("-tls1_2", "-tls1_3"):
        r = s_client(m.https_port, proto, "-status", cafile=ocsp.root.cert)
        assert r.handshake_ok, r
        assert "OCSP response: no response sent" in r.out, r
    err = m.stderr()
    assert "warn" in err and der in err, err


def test_fetched_staple(ocsp, upstream, moat_factory):
    before = ocsp.responder.requests
    up = upstream("app")
    m = moat_factory({"tls": {"ocsp_fetch": True, "certificates": [
        {"cert": ocsp.good.chain, "key": ocsp.good.key}]}}, upstream=up)
    deadline = time.monotonic() + 20
    r = None
    while time.monotonic() < deadline:
        r = s_client(m.https_port, "-tls1_3", "-status", cafile=ocsp.root.cert)
        if r.ocsp_status:
            break
        time.sleep(0.3)
    assert r is not None and r.ocsp_status, "no staple 20 s after start; responder saw %d " \
        "requests, errors %r\nmoat stderr:\n%s\n%r" % (ocsp.responder.requests - before,
                                                        ocsp.responder.errors, m.stderr(), r)
    assert_stapled(r, ocsp.good)
    assert ocsp.responder.requests > before
    r = s_client(m.https_port, "-tls1_2", "-status", cafile=ocsp.root.cert)
    assert_stapled(r, ocsp.good)


def test_fetch_of_a_revoked_certificate_staples_nothing(ocsp, upstream, moat_factory):
    before = ocsp.responder.requests
    up = upstream("app")
    m = moat_factory({"tls": {"ocsp_fetch": True, "certificates": [
        {"cert": ocsp.revoked.chain, "key": ocsp.revoked.key}]}}, upstream=up)
    assert moatctl.wait_until(lambda: ocsp.responder.requests > before, 20), m.stderr()
    time.sleep(1.0)  # the answer ("revoked") has been processed
    r = s_client(m.https_port, "-tls1_2", "-status", cafile=ocsp.root.cert)
    assert r.handshake_ok, r
    assert "OCSP response: no response sent" in r.out, r
