"""A real testssl.sh scan of moat as findings, and helpers to change it: the base input
of the grader's tests (test_grader.py) and of tests/integration/test_tls_scan.py.

REAL is the flat JSON of a real testssl.sh 3.0.8 run against moat with the default
policy (dev RSA certificate, HSTS one year), minus the certificate PEM, the
fingerprints and most client simulations. The helpers change findings the way
testssl.sh words them.
"""

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
