"""The rule table: every cap, penalty and withheld A+ of the SSL Labs rating guide (and
of moat's own policy), one row each.

A row is Rule(id, scope, effect, when, reason, source):

  scope   CERT: checked once per certificate, `when` gets its CertFacts;
          SERVER: checked once, `when` gets the Facts;
          A_PLUS: checked only when the grade after the caps is A, `when` gets the Facts.
  effect  a grade ("A-" .. "F"): caps the grade there;
          WARNING: a warning (rating guide 2009d: caps at A-, reported as a warning);
          TRUST / MISMATCH: the certificate is not trusted (grade T) / does not match
          the name (grade M); the grade "if trust issues are ignored" is kept;
          NOTE: reported, no effect on the grade;
          NOT_A_PLUS: a reason the A is not raised to A+.
  when    a small function over the facts: false when the row does not apply, true when
          it applies once, a tuple (the reason's arguments) or a list of tuples (applies
          once per tuple).
  reason  the text shown in the report, "%"-formatted with the tuple.
  source  the rule it implements, shown in brackets next to a cap or a warning.

Rows apply in table order (certificate rows for each certificate in turn, then the
server rows), which is the order the report lists them in.

Sources give the rating guide revision letter where we know it (2009c Feb 2013, 2009d
Jan 2014, 2009l Mar 2016, 2009m May 2016) and otherwise the date of the SSL Labs
announcement that introduced the rule (from memory of the published changelog: check
them against the guide before relying on an exact letter). Rows whose source says
"moat policy" are not SSL Labs rules: they make the grade stricter where moat's own
policy (docs/tls.md) wants more than SSL Labs does.
"""

import re
from collections import namedtuple

from .findings import offered, vulnerable
from .scores import HSTS_A_PLUS, PROTOCOL_NAME

Rule = namedtuple("Rule", "id scope effect when reason source")

CERT, SERVER, A_PLUS = "certificate", "server", "A+"
WARNING, TRUST, MISMATCH, NOTE, NOT_A_PLUS = "warning", "T", "M", "note", "not A+"


# ---- certificate conditions (over one CertFacts) ---------------------------------------

def key_below(limit, floor=0):
    def when(c):
        return c.key is not None and floor <= c.key.eq < limit and \
            (c.label, c.key.alg, c.key.bits)
    return when


def signature_md5(c):
    s = c.signature.finding.upper() if c.signature is not None else ""
    return ("MD5" in s or "MD2" in s) and (c.label, c.signature.finding)


def signature_sha1(c):
    s = c.signature.finding.upper() if c.signature is not None else ""
    return not ("MD5" in s or "MD2" in s) and re.search(r"SHA-?1(?!\d)", s) and \
        (c.label, c.signature.finding)


def name_mismatch(c):
    if c.trust is None:
        return False
    t = c.trust.finding.lower()
    return not t.startswith("ok") and ("does not match" in t or "mismatch" in t or
                                       "not ok" in t or
                                       c.trust.severity in ("HIGH", "CRITICAL")) and \
        (c.label, c.trust.finding)


def chain_untrusted(c):
    return c.chain is not None and not c.chain.finding.strip().lower().startswith("passed") \
        and (c.label, c.chain.finding)


def not_valid_now(c):
    t = c.expiration.finding.lower() if c.expiration is not None else ""
    return ("expired" in t or "not yet valid" in t) and (c.label, c.expiration.finding)


def revocation_unchecked(c):
    return c.revocation is not None and \
        c.revocation.severity in ("HIGH", "CRITICAL", "MEDIUM") and \
        (c.label, c.revocation.finding)


# ---- server conditions (over the Facts) ------------------------------------------------

def old_tls(x):
    old = [PROTOCOL_NAME[p] for p in ("TLS1", "TLS1_1") if x.protos.get(p)]
    return bool(old) and (" and ".join(old),)


def rc4_only(x):
    return bool(x.rc4) and bool(x.ciphers) and all(c.rc4 for c in x.ciphers)


def rc4_some(x):
    return bool(x.rc4) and not rc4_only(x) and \
        (", ".join(str(getattr(c, "name", c)) for c in x.rc4[:4]),)


def block64(with_modern_tls):
    def when(x):
        return x.block64 is not None and \
            x.offers("TLS1_1", "TLS1_2", "TLS1_3") == with_modern_tls and (x.block64,)
    return when


def no_fs_browsers(x):
    return x.forward_secrecy is not False and bool(x.non_fs_browsers) and \
        ("; ".join("%s: %s" % (f.id, f.finding) for f in x.non_fs_browsers[:3]),)


