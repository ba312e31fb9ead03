"""Client certificates (mTLS): tls.client_ca + tls.client_verify, with Python's ssl client.

Accepted: a certificate from the configured client CA; its subject is in the access log
("tls_client_subject", RFC 2253). Refused: no certificate, or one from another CA; the
request never reaches the upstream.
"""

import socket
import ssl

import pytest

import moatctl
import tlsutil

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = tlsutil.PKI(tmp_path_factory.mktemp("mtls-pki"))
    p.client_ca = p.ca("client-ca", "/O=moat tests/CN=client CA")
    p.alice = p.leaf(p.client_ca, "alice", "/O=tenant-1/CN=alice", client=True)
    p.alice_ec = p.leaf(p.client_ca, "alice-ec", "/O=tenant-1/CN=alice-ec", client=True, key="ec")
    p.rogue_ca = p.ca("rogue-ca", "/O=elsewhere/CN=rogue CA")
    p.mallory = p.leaf(p.rogue_ca, "mallory", "/O=tenant-1/CN=mallory", client=True)
    return p


def attempt(port, version, cert=None, path="/echo"):
    """One request over a fresh connection. Returns (status or None, error text)."""
    ctx = moatctl.tls_context(min_version=version, max_version=version)
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return None, "handshake: %s" % e
    c = moatctl.Conn(s)
    try:
        c.request("GET", path)
        r = c.read_response()
        return r.status, ""
    except (ssl.SSLError, OSError, ConnectionError, AssertionError) as e:
        return None, "after handshake: %s" % e
    finally:
        c.close()


@pytest.fixture
def required(pki, upstream, moat_factory):
    up = upstream("app")
    m = moat_factory({"tls": {"client_ca": pki.client_ca.cert, "client_verify": True}},
                     upstream=up)
    m.up = up
    return m


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_good_client_certificate_accepted_and_logged(pki, required, version):
    for cert, subject in ((pki.alice, "CN=alice,O=tenant-1"),
                          (pki.alice_ec, "CN=alice-ec,O=tenant-1")):
        status, err = attempt(required.https_port, version, cert,
                              path="/echo?who=%s" % cert.name)
        assert status == 200, err
        lines = required.wait_access_log(
            1, pred=lambda e: e.get("path") == "/echo" and e.get("status") == 200 and
            e.get("tls_client_subject") == subject)
        assert lines, required.access_log()


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("who", ["none", "untrusted"])
def test_missing_or_untrusted_certificate_refused(pki, required, version, who):
    cert = None if who == "none" else pki.mallory
    status, err = attempt(required.https_port, version, cert, path="/echo?who=" + who)
    assert status is None, "a client with %s certificate got %s" % (who, status)
    # and nothing reached the upstream, nothing was logged as served
    assert not [r for r in required.up.requests() if "who=" + who in r.get("target", "")]
    assert not [e for e in required.access_log() if e.get("status") == 200 and
                "mallory" in str(e.get("tls_client_subject"))]


def test_refusals_do_not_break_the_listener(pki, required):
    for _ in range(3):
        assert attempt(required.https_port, ssl.TLSVersion.TLSv1_3, None)[0] is None
        assert attempt(required.https_port, ssl.TLSVersion.TLSv1_2, pki.mallory)[0] is None
    assert attempt(required.https_port, ssl.TLSVersion.TLSv1_3, pki.alice)[0] == 200
    assert required.alive()


def test_optional_client_certificate(pki, upstream, moat_factory):
    # client_ca without client_verify: asked for, verified if presented, not required
    up = upstream("app")
    m = moat_factory({"tls": {"client_ca": pki.client_ca.cert, "client_verify": False}},
                     upstream=up)
    v = ssl.TLSVersion.TLSv1_3
    assert attempt(m.https_port, v, None, path="/echo?n=anon")[0] == 200
    assert attempt(m.https_port, v, pki.alice, path="/echo?n=alice")[0] == 200
    assert attempt(m.https_port, v, pki.mallory, path="/echo?n=mallory")[0] is None
    lines = m.wait_access_log(2, pred=lambda e: e.get("path") == "/echo")
    by_query = {e.get("query", e.get("target", "")): e for e in lines}
    subjects = sorted(str(e.get("tls_client_subject")) for e in lines)
    assert subjects == ["CN=alice,O=tenant-1", "None"], (subjects, by_query)
