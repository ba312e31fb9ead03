"""scripts/ssllabs_grade.py on synthetic testssl.sh JSON: every cap the grader applies.

The base input, REAL, is the flat JSON of a real testssl.sh 3.0.8 run against moat with
the default policy (dev RSA certificate, HSTS one year), minus the certificate PEM, the
fingerprints and most client simulations. Each test changes a few findings the way
testssl.sh words them and checks the grade. No process but the grader's CLI is started.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRADER = os.path.join(REPO, "scripts", "ssllabs_grade.py")

_spec = importlib.util.spec_from_file_location("ssllabs_grade", GRADER)
grader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grader)

# (id, severity, finding) of a real run: testssl.sh 3.0.8 --jsonfile against moat
REAL = [
    ('service', 'INFO', 'HTTP'),
    ('pre_128cipher', 'INFO', 'No 128 cipher limit bug'),
    ('SSLv2', 'OK', 'not offered'),
    ('SSLv3', 'OK', 'not offered'),
    ('TLS1', 'INFO', 'not offered'),
    ('TLS1_1', 'INFO', 'not offered'),
    ('TLS1_2', 'OK', 'offered'),
    ('TLS1_3', 'OK', 'offered with final'),
    ('NPN', 'INFO', 'not offered'),
    ('ALPN', 'INFO', 'not offered'),
    ('cipherlist_NULL', 'OK', 'not offered'),
    ('cipherlist_aNULL', 'OK', 'not offered'),
    ('cipherlist_EXPORT', 'OK', 'not offered'),
    ('cipherlist_LOW', 'OK', 'not offered'),
    ('cipherlist_3DES_IDEA', 'INFO', 'not offered'),
    ('cipherlist_AVERAGE', 'INFO', 'not offered'),
    ('cipherlist_STRONG', 'OK', 'offered'),
    ('PFS', 'OK', 'offered'),
    ('PFS_ciphers', 'INFO', 'TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305 TLS_AES_128_GCM_SHA256 ECDHE-RSA-AES128-GCM-SHA256'),
    ('PFS_ECDHE_curves', 'OK', 'prime256v1 X25519'),
    ('cipher_order', 'OK', 'server'),
    ('protocol_negotiated', 'OK', 'Default protocol TLS1.3'),
    ('cipher_negotiated', 'OK', 'TLS_AES_128_GCM_SHA256, 253 bit ECDH (X25519)'),
    ('cipherorder_TLSv1_2', 'INFO', 'ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305'),
    ('cipherorder_TLSv1_3', 'INFO', 'TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256'),
    ('TLS_extensions', 'INFO', "'renegotiation info/#65281' 'EC point formats/#11' 'session ticket/#35' 'supported versions/#43' 'key share/#51' 'max fragment length/#1' 'extended master secret/#23'"),
    ('TLS_session_ticket', 'INFO', 'valid for 7200 seconds only (<daily)'),
    ('SSL_sessionID_support', 'INFO', 'yes'),
    ('sessionresumption_ticket', 'WARN', 'check failed because of connect problem'),
    ('sessionresumption_ID', 'INFO', 'not supported'),
    ('TLS_timestamp', 'INFO', 'random'),
    ('cert_numbers', 'INFO', '1'),
    ('cert_signatureAlgorithm', 'OK', 'SHA256 with RSA'),
    ('cert_keySize', 'INFO', 'RSA 2048 bits'),
    ('cert_keyUsage', 'INFO', 'Digital Signature, Key Encipherment'),
    ('cert_extKeyUsage', 'INFO', 'TLS Web Server Authentication'),
    ('cert_serialNumberLen', 'INFO', '16'),
    ('cert_commonName', 'OK', 'localhost'),
    ('cert_commonName_wo_SNI', 'INFO', 'localhost'),
    ('cert_subjectAltName', 'INFO', 'localhost *.localhost 127.0.0.1 0:0:0:0:0:0:0:1'),
    ('cert_caIssuers', 'INFO', 'moat dev CA (moat development)'),
    ('cert_trust', 'OK', 'Ok via SAN (same w/o SNI)'),
    ('cert_chain_of_trust', 'OK', 'passed.'),
    ('cert_certificatePolicies_EV', 'INFO', 'no'),
    ('cert_eTLS', 'INFO', 'not present'),
    ('cert_expirationStatus', 'OK', '824 >= 60 days'),
    ('cert_notBefore', 'INFO', '2026-11-24 06:58'),
    ('cert_notAfter', 'OK', '2029-02-26 06:58'),
    ('cert_validityPeriod', 'INFO', 'No finding'),
    ('certs_countServer', 'INFO', '1'),
    ('certs_list_ordering_problem', 'INFO', 'no'),
    ('cert_crlDistributionPoints', 'INFO', '--'),
    ('cert_ocspURL', 'INFO', '--'),
    ('cert_revocation', 'HIGH', 'Neither CRL nor OCSP URI provided'),
    ('OCSP_stapling', 'INFO', 'not offered'),
    ('cert_mustStapleExtension', 'INFO', '--'),
    ('DNS_CAArecord', 'INFO', 'check skipped as instructed'),
    ('certificate_transparency', 'INFO', '--'),
    ('HTTP_status_code', 'INFO', "200 OK ('/')"),
    ('HTTP_clock_skew', 'INFO', 'Got no HTTP time, maybe try different URL?'),
    ('HSTS_time', 'OK', '365 days (=31536000 seconds) > 15552000 seconds'),
    ('HSTS_subdomains', 'OK', 'includes subdomains'),
    ('HSTS_preload', 'INFO', 'domain is NOT marked for preloading'),
    ('HPKP', 'INFO', 'No support for HTTP Public Key Pinning'),
    ('banner_server', 'INFO', 'No Server banner line in header, interesting!'),
    ('banner_application', 'INFO', 'No application banner found'),
    ('cookie_count', 'INFO', "0 at '/'"),
    ('X-Content-Type-Options', 'OK', 'nosniff'),
    ('Referrer-Policy', 'INFO', 'strict-origin-when-cross-origin'),
    ('banner_reverseproxy', 'INFO', '--'),
    ('heartbleed', 'OK', 'not vulnerable, no heartbeat extension'),
    ('CCS', 'OK', 'not vulnerable'),
    ('ticketbleed', 'OK', 'not vulnerable'),
    ('ROBOT', 'OK', 'not vulnerable, no RSA key transport cipher'),
    ('secure_renego', 'OK', 'supported'),
    ('secure_client_renego', 'OK', 'not vulnerable'),
    ('CRIME_TLS', 'OK', 'not vulnerable'),
    ('BREACH', 'OK', "not vulnerable, no HTTP compression  - only supplied '/' tested"),
    ('POODLE_SSL', 'OK', 'not vulnerable, no SSLv3'),
    ('fallback_SCSV', 'OK', 'no protocol below TLS 1.2 offered'),
    ('SWEET32', 'OK', 'not vulnerable'),
    ('FREAK', 'OK', 'not vulnerable'),
    ('DROWN', 'OK', 'not vulnerable on this host and port'),
    ('LOGJAM', 'OK', 'not vulnerable, no DH EXPORT ciphers,'),
    ('LOGJAM-common_primes', 'OK', 'no DH key with <= TLS 1.2'),
    ('BEAST', 'OK', 'not vulnerable, no SSL3 or TLS1'),
    ('LUCKY13', 'OK', 'not vulnerable'),
    ('RC4', 'OK', 'not vulnerable'),
    ('cipher_x1302', 'INFO', 'x1302   TLS_AES_256_GCM_SHA384            ECDH 253   AESGCM      256      TLS_AES_256_GCM_SHA384'),
    ('cipher_x1303', 'INFO', 'x1303   TLS_CHACHA20_POLY1305_SHA256      ECDH 253   ChaCha20    256      TLS_CHACHA20_POLY1305_SHA256'),
    ('cipher_xc030', 'INFO', 'xc030   ECDHE-RSA-AES256-GCM-SHA384       ECDH 253   AESGCM      256      TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'),
    ('cipher_xcca8', 'INFO', 'xcca8   ECDHE-RSA-CHACHA20-POLY1305       ECDH 253   ChaCha20    256      TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256'),
    ('cipher_x1301', 'INFO', 'x1301   TLS_AES_128_GCM_SHA256            ECDH 253   AESGCM      128      TLS_AES_128_GCM_SHA256'),
    ('cipher_xc02f', 'INFO', 'xc02f   ECDHE-RSA-AES128-GCM-SHA256       ECDH 253   AESGCM      128      TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'),
    ('clientsimulation-chrome_101_win10', 'INFO', 'TLSv1.3 TLS_AES_128_GCM_SHA256'),
    ('clientsimulation-firefox_100_win10', 'INFO', 'TLSv1.3 TLS_AES_128_GCM_SHA256'),
    ('clientsimulation-safari_154_osx_1231', 'INFO', 'TLSv1.3 TLS_AES_128_GCM_SHA256'),
    ('clientsimulation-java_8u161', 'INFO', 'TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256'),
    ('scanTime', 'INFO', '87'),
]


def base():
    """A copy of REAL as a list of testssl.sh flat-JSON dicts."""
    return [{"id": i, "ip": "localhost/127.0.0.1", "port": "8443", "severity": s, "finding": f}
            for i, s, f in REAL]


def put(entries, fid, finding, severity="INFO", cve=None):
    """Sets (or adds) the finding with this id."""
    for e in entries:
        if e["id"] == fid:
            e["finding"], e["severity"] = finding, severity
            if cve:
                e["cve"] = cve
            return entries
    d = {"id": fid, "ip": "localhost/127.0.0.1", "port": "8443", "severity": severity,
         "finding": finding}
    if cve:
        d["cve"] = cve
    entries.append(d)
    return entries


def drop(entries, prefix):
    entries[:] = [e for e in entries if not e["id"].startswith(prefix)]
    return entries


def cipher(entries, hexcode, name, kx, enc, bits, iana="-"):
    return put(entries, "cipher_x" + hexcode,
               "x%s   %-32s  %-9s  %-10s  %-5s  %s" % (hexcode, name, kx, enc, bits, iana))


def tls12_only(entries):
    put(entries, "TLS1_3", "not offered", "MEDIUM")
    drop(entries, "cipher_x13")
    return entries


def grade_of(entries, tmp_path, name="scan.json"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        json.dump(entries, f)
    return grader.grade(grader.load(path))


def caps_text(r):
    return "\n".join("%s %s %s" % c for c in r.caps) + "\n" + \
        "\n".join("%s %s" % w for w in r.warnings)


# ---- the real scan and the grades the brief asks for ----------------------------------

def test_real_moat_scan_grades_a_plus(tmp_path):
    r = grade_of(base(), tmp_path)
    assert r.errors == []
    assert r.scores["Protocol support"][0] == 100
    assert r.scores["Key exchange"][0] == 90      # RSA 2048 (and X25519 ~ RSA 3072)
    assert r.scores["Cipher strength"][0] == 90   # (256 -> 100 + 128 -> 80) / 2
    assert r.score == 93 and r.score_letter == "A"
    assert r.caps == [] and r.warnings == []
    assert r.grade == "A+", r.as_dict()


def test_short_hsts_gives_a(tmp_path):
    e = put(base(), "HSTS_time", "max-age too short. 1 days (=86400 seconds) < 15552000 seconds",
            "MEDIUM")
    r = grade_of(e, tmp_path)
    assert r.grade == "A", r.as_dict()
    assert any("86400" in x for x in r.a_plus)


def test_missing_hsts_gives_a_minus(tmp_path):
    e = drop(base(), "HSTS")
    put(e, "HSTS", "not offered", "LOW")
    r = grade_of(e, tmp_path)
    assert r.grade == "A-", r.as_dict()
    assert "HSTS missing" in caps_text(r)


def test_no_tls13_gives_a_minus(tmp_path):
    r = grade_of(tls12_only(base()), tmp_path)
    assert r.grade == "A-", r.as_dict()
    assert "TLS 1.3 not supported" in caps_text(r)


@pytest.mark.parametrize("proto", ["TLS1", "TLS1_1"])
def test_tls10_or_11_gives_b(tmp_path, proto):
    e = put(base(), proto, "offered (deprecated)", "LOW")
    r = grade_of(e, tmp_path)
    assert r.grade == "B", r.as_dict()
    assert "2020" in caps_text(r)
    assert r.scores["Protocol support"][0] == (100 + (90 if proto == "TLS1" else 95)) / 2


def test_3des_gives_c(tmp_path):
    e = cipher(base(), "0a", "DES-CBC3-SHA", "RSA", "3DES", 168,
               "TLS_RSA_WITH_3DES_EDE_CBC_SHA")
    put(e, "cipherlist_3DES_IDEA", "offered", "MEDIUM")
    put(e, "SWEET32", "VULNERABLE, uses 64 bit block ciphers", "LOW")
    r = grade_of(e, tmp_path)
    assert r.grade == "C", r.as_dict()
    assert "SWEET32" in caps_text(r)
    # 3DES counts as 112 bits (SSL Labs' figure, testssl.sh prints 168): (100 + 20) / 2
    assert r.scores["Cipher strength"][0] == 60


def test_sslv3_with_poodle_gives_c(tmp_path):
    e = put(base(), "SSLv3", "offered", "HIGH")
    put(e, "POODLE_SSL", "VULNERABLE (NOT ok), uses SSLv3+CBC (check if TLS_FALLBACK_SCSV "
        "mitigation is below)", "HIGH", cve="CVE-2014-3566")
    r = grade_of(e, tmp_path)
    assert r.grade == "C", r.as_dict()
    assert r.scores["Protocol support"][0] == 90  # (100 + 80) / 2


def test_heartbleed_gives_f(tmp_path):
    e = put(base(), "heartbleed", "VULNERABLE (NOT ok)", "CRITICAL", cve="CVE-2014-0160")
    r = grade_of(e, tmp_path)
    assert r.grade == "F", r.as_dict()
    assert "Heartbleed" in caps_text(r)


def test_sslv3_and_heartbleed_gives_f(tmp_path):
    e = put(base(), "SSLv3", "offered", "HIGH")
    put(e, "heartbleed", "VULNERABLE (NOT ok)", "CRITICAL", cve="CVE-2014-0160")
    assert grade_of(e, tmp_path).grade == "F"


def test_sslv2_gives_f(tmp_path):
    e = put(base(), "SSLv2", "offered (NOT ok)", "CRITICAL")
    r = grade_of(e, tmp_path)
    assert r.grade == "F"
    assert r.scores["Protocol support"][0] == 50  # (100 + 0) / 2


def test_untrusted_chain_gives_t(tmp_path):
    e = put(base(), "cert_chain_of_trust", "failed (chain incomplete).", "CRITICAL")
    r = grade_of(e, tmp_path)
    assert r.grade == "T", r.as_dict()
    assert r.grade_ignoring_trust == "A+"


def test_expired_certificate_gives_t(tmp_path):
    e = put(base(), "cert_expirationStatus", "expired", "CRITICAL")
    assert grade_of(e, tmp_path).grade == "T"


def test_name_mismatch_gives_m(tmp_path):
    e = put(base(), "cert_trust", "certificate does not match supplied URI (same w/o SNI)",
            "HIGH")
    r = grade_of(e, tmp_path)
    assert r.grade == "M", r.as_dict()
    assert r.grade_ignoring_trust == "A+"


# ---- the other caps -------------------------------------------------------------------

def test_rc4_gives_b_and_rc4_only_c(tmp_path):
    e = cipher(base(), "c011", "ECDHE-RSA-RC4-SHA", "ECDH 253", "RC4", 128,
               "TLS_ECDHE_RSA_WITH_RC4_128_SHA")
    put(e, "RC4", "VULNERABLE (NOT ok): ECDHE-RSA-RC4-SHA", "HIGH")
    assert grade_of(e, tmp_path).grade == "B"
    e = tls12_only(drop(base(), "cipher_x"))
    cipher(e, "05", "RC4-SHA", "RSA", "RC4", 128, "TLS_RSA_WITH_RC4_128_SHA")
    r = grade_of(e, tmp_path, "rc4only.json")
    assert r.grade == "C", r.as_dict()


def test_no_forward_secrecy_gives_b(tmp_path):
    e = tls12_only(drop(base(), "cipher_x"))
    cipher(e, "9c", "AES128-GCM-SHA256", "RSA", "AESGCM", 128, "TLS_RSA_WITH_AES_128_GCM_SHA256")
    cipher(e, "9d", "AES256-GCM-SHA384", "RSA", "AESGCM", 256, "TLS_RSA_WITH_AES_256_GCM_SHA384")
    put(e, "PFS", "not offered", "MEDIUM")
    r = grade_of(e, tmp_path)
    assert r.grade == "B", r.as_dict()
    assert "no FS" in caps_text(r)


def test_no_aead_gives_b(tmp_path):
    e = tls12_only(drop(base(), "cipher_x"))
    cipher(e, "c013", "ECDHE-RSA-AES128-SHA", "ECDH 253", "AES", 128,
           "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
    cipher(e, "c014", "ECDHE-RSA-AES256-SHA", "ECDH 253", "AES", 256,
           "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA")
    put(e, "cipherlist_STRONG", "not offered", "MEDIUM")
    r = grade_of(e, tmp_path)
    assert r.grade == "B", r.as_dict()
    assert "no AEAD" in caps_text(r)


@pytest.mark.parametrize("bits,expected", [(1024, "B"), (768, "F")])
def test_weak_dh(tmp_path, bits, expected):
    e = cipher(base(), "9e", "DHE-RSA-AES128-GCM-SHA256", "DH %d" % bits, "AESGCM", 128,
               "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256")
    r = grade_of(e, tmp_path)
    assert r.grade == expected, r.as_dict()
    assert "DH parameters of %d bits" % bits in caps_text(r)


@pytest.mark.parametrize("key,expected,kx", [("RSA 1024 bits", "B", 80),
                                             ("RSA 512 bits", "F", 40),
                                             ("RSA 4096 bits", "A+", 90),
                                             ("EC 256 bits", "A+", 90),
                                             ("EC 384 bits", "A+", 90)])
def test_certificate_key_size(tmp_path, key, expected, kx):
    e = put(base(), "cert_keySize", key)
    r = grade_of(e, tmp_path)
    assert r.grade == expected, r.as_dict()
    # the weakest of the certificate key and the ECDHE groups (P-256/X25519 ~ RSA 3072)
    assert r.scores["Key exchange"][0] == kx


def test_md5_signature_gives_f_and_sha1_t(tmp_path):
    assert grade_of(put(base(), "cert_signatureAlgorithm", "MD5 with RSA", "CRITICAL"),
                    tmp_path).grade == "F"
    assert grade_of(put(base(), "cert_signatureAlgorithm", "SHA1 with RSA", "LOW"),
                    tmp_path, "sha1.json").grade == "T"


@pytest.mark.parametrize("fid,finding,cve", [
    ("ROBOT", "VULNERABLE (NOT ok)", "CVE-2017-17382"),
    ("ticketbleed", "VULNERABLE (NOT ok), memory fragments do not differ", "CVE-2016-9244"),
    ("CCS", "VULNERABLE (NOT ok)", "CVE-2014-0224"),
    ("DROWN", "VULNERABLE (NOT ok), SSLv2 offered with 2 ciphers", "CVE-2016-0800"),
    ("FREAK", "VULNERABLE (NOT ok), uses EXPORT RSA ciphers", "CVE-2015-0204"),
    ("openssl_padding_oracle", "VULNERABLE (NOT ok)", "CVE-2016-2107"),
    ("POODLE_TLS", "VULNERABLE (NOT ok)", "CVE-2014-8730"),
])
def test_vulnerabilities_give_f(tmp_path, fid, finding, cve):
    r = grade_of(put(base(), fid, finding, "HIGH", cve=cve), tmp_path)
    assert r.grade == "F", r.as_dict()


def test_crime_gives_c(tmp_path):
    e = put(base(), "CRIME_TLS", "VULNERABLE (NOT ok)", "HIGH", cve="CVE-2012-4929")
    assert grade_of(e, tmp_path).grade == "C"


def test_renegotiation(tmp_path):
    # no RFC 5746 support: a warning (A-); and renegotiation possible without it: F
    e = put(base(), "secure_renego", "Not supported / VULNERABLE (NOT ok)", "CRITICAL")
    r = grade_of(e, tmp_path)
    assert r.grade == "A-", r.as_dict()
    put(e, "secure_client_renego", "VULNERABLE (NOT ok), DoS threat", "MEDIUM")
    r = grade_of(e, tmp_path, "insecure.json")
    assert r.grade == "F", r.as_dict()


def test_null_cipher_zeroes_the_score(tmp_path):
    e = cipher(base(), "c010", "ECDHE-RSA-NULL-SHA", "ECDH 253", "None", 0,
               "TLS_ECDHE_RSA_WITH_NULL_SHA")
    put(e, "cipherlist_NULL", "offered (NOT ok)", "CRITICAL")
    r = grade_of(e, tmp_path)
    assert r.scores["Cipher strength"][0] == 50   # (100 + 0) / 2
    assert r.grade == "F"


def test_fallback_scsv_missing_withholds_a_plus(tmp_path):
    e = put(base(), "fallback_SCSV", "Downgrade attack prevention NOT supported", "HIGH")
    assert grade_of(e, tmp_path).grade == "A"


def test_not_vulnerable_wordings_are_negatives(tmp_path):
    e = base()
    put(e, "ROBOT", "not vulnerable, no RSA key transport cipher", "OK")
    put(e, "heartbleed", "likely not vulnerable, timed out", "OK")
    put(e, "LUCKY13", "potentially vulnerable, uses cipher block chaining", "LOW")
    r = grade_of(e, tmp_path)
    assert r.grade == "A+", r.as_dict()
    assert any("LUCKY13" in n for n in r.notes)


# ---- input formats --------------------------------------------------------------------

def test_two_certificates_with_suffixed_ids(tmp_path):
    e = []
    for d in base():
        if d["id"].startswith("cert_"):
            for n, key in ((1, "RSA 2048 bits"), (2, "EC 256 bits")):
                c = dict(d, id="%s <cert#%d>" % (d["id"], n))
                if d["id"] == "cert_keySize":
                    c["finding"] = key
                e.append(c)
        else:
            e.append(d)
    r = grade_of(e, tmp_path)
    assert r.grade == "A+", r.as_dict()
    put(e, "cert_trust <cert#2>", "certificate does not match supplied URI", "HIGH")
    r = grade_of(e, tmp_path, "mismatch.json")
    assert r.grade == "M"
    assert "certificate #2" in r.mismatch[0]


def test_per_protocol_cipher_ids_and_fs_name(tmp_path):
    # testssl.sh -E / 3.1 style: "cipher-tls1_2_xc02f" with the protocol first, "FS"
    e = drop(base(), "cipher_x")
    drop(e, "PFS")
    put(e, "FS", "offered", "OK")
    put(e, "cipher-tls1_2_xc02f", "TLSv1.2   xc02f   ECDHE-RSA-AES128-GCM-SHA256   ECDH 253   "
        "AESGCM   128   TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    put(e, "cipher-tls1_3_x1302", "TLSv1.3   x1302   TLS_AES_256_GCM_SHA384   ECDH 253   "
        "AESGCM   256   TLS_AES_256_GCM_SHA384")
    r = grade_of(e, tmp_path)
    assert r.grade == "A+", r.as_dict()
    assert "2 suites" in r.scores["Cipher strength"][1]


def test_without_per_suite_results_uses_names(tmp_path):
    r = grade_of(drop(base(), "cipher_x"), tmp_path)
    assert r.grade == "A+", r.as_dict()
    assert r.scores["Cipher strength"][0] == 90


def test_pretty_json_is_read(tmp_path):
    doc = {"Invocation": "testssl ...", "scanResult": [{
        "targetHost": "localhost", "port": "8443",
        "protocols": [d for d in base() if d["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1",
                                                        "TLS1_2", "TLS1_3")],
        "rest": [d for d in base() if d["id"] not in ("SSLv2", "SSLv3", "TLS1", "TLS1_1",
                                                       "TLS1_2", "TLS1_3")]}]}
    path = os.path.join(str(tmp_path), "pretty.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    assert grader.grade(grader.load(path)).grade == "A+"


def run_cli(tmp_path, entries=None, text=None):
    path = os.path.join(str(tmp_path), "cli.json")
    with open(path, "w") as f:
        f.write(text if text is not None else json.dumps(entries))
    return subprocess.run([sys.executable, GRADER, path], capture_output=True, text=True,
                          timeout=60)


def test_cli_exit_codes(tmp_path):
    p = run_cli(tmp_path, base())
    assert p.returncode == 0, p.stdout + p.stderr
    assert "GRADE: A+" in p.stdout
    assert "Protocol support (30%)" in p.stdout and "weighted score" in p.stdout
    p = run_cli(tmp_path, put(base(), "TLS1", "offered (deprecated)", "LOW"))
    assert p.returncode == 1
    assert "GRADE: B" in p.stdout and "TLS 1.0 supported" in p.stdout
    p = run_cli(tmp_path, tls12_only(base()))
    assert p.returncode == 1 and "GRADE: A-" in p.stdout  # A- is below A
    p = run_cli(tmp_path, text="this is not json")
    assert p.returncode == 2
    p = run_cli(tmp_path, [])
    assert p.returncode == 2
    p = run_cli(tmp_path, put(base(), "scanProblem", "Overall scan time exceeded", "FATAL"))
    assert p.returncode == 2


def test_cli_reads_a_truncated_flat_file(tmp_path):
    text = json.dumps(base(), indent=1)
    text = text.rstrip().rstrip("]")  # testssl.sh interrupted before closing the array
    p = run_cli(tmp_path, text=text)
    assert p.returncode == 0, p.stdout + p.stderr