def dh_below(limit, floor=0):
    def when(x):
        return bool(x.dh_bits) and floor <= min(x.dh_bits) < limit and (min(x.dh_bits),)
    return when


def vulnerable_to(fid, cve):
    """The first finding with this id (or CVE) that says vulnerable: (its text,)."""
    def when(x):
        for f in x.fs:
            if (f.id.lower() == fid.lower() or (cve and cve in f.cve)) and vulnerable(f):
                return (f.finding,)
        return False
    return when


def flagged(fid):
    """The finding with this id says vulnerable: (its text,)."""
    def when(x):
        return x.vulnerable(fid) and (x.first(fid).finding,)
    return when


def no_secure_renegotiation(x):
    sr = x.first("secure_renego")
    return sr is not None and not offered(sr.finding)


def insecure_renegotiation(x):
    return no_secure_renegotiation(x) and x.vulnerable("secure_client_renego") and \
        (x.first("secure_renego").finding, x.first("secure_client_renego").finding)


def renegotiation_warning(x):
    return no_secure_renegotiation(x) and not x.vulnerable("secure_client_renego") and \
        (x.first("secure_renego").finding,)


def client_renegotiation(x):
    return not no_secure_renegotiation(x) and x.vulnerable("secure_client_renego") and \
        (x.first("secure_client_renego").finding,)


def hsts_not_valid(x):
    state, _, f = x.hsts
    return x.is_http and state in ("missing", "invalid", "disabled", "unknown") and \
        (state, " (%s)" % f.finding if f is not None else " (no HSTS result in the scan)")


def hsts_short(x):
    return (x.hsts_age is None or x.hsts_age < HSTS_A_PLUS) and (x.hsts_age, HSTS_A_PLUS)


def no_fallback_scsv(x):
    fb = x.first("fallback_SCSV")
    return fb is not None and ("not supported" in fb.finding.lower() or
                               fb.severity in ("MEDIUM", "HIGH", "CRITICAL")) and \
        (fb.finding,)


# ---- the table -------------------------------------------------------------------------

def fatal_vulnerability(rid, fid, cve, label, source):
    return Rule(rid, SERVER, "F", vulnerable_to(fid, cve),
                "vulnerable to %s: %%s" % label, source)


def informative(fid):
    return Rule(fid.lower(), SERVER, NOTE, flagged(fid),
                fid + ": %s (no grade effect in current SSL Labs rules)",
                "no grade effect in current SSL Labs rules")


