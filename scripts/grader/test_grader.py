"""The grader (scripts/grader) on synthetic testssl.sh JSON: every cap it applies.

The base input is sample.REAL, a real testssl.sh 3.0.8 scan of moat. Each test changes
a few findings the way testssl.sh words them and checks the grade; test_rule_fires
shows each row of the rule table (rules.RULES) applying. No process but the grader's
CLI is started.

    /usr/bin/python3 -m pytest scripts/grader
"""

import json
import os
import subprocess
import sys

import pytest

import grader
from grader import rules
from grader.scores import RANK
from grader.sample import base, cipher, drop, put, tls12_only

GRADER = os.path.dirname(os.path.abspath(__file__))  # python3 scripts/grader FILE


def grade_of(entries, tmp_path, name="scan.json"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        json.dump(entries, f)
    return grader.grade(grader.load(path))


def caps_text(r):
    return "\n".join("%s %s %s" % c for c in r.caps) + "\n" + \
        "\n".join("%s %s" % w for w in r.warnings)


# ---- the real scan and the grades moat's TLS policy asks for --------------------------

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


# ---- every row of the rule table fires ------------------------------------------------

def vulnerable_finding(fid, cve=None):
    return lambda e: put(e, fid, "VULNERABLE (NOT ok)", "HIGH", cve=cve)


def only_tls10(e):
    put(e, "TLS1", "offered (deprecated)", "LOW")
    put(e, "TLS1_2", "not offered", "MEDIUM")
    return tls12_only(e)


def triple_des(e):
    return cipher(e, "0a", "DES-CBC3-SHA", "RSA", "3DES", 168, "TLS_RSA_WITH_3DES_EDE_CBC_SHA")


# rule id -> a change of the real scan that makes that row (and maybe others) apply
RULE_CASES = {
    "cert-key-below-1024": lambda e: put(e, "cert_keySize", "RSA 512 bits"),
    "cert-key-below-2048": lambda e: put(e, "cert_keySize", "RSA 1024 bits"),
    "cert-dsa-key": lambda e: put(e, "cert_keySize", "DSA 2048 bits"),
    "cert-md5-signature": lambda e: put(e, "cert_signatureAlgorithm", "MD5 with RSA",
                                        "CRITICAL"),
    "cert-sha1-signature": lambda e: put(e, "cert_signatureAlgorithm", "SHA1 with RSA", "LOW"),
    "cert-name-mismatch": lambda e: put(e, "cert_trust", "certificate does not match "
                                        "supplied URI (same w/o SNI)", "HIGH"),
    "cert-chain-untrusted": lambda e: put(e, "cert_chain_of_trust",
                                          "failed (chain incomplete).", "CRITICAL"),
    "cert-not-valid-now": lambda e: put(e, "cert_expirationStatus", "expired", "CRITICAL"),
    "cert-revoked": lambda e: put(e, "cert_ocspRevoked", "revoked", "CRITICAL"),
    "cert-revocation-unchecked": lambda e: e,  # the real scan: no CRL, no OCSP URI
    "sslv2": lambda e: put(e, "SSLv2", "offered (NOT ok)", "CRITICAL"),
    "sslv3": lambda e: put(e, "SSLv3", "offered", "HIGH"),
    "poodle-ssl": lambda e: put(put(e, "SSLv3", "offered", "HIGH"), "POODLE_SSL",
                                "VULNERABLE (NOT ok), uses SSLv3+CBC", "HIGH"),
    "tls10-tls11": lambda e: put(e, "TLS1_1", "offered (deprecated)", "LOW"),
    "no-tls12": only_tls10,
    "no-tls13": tls12_only,
    "rc4-only": lambda e: cipher(tls12_only(drop(e, "cipher_x")), "05", "RC4-SHA", "RSA",
                                 "RC4", 128),
    "rc4": lambda e: cipher(e, "c011", "ECDHE-RSA-RC4-SHA", "ECDH 253", "RC4", 128),
    "block64-tls11": triple_des,
    "block64-old-protocols": lambda e: triple_des(only_tls10(e)),
    "no-forward-secrecy": lambda e: put(e, "PFS", "not offered", "MEDIUM"),
    "no-fs-reference-browsers": lambda e: put(e, "clientsimulation-chrome_101_win10",
                                              "TLSv1.2 AES128-GCM-SHA256"),
    "no-aead": lambda e: cipher(put(tls12_only(drop(e, "cipher_x")), "cipherlist_STRONG",
                                    "not offered"), "c013", "ECDHE-RSA-AES128-SHA",
                                "ECDH 253", "AES", 128),
    "export": lambda e: put(e, "cipherlist_EXPORT", "offered (NOT ok)", "CRITICAL"),
    "dh-below-1024": lambda e: cipher(e, "9e", "DHE-RSA-AES128-GCM-SHA256", "DH 768",
                                      "AESGCM", 128),
    "dh-below-2048": lambda e: cipher(e, "9e", "DHE-RSA-AES128-GCM-SHA256", "DH 1024",
                                      "AESGCM", 128),
    "anonymous": lambda e: put(e, "cipherlist_aNULL", "offered (NOT ok)", "CRITICAL"),
    "null": lambda e: put(e, "cipherlist_NULL", "offered (NOT ok)", "CRITICAL"),
    "heartbleed": vulnerable_finding("heartbleed"),
    "ccs-injection": vulnerable_finding("CCS"),
    "ticketbleed": vulnerable_finding("ticketbleed"),
    "robot": vulnerable_finding("ROBOT"),
    "poodle-tls": vulnerable_finding("POODLE_TLS"),
    "padding-oracle": vulnerable_finding("openssl_padding_oracle"),
    "drown": vulnerable_finding("DROWN"),
    "freak": vulnerable_finding("FREAK"),
    "logjam": vulnerable_finding("LOGJAM"),
    "zombie-poodle": vulnerable_finding("zombie_poodle"),
    "goldendoodle": vulnerable_finding("goldendoodle"),
    "opossum": vulnerable_finding("some_new_id", cve="CVE-2023-28346"),  # found by its CVE
    "crime": vulnerable_finding("CRIME_TLS"),
    "insecure-renegotiation": lambda e: put(put(e, "secure_renego", "Not supported / "
                                                "VULNERABLE (NOT ok)", "CRITICAL"),
                                            "secure_client_renego", "VULNERABLE (NOT ok)",
                                            "MEDIUM"),
    "no-secure-renegotiation": lambda e: put(e, "secure_renego", "Not supported / "
                                             "VULNERABLE (NOT ok)", "CRITICAL"),
    "client-renegotiation": lambda e: put(e, "secure_client_renego",
                                          "VULNERABLE (NOT ok), DoS threat", "MEDIUM"),
    "beast": lambda e: put(e, "BEAST", "VULNERABLE -- but also supports higher protocols",
                           "LOW"),
    "lucky13": lambda e: put(e, "LUCKY13", "potentially vulnerable, uses cipher block "
                             "chaining", "LOW"),
    "breach": lambda e: put(e, "BREACH", "potentially VULNERABLE, gzip HTTP compression "
                            "detected", "MEDIUM"),
    "hsts-not-valid": lambda e: put(drop(e, "HSTS"), "HSTS", "not offered", "LOW"),
    "a-plus-hsts-max-age": lambda e: put(e, "HSTS_time", "max-age too short. 1 days "
                                         "(=86400 seconds) < 15552000 seconds", "MEDIUM"),
    "a-plus-fallback-scsv": lambda e: put(e, "fallback_SCSV", "Downgrade attack prevention "
                                          "NOT supported", "HIGH"),
}


def effect_seen(rule, r):
    """The row's effect shows in the result (its reason text where it belongs)."""
    if rule.effect in RANK:
        return any(g == rule.effect and src == rule.source for g, _, src in r.caps) and \
            RANK[r.grade_ignoring_trust] >= \
            RANK[rule.effect]
    if rule.effect == rules.WARNING:
        return any(src == rule.source for _, src in r.warnings) and r.grade == "A-"
    if rule.effect == rules.TRUST:
        return r.trust and r.grade == "T"
    if rule.effect == rules.MISMATCH:
        return r.mismatch and r.grade == "M"
    if rule.effect == rules.NOTE:
        return bool(r.notes)
    return any(x.startswith("not A+: ") for x in r.a_plus) and r.grade == "A"


def test_every_rule_has_a_case():
    ids = [x.id for x in rules.RULES]
    assert len(ids) == len(set(ids)), "duplicate rule ids"
    assert sorted(ids) == sorted(RULE_CASES)


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda x: x.id)
def test_rule_fires(tmp_path, rule):
    assert rule.id not in grade_of(base(), tmp_path, "base.json").fired or \
        rule.id == "cert-revocation-unchecked"
    r = grade_of(RULE_CASES[rule.id](base()), tmp_path)
    assert r.errors == [], r.errors
    assert rule.id in r.fired, (r.fired, r.as_dict())
    assert effect_seen(rule, r), r.as_dict()
