"""What a real client can and cannot negotiate with moat's default TLS policy.

openssl s_client for what the local OpenSSL 3.0 still speaks (TLS 1.0/1.1 at security
level 0, CBC-only, RSA key exchange, DHE, NULL, anonymous); raw ClientHellos (tlsutil)
for what it no longer has (SSL 2.0, SSL 3.0, RC4, 3DES, EXPORT). One moat serves the
whole module (default policy, dev RSA certificate, 2 workers).
"""

import subprocess
import time

import pytest

import moatctl
import tlsutil
from tlsutil import SUITES, client_hello, probe, s_client

# The usual browser list of a TLS 1.2 client (Firefox's order, TLS 1.2 suites only).
FIREFOX_TLS12 = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                 "ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
                 "ECDHE-RSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA")


@pytest.fixture(scope="module")
def moat(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls-protocols")
    up = moatctl.Upstream(tmp, name="app")
    m = None
    try:
        up.start()
        path, cfg = moatctl.write_config(tmp, {"workers": 2}, upstream_port=up.port)
        m = moatctl.Moat(path, cfg, tmpdir=str(tmp))
        m.start()
        yield m
        assert m.alive(), "moat died during the module:\n" + m.stderr()
    finally:
        if m is not None:
            m.stop()
        up.stop()


def refused(r):
    return not r.handshake_ok and r.rc != 0


# ---- protocol versions -------------------------------------------------------------

@pytest.mark.parametrize("flag,name", [("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1")])
def test_old_tls_refused_by_s_client(moat, flag, name):
    # security level 0 so that OpenSSL 3.0 still sends a TLS 1.0/1.1 ClientHello
    r = s_client(moat.https_port, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert refused(r), r
    assert "no protocols available" not in r.out, "the client did not even try: %r" % r
    assert r.alert_number == 70, r  # protocol_version, sent by moat


def test_ssl3_refused_by_s_client(moat):
    if not tlsutil.s_client_supports("-ssl3"):
        pytest.skip("this openssl s_client has no -ssl3 (OpenSSL 3.0 built without SSLv3); "
                    "see test_ssl3_hello_refused for a raw SSLv3 ClientHello")
    r = s_client(moat.https_port, "-ssl3", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert refused(r), r


def test_ssl3_hello_refused(moat):
    hello = client_hello(version=0x0300, record_version=0x0300, extensions=False,
                         suites=[SUITES["TLS_RSA_WITH_AES_128_CBC_SHA"],
                                 SUITES["TLS_RSA_WITH_3DES_EDE_CBC_SHA"],
                                 SUITES["TLS_RSA_WITH_RC4_128_SHA"]])
    p = probe(moat.https_port, hello)
    assert p.kind in ("alert", "closed"), p
    assert p.kind != "alert" or p.alert in (40, 70), p


def test_sslv2_hello_refused(moat):
    p = probe(moat.https_port, tlsutil.sslv2_client_hello())
    assert p.kind in ("alert", "closed"), p  # never an SSLv2 SERVER-HELLO


@pytest.mark.parametrize("version", [0x0301, 0x0302])
def test_old_tls_hello_refused(moat, version):
    p = probe(moat.https_port, client_hello(version=version, suites=[
        SUITES["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"], SUITES["TLS_RSA_WITH_AES_128_CBC_SHA"]]))
    assert p.kind == "alert" and p.alert == 70, p


def test_tls12_and_tls13_offered(moat):
    r12 = s_client(moat.https_port, "-tls1_2")
    assert r12.protocol == "TLSv1.2", r12
    r13 = s_client(moat.https_port, "-tls1_3")
    assert r13.protocol == "TLSv1.3", r13
    assert r13.cipher == "TLS_AES_128_GCM_SHA256", r13
    assert r13.temp_key and r13.temp_key.startswith("X25519"), r13


def test_downgrade_to_tls12_signalled_by_scsv_refused(moat):
    # a TLS 1.2 hello carrying TLS_FALLBACK_SCSV while moat speaks TLS 1.3 (RFC 7507)
    r = s_client(moat.https_port, "-tls1_2", "-fallback_scsv")
    assert refused(r), r
    assert r.alert_number == 86, r  # inappropriate_fallback


# ---- weak cipher classes -----------------------------------------------------------

@pytest.mark.parametrize("what,ciphers", [
    ("CBC only (ECDHE)", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:"
                         "ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA"),
    ("CBC only (any)", "HIGH:!aNULL:!AESGCM:!CHACHA20:!AESCCM:!ARIAGCM"),
    ("RSA key exchange only", "kRSA:@SECLEVEL=0"),
    ("RSA key exchange, AEAD", "AES128-GCM-SHA256:AES256-GCM-SHA384"),
    ("DHE only", "kDHE:@SECLEVEL=0"),
    ("NULL encryption", "eNULL:@SECLEVEL=0"),
    ("anonymous", "aNULL:@SECLEVEL=0"),
    ("PSK", "PSK:@SECLEVEL=0 -psk 00112233445566778899aabbccddeeff"),
    ("CAMELLIA/ARIA/SEED", "CAMELLIA:ARIA:SEED:@SECLEVEL=0"),
])
def test_weak_cipher_class_refused(moat, what, ciphers):
    ciphers, *extra = ciphers.split()
    r = s_client(moat.https_port, "-tls1_2", "-cipher", ciphers, *extra)
    if "no cipher match" in r.out or "no ciphers available" in r.out:
        pytest.skip("this OpenSSL has no %s suites" % what)
    assert refused(r), "%s negotiated: %r" % (what, r)
    assert r.alert_number == 40, r  # handshake_failure: "no shared cipher" on moat's side


@pytest.mark.parametrize("suites", [
    ["TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
     "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"],
    ["TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_RC4_128_MD5", "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
     "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"],
    ["TLS_RSA_EXPORT_WITH_RC4_40_MD5", "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA",
     "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA"],
    ["TLS_RSA_WITH_DES_CBC_SHA", "TLS_RSA_WITH_IDEA_CBC_SHA"],
    ["TLS_RSA_WITH_NULL_SHA", "TLS_RSA_WITH_NULL_SHA256", "TLS_ECDHE_RSA_WITH_NULL_SHA"],
    ["TLS_DH_anon_WITH_AES_128_CBC_SHA", "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"],
], ids=["3DES", "RC4", "EXPORT", "DES-IDEA", "NULL", "anon"])
def test_weak_suites_refused_raw(moat, suites):
    # suites this OpenSSL cannot offer any more: a raw TLS 1.2 ClientHello
    p = probe(moat.https_port, client_hello(version=0x0303, suites=[SUITES[s] for s in suites]))
    assert p.kind == "alert" and p.alert == 40, p


def test_raw_hello_with_a_good_suite_is_answered(moat):
    # the control for the raw probes above: the same hello with one policy suite works
    p = probe(moat.https_port, client_hello(version=0x0303, suites=[
        SUITES["TLS_RSA_WITH_3DES_EDE_CBC_SHA"], SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]]))
    assert p.kind == "server_hello" and p.version == 0x0303 and p.suite == 0xC02F, p


# ---- what is negotiated ------------------------------------------------------------

def test_browser_tls12_gets_ecdhe_rsa_aes128_gcm(moat):
    r = s_client(moat.https_port, "-tls1_2", "-cipher", FIREFOX_TLS12, data=tlsutil.http_get())
    assert r.protocol == "TLSv1.2", r
    assert r.cipher == "ECDHE-RSA-AES128-GCM-SHA256", r
    assert "HTTP/1.1 200" in r.out, r


@pytest.mark.parametrize("order", [
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256",
])
def test_server_order_wins(moat, order):
    r = s_client(moat.https_port, "-tls1_2", "-cipher", order)
    assert r.cipher == "ECDHE-RSA-AES128-GCM-SHA256", r


def test_tls13_client_preferring_aes256_still_gets_server_choice(moat):
    r = s_client(moat.https_port, "-tls1_3", "-ciphersuites",
                 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256")
    assert r.cipher == "TLS_AES_128_GCM_SHA256", r


def test_p256_client_gets_p256(moat):
    r = s_client(moat.https_port, "-tls1_2", "-groups", "P-256")
    assert r.handshake_ok and r.temp_key.startswith(("ECDH, prime256v1", "ECDH, P-256")), r
    r = s_client(moat.https_port, "-tls1_3", "-groups", "P-384")
    assert refused(r), r  # P-384 is not in the policy's groups


def test_no_compression_secure_renegotiation_announced(moat):
    r = s_client(moat.https_port, "-tls1_2")
    assert "Compression: NONE" in r.out, r
    assert "Secure Renegotiation IS supported" in r.out, r


def test_client_renegotiation_refused(moat):
    # "R" on s_client's stdin starts a renegotiation (TLS 1.2); moat refuses it
    # (SSL_OP_NO_RENEGOTIATION: a no_renegotiation alert) and never renegotiates
    p = subprocess.Popen([tlsutil.OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % moat.https_port,
                          "-servername", "localhost", "-tls1_2"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(1.5)
        p.stdin.close()
        p.wait(timeout=20)
        out = p.stdout.read().decode("utf-8", "replace")
    finally:
        moatctl.stop_process(p, group=False)
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out
    assert out.count("Server certificate") <= 1, out