RULES = [
    # guide "Certificate Inspection" and its amendments, for each certificate
    Rule("cert-key-below-1024", CERT, "F", key_below(1024),
         "%s key %s %d bits is below 1024 bits",
         "rating guide 2009d: key < 1024 bits -> F"),
    Rule("cert-key-below-2048", CERT, "B", key_below(2048, 1024),
         "%s key %s %d bits is below 2048 bits",
         "rating guide 2009d: key < 2048 bits -> B"),
    Rule("cert-dsa-key", CERT, NOTE, lambda c: c.key is not None and c.key.alg == "DSA" and
         (c.label,), "%s uses a DSA key", "informative"),
    Rule("cert-md5-signature", CERT, "F", signature_md5, "%s is signed with %s",
         "rating guide 2009d: MD5/MD2 certificate signature -> F"),
    # SHA-1 leaf signatures: distrusted by browsers since 2017, which SSL Labs reports
    # as "not trusted" (T)
    Rule("cert-sha1-signature", CERT, TRUST, signature_sha1, "%s is signed with SHA-1 (%s)",
         "browsers distrust SHA-1 certificates (2017): not trusted"),
    Rule("cert-name-mismatch", CERT, MISMATCH, name_mismatch, "%s: %s",
         "guide Certificate Inspection: domain name mismatch -> M"),
    Rule("cert-chain-untrusted", CERT, TRUST, chain_untrusted, "%s chain of trust: %s",
         "guide Certificate Inspection: self-signed, unknown CA, chain error -> T"),
    Rule("cert-not-valid-now", CERT, TRUST, not_valid_now, "%s validity: %s",
         "guide Certificate Inspection: expired or not yet valid -> T"),
    Rule("cert-revoked", CERT, "F", lambda c: [(c.label, f.finding) for f in c.revoked],
         "%s is revoked (%s)", "rating guide: revoked certificate -> F"),
    Rule("cert-revocation-unchecked", CERT, NOTE, revocation_unchecked,
         "%s: %s (no grade effect; not checked for private CAs)", "informative"),

    # protocols
    Rule("sslv2", SERVER, "F", lambda x: x.protos.get("SSLv2"), "SSL 2.0 is supported",
         "rating guide 2009c: SSL 2.0 -> F"),
    # a plain SSL 3 is not an F by these rules; SSL 2 is
    Rule("sslv3", SERVER, "B", lambda x: x.protos.get("SSLv3"), "SSL 3.0 is supported",
         "SSL Labs Oct 2014 amendment (POODLE): SSL 3 -> B"),
    Rule("poodle-ssl", SERVER, "C", flagged("POODLE_SSL"),
         "vulnerable to POODLE (SSL 3 with CBC): %s",
         "SSL Labs Oct 2014 amendment: POODLE (SSL 3 + CBC) -> C"),
    # Jan 2020 (announced Nov 2018): "Servers that support TLS 1.0 or TLS 1.1 are capped
    # to B"
    Rule("tls10-tls11", SERVER, "B", old_tls, "%s supported",
         "SSL Labs Jan 2020 amendment: TLS 1.0/1.1 -> B"),
    # 2009d "TLS 1.2 is now required to get an A" (B); Jan 2017: no TLS 1.2 -> C
    Rule("no-tls12", SERVER, "C", lambda x: not x.offers("TLS1_2", "TLS1_3"),
         "neither TLS 1.2 nor TLS 1.3 supported",
         "rating guide 2009d (B) and Jan 2017 amendment (C): no TLS 1.2 -> C"),
    # docs/tls.md "TLS 1.2 and TLS 1.3"; keeps our own bar above "A" only
    Rule("no-tls13", SERVER, "A-", lambda x: not x.protos.get("TLS1_3"),
         "TLS 1.3 not supported", "moat policy: no TLS 1.3 -> A-"),

    # cipher suites
    Rule("rc4-only", SERVER, "C", rc4_only, "only RC4 suites offered",
         "SSL Labs 2015 (1.20.28): RC4-only -> C"),
    Rule("rc4", SERVER, "B", rc4_some, "RC4 suites offered (%s)",
         "SSL Labs 2015 amendment: RC4 -> B"),
    # live Apr 2017 (SWEET32)
    Rule("block64-tls11", SERVER, "C", block64(True),
         "64-bit block cipher offered with TLS 1.1+ (%s; SWEET32)",
         "SSL Labs Jan 2017 amendment: 3DES/64-bit block ciphers with TLS 1.1+ -> C"),
    Rule("block64-old-protocols", SERVER, NOTE, block64(False),
         "64-bit block ciphers (%s), only with old protocols", "informative"),
    Rule("no-forward-secrecy", SERVER, "B", lambda x: x.forward_secrecy is False,
         "no forward secrecy suites", "SSL Labs Mar 2018 amendment: no FS -> B"),
    Rule("no-fs-reference-browsers", SERVER, "B", no_fs_browsers,
         "reference browsers negotiate suites without forward secrecy: %s",
         "SSL Labs Mar 2018 amendment: no FS with reference browsers -> B"),
    Rule("no-aead", SERVER, "B", lambda x: not x.aead,
         "no AEAD suites (GCM, CCM, ChaCha20-Poly1305)",
         "SSL Labs Mar 2018 amendment: no AEAD -> B"),
    # FREAK (Mar 2015), Logjam (May 2015)
    Rule("export", SERVER, "F", lambda x: x.export, "export-grade suites offered",
         "SSL Labs 2015 (FREAK/Logjam): export -> F"),
    Rule("dh-below-1024", SERVER, "F", dh_below(1024), "DH parameters of %d bits",
         "SSL Labs May 2015 (Logjam): DH < 1024 -> F"),
    Rule("dh-below-2048", SERVER, "B", dh_below(2048, 1024), "DH parameters of %d bits",
         "SSL Labs 2015 amendment: weak DH (< 2048) -> B"),
    Rule("anonymous", SERVER, "F", lambda x: x.anonymous,
         "anonymous (unauthenticated) suites offered",
         "rating guide Table 3: anonymous key exchange scores 0 -> F"),
    Rule("null", SERVER, "F", lambda x: x.null, "NULL (unencrypted) suites offered",
         "rating guide Table 4: no encryption scores 0 -> F"),

    # vulnerabilities that make a server insecure
    fatal_vulnerability("heartbleed", "heartbleed", "CVE-2014-0160", "Heartbleed",
                        "SSL Labs Apr 2014 amendment: Heartbleed -> F"),
    fatal_vulnerability("ccs-injection", "CCS", "CVE-2014-0224", "OpenSSL CCS injection",
                        "SSL Labs Jun 2014: CCS injection (CVE-2014-0224) -> F"),
    fatal_vulnerability("ticketbleed", "ticketbleed", "CVE-2016-9244", "Ticketbleed",
                        "SSL Labs Feb 2017: Ticketbleed -> F"),
    fatal_vulnerability("robot", "ROBOT", "CVE-2017-13099", "ROBOT",
                        "SSL Labs Mar 2018 amendment: ROBOT -> F"),
    fatal_vulnerability("poodle-tls", "POODLE_TLS", "CVE-2014-8730", "POODLE TLS",
                        "SSL Labs Dec 2014: POODLE TLS -> F"),
    fatal_vulnerability("padding-oracle", "openssl_padding_oracle", "CVE-2016-2107",
                        "OpenSSL padding oracle",
                        "rating guide 2009m (May 2016): CVE-2016-2107 -> F"),
    fatal_vulnerability("drown", "DROWN", "CVE-2016-0800", "DROWN",
                        "rating guide 2009l (Mar 2016): DROWN -> F"),
    fatal_vulnerability("freak", "FREAK", "CVE-2015-0204", "FREAK",
                        "SSL Labs Mar 2015: FREAK -> F"),
    fatal_vulnerability("logjam", "LOGJAM", "CVE-2015-4000", "Logjam",
                        "SSL Labs May 2015: Logjam (export DH) -> F"),
    fatal_vulnerability("zombie-poodle", "zombie_poodle", "", "Zombie POODLE",
                        "SSL Labs 2019: Zombie POODLE -> F"),
    fatal_vulnerability("goldendoodle", "goldendoodle", "", "GOLDENDOODLE",
                        "SSL Labs 2019: GOLDENDOODLE -> F"),
    fatal_vulnerability("opossum", "opossum", "CVE-2023-28346", "Opossum",
                        "SSL Labs: Opossum -> F"),
    # 2009c: "Vulnerability to the CRIME attack caps the grade to B" (later raised to C)
    Rule("crime", SERVER, "C", flagged("CRIME_TLS"), "TLS compression (CRIME): %s",
         "rating guide 2009c (B), later revisions (C): CRIME -> C"),
    # 2009c "Insecure renegotiation is not allowed (F)"; 2009d: "Servers that do not
    # support secure renegotiation are given a warning" (A-)
    Rule("insecure-renegotiation", SERVER, "F", insecure_renegotiation,
         "renegotiation without RFC 5746 (insecure renegotiation): %s / %s",
         "rating guide 2009c: insecure renegotiation -> F"),
    Rule("no-secure-renegotiation", SERVER, WARNING, renegotiation_warning,
         "secure renegotiation (RFC 5746) not supported: %s",
         "rating guide 2009d: no secure renegotiation -> warning (A-)"),
    Rule("client-renegotiation", SERVER, NOTE, client_renegotiation,
         "client-initiated (secure) renegotiation accepted: %s (DoS risk; no grade effect)",
         "informative"),
    informative("BEAST"),
    informative("LUCKY13"),
    informative("BREACH"),
    # docs/tls.md "HSTS, set by the HTTP layer": a server that should send HSTS and does
    # not is not an "A" for us. SSL Labs only withholds the A+.
    Rule("hsts-not-valid", SERVER, "A-", hsts_not_valid, "HSTS %s%s",
         "moat policy: HSTS missing/invalid -> A-"),

    # 2009d: "Servers with good configuration, no warnings, and good support for HTTP
    # Strict Transport Security (long max-age is required), are given an A+"
    Rule("a-plus-hsts-max-age", A_PLUS, NOT_A_PLUS, hsts_short,
         "HSTS max-age %s < %d (180 days)", "rating guide 2009d: A+ needs a long HSTS"),
    Rule("a-plus-fallback-scsv", A_PLUS, NOT_A_PLUS, no_fallback_scsv,
         "no TLS_FALLBACK_SCSV downgrade protection (%s)",
         "SSL Labs 2015: A+ needs TLS_FALLBACK_SCSV"),
]


def hits(rule, facts):
    """The reason texts of the times this row applies to these facts."""
    v = rule.when(facts)
    if not v:
        return []
    args = [v] if isinstance(v, tuple) else v if isinstance(v, list) else [()]
    return [rule.reason % a for a in args]
