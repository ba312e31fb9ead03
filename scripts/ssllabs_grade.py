#!/usr/bin/env python3
"""SSL Labs-style grade from a testssl.sh JSON file (standard library only).

    scripts/ssllabs_grade.py [--quiet] [--json] [--ca-note TEXT] FILE.json

FILE is testssl.sh's flat JSON (--jsonfile) or structured JSON (--jsonfile-pretty);
written against the ids of testssl.sh 3.0.8 (Debian 12), tolerant of the 3.1 names
(FS/PFS, "<cert#N>" / "<hostCert#N>" suffixes). It prints the three category scores,
the weighted score and its letter, every cap that applied with its reason, and the
final grade. Exit status: 0 for A or A+, 1 for anything below A (A-, B ... F, T, M),
2 when the file cannot be graded (unreadable, no protocol or certificate results, scan
problems: a FATAL finding, scanProblem, a local openssl testssl.sh calls too old).
testssl.sh's remarks about its own environment that only keep it from testing some
checks (engine_problem: no GOST engine in the local openssl) are not findings against
the server: they are listed as "not tested" and do not change the grade or the status.

The method is the Qualys SSL Labs "SSL Server Rating Guide" (version 2009, the
revision letters 2009a..2009r are amendments to the same text) as we read it. Rule
citations give the revision letter where we know it (2009c Feb 2013, 2009d Jan 2014,
2009l Mar 2016, 2009m May 2016) and otherwise the date of the SSL Labs announcement that
introduced the rule (from memory of the published changelog: check them against the
guide before relying on an exact letter). SSL Labs
itself also runs browser handshake simulations and checks we cannot reproduce from
testssl.sh output, so this is an approximation that errs on the strict side:

 1. Certificate (guide "Certificate Inspection"): untrusted chain, expired or not yet
    valid -> T; name mismatch -> M (the 2009 text scored these 0; later revisions report
    them as the separate grades T and M, with the grade "if trust issues are ignored").
    Revoked, MD2/MD5 signature, key < 1024 bits -> F.
 2. Protocol support (guide Table 2), key exchange (Table 3), cipher strength (Table 4),
    each 0..100; combined 30% / 30% / 40% (guide "Combining Category Scores"); a zero in
    any category makes the total 0; letter from Table 1 (>=80 A, >=65 B, >=50 C, >=35 D,
    >=20 E, else F).
 3. Caps and bonuses from the amendments (each rule below names its source).

Rules marked "moat policy" are not SSL Labs rules: they make the grade stricter where
moat's own policy (docs/tls.md) wants more than SSL Labs does.
"""

import argparse
import json
import re
import sys

GRADES = ["A+", "A", "A-", "B", "C", "D", "E", "F"]  # best first; T and M are separate
RANK = {g: i for i, g in enumerate(GRADES)}

# Guide Table 2: protocol support.
PROTOCOL_SCORE = {"SSLv2": 0, "SSLv3": 80, "TLS1": 90, "TLS1_1": 95, "TLS1_2": 100,
                  "TLS1_3": 100}
PROTOCOL_NAME = {"SSLv2": "SSL 2.0", "SSLv3": "SSL 3.0", "TLS1": "TLS 1.0", "TLS1_1": "TLS 1.1",
                 "TLS1_2": "TLS 1.2", "TLS1_3": "TLS 1.3"}
PROTOCOL_ORDER = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]

HSTS_A_PLUS = 15552000  # 180 days (A+ needs "long max-age"; SSL Labs requires >= 6 months)


def kx_score(bits, anonymous=False, export=False):
    """Guide Table 3, key exchange, from an RSA-equivalent strength in bits."""
    if anonymous:
        return 0                   # "Anonymous key exchange (no authentication)"
    if bits is None:
        return None
    if bits < 512:
        return 20                  # "Key or DH parameter strength < 512 bits"
    if export:
        return 40                  # "Exportable key exchange (limited to 512 bits)"
    if bits < 1024:
        return 40                  # "< 1024 bits (e.g., 512)"
    if bits < 2048:
        return 80                  # "< 2048 bits (e.g., 1024)"
    if bits < 4096:
        return 90                  # "< 4096 bits (e.g., 2048)"
    return 100                     # ">= 4096 bits"


def cipher_score(bits):
    """Guide Table 4, cipher strength."""
    if bits == 0:
        return 0                   # "0 bits (no encryption)"
    if bits < 128:
        return 20                  # "< 128 bits (e.g., 40, 56)"
    if bits < 256:
        return 80                  # "< 256 bits (e.g., 128, 168)"
    return 100                     # ">= 256 bits"


def letter(score):
    """Guide Table 1."""
    for threshold, g in ((80, "A"), (65, "B"), (50, "C"), (35, "D"), (20, "E")):
        if score >= threshold:
            return g
    return "F"


def ec_rsa_equivalent(bits):
    """RSA-equivalent strength of an EC key / ECDH group (NIST SP 800-57 Part 1, Table 2),
    the conversion SSL Labs applies to ECDSA keys and ECDHE groups. X25519 is reported
    as 253 bits, X448 as 448."""
    if bits >= 512:
        return 15360
    if bits >= 384:
        return 7680
    if bits >= 250:
        return 3072
    if bits >= 224:
        return 2048
    if bits >= 160:
        return 1024
    return 512


# ---- reading testssl.sh JSON ---------------------------------------------------------

CERT_SUFFIX = re.compile(r"^(?P<base>.*?)\s*<(?:host)?[cC]ert#(?P<n>\d+)>\s*$")


class Finding:
    def __init__(self, d):
        raw_id = str(d.get("id", ""))
        m = CERT_SUFFIX.match(raw_id)
        self.id = m.group("base") if m else raw_id
        self.cert = int(m.group("n")) if m else None
        self.raw_id = raw_id
        self.severity = str(d.get("severity", "")).upper()
        self.finding = str(d.get("finding", ""))
        self.cve = str(d.get("cve", ""))
        self.ip = str(d.get("ip", ""))
        self.port = str(d.get("port", ""))

    def __repr__(self):
        return "<%s %s %r>" % (self.raw_id, self.severity, self.finding)


def flatten(doc):
    """Every finding dict in a flat (list) or pretty (nested) testssl.sh JSON document."""
    out = []

    def walk(x):
        if isinstance(x, dict):
            if "id" in x and "finding" in x:
                out.append(x)
            else:
                for v in x.values():
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    return out


def load(path):
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        # testssl.sh killed mid-run leaves a flat file without its closing "]"
        doc = json.loads(text.rstrip().rstrip(",") + "\n]")
    return [Finding(d) for d in flatten(doc)]


def offered(text):
    """testssl.sh protocol/cipher wording: "offered", "offered (OK)", "offered with final",
    "not offered", "not offered and downgraded ...", "supported but couldn't detect..."."""
    t = text.strip().lower()
    if not t or t.startswith("not ") or "not offered" in t:
        return False
    return t.startswith("offered") or t.startswith("supported") or " offered" in t


def vulnerable(f):
    """A finding that says it is vulnerable: testssl.sh writes "VULNERABLE (NOT ok)",
    "potentially VULNERABLE", ...; "not vulnerable", "likely not vulnerable" and anything
    with severity OK are negatives."""
    if f.severity == "OK":
        return False
    low = f.finding.lower()
    low = re.sub(r"(?:(?:most )?likely |probably )?not vulnerable", "", low)
    return "vulnerable" in low


class Cipher:
    """One offered suite from a "cipher_x<hex>" / "cipher-<proto>_x<hex>" finding:
    "xc02f   ECDHE-RSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   TLS_ECDHE_..."."""

    def __init__(self, hexcode, name, kx, kx_bits, enc, bits, protocol=None):
        self.hexcode, self.name, self.kx, self.kx_bits = hexcode, name, kx, kx_bits
        self.enc, self.bits, self.protocol = enc, bits, protocol

    @property
    def aead(self):
        e = (self.enc + " " + self.name).upper()
        return any(k in e for k in ("GCM", "CCM", "CHACHA20", "POLY1305")) or \
            self.name.startswith("TLS_AES") or self.name.startswith("TLS13")

    @property
    def forward_secret(self):
        k = self.kx.upper()
        if self.name.startswith("TLS_") and self.hexcode.startswith("x13"):
            return True  # TLS 1.3: always (EC)DHE
        return k.startswith("ECDH") or k.startswith("DH") or "DHE" in self.name.upper()

    @property
    def anonymous(self):
        n = self.name.upper()
        return n.startswith("ADH") or n.startswith("AECDH") or "ANON" in n

    @property
    def export(self):
        return "EXP" in self.name.upper() or "EXPORT" in self.kx.upper()

    @property
    def rc4(self):
        return "RC4" in (self.enc + self.name).upper()

    @property
    def block64(self):
        """64-bit block ciphers: 3DES, DES, IDEA, RC2 (SWEET32)."""
        e = (self.enc + " " + self.name).upper()
        return any(k in e for k in ("3DES", "DES-CBC", "DES_CBC", "IDEA", "RC2", "DES40",
                                     "DES-CBC3")) or e.split()[0] == "DES"

    @property
    def null(self):
        return self.bits == 0 or "NULL" in self.enc.upper()

    def __repr__(self):
        return "%s (%s %s, %s %d)" % (self.name, self.kx, self.kx_bits or "", self.enc, self.bits)


CIPHER_ID = re.compile(r"^cipher(?:-(?P<proto>[a-z0-9_]+))?_x(?P<hex>[0-9a-fA-F]+)$")


def parse_cipher(f):
    m = CIPHER_ID.match(f.id)
    if not m:
        return None
    text = f.finding.strip()
    low = text.lower()
    if not text or "not offered" in low or "not available" in low or low.endswith(" no"):
        return None
    toks = text.split()
    # -E output starts with the protocol ("TLSv1.2  xc02f ...")
    if toks and re.match(r"^(SSLv\d|TLSv1(\.\d)?)$", toks[0]):
        toks = toks[1:]
    if len(toks) < 4 or not toks[0].lower().startswith("x"):
        return None
    hexcode, name = toks[0].lower(), toks[1]
    rest = toks[2:]
    kx = rest[0]
    kx_bits = None
    i = 1
    if len(rest) > 1 and rest[1].isdigit():
        kx_bits = int(rest[1])
        i = 2
    if len(rest) < i + 2:
        return None
    enc = rest[i]
    bits_tok = rest[i + 1].rstrip(",")
    if not bits_tok.isdigit():
        return None
    bits = int(bits_tok)
    if bits == 168 and ("3DES" in enc.upper() or "DES-CBC3" in name.upper()):
        bits = 112  # SSL Labs rates 3DES at its effective 112 bits (testssl.sh says 168)
    return Cipher(hexcode, name, kx, kx_bits, enc, bits, m.group("proto"))


def bits_from_name(name):
    """Cipher strength from an OpenSSL/IANA suite name (when no per-suite table exists)."""
    n = name.upper()
    if "NULL" in n:
        return 0
    if "EXP" in n and ("40" in n or "RC4" in n or "RC2" in n or "DES" in n):
        return 40
    if "3DES" in n or "DES-CBC3" in n or "DES_EDE" in n:
        return 112  # effective strength, as SSL Labs reports 3DES
    if re.search(r"(^|[-_])DES([-_]|$)|DES_CBC|DES-CBC-", n):
        return 56
    if re.search(r"(AES|CAMELLIA|ARIA)[-_]?128", n):
        return 128
    if re.search(r"(AES|CAMELLIA|ARIA)[-_]?256", n) or "CHACHA20" in n:
        return 256
    if "RC4" in n or "SEED" in n or "IDEA" in n:
        return 128
    return None


# ---- the grade -----------------------------------------------------------------------

class Result:
    def __init__(self):
        self.scores = {}        # category -> (score, detail)
        self.score = None
        self.score_letter = None
        self.caps = []          # (grade, reason, rule)
        self.warnings = []      # (reason, rule): cap A- (rating guide 2009d "warnings")
        self.notes = []         # informative, no effect on the grade
        self.skipped = []       # checks the scanner could not run on its side (no finding)
        self.trust = []         # reasons for T
        self.mismatch = []      # reasons for M
        self.a_plus = []        # reasons A+ was granted or refused
        self.grade = None       # final: A+ .. F, T or M
        self.grade_ignoring_trust = None
        self.target = ""
        self.errors = []

    def cap(self, grade, reason, rule):
        self.caps.append((grade, reason, rule))

    def as_dict(self):
        return {"grade": self.grade, "grade_ignoring_trust": self.grade_ignoring_trust,
                "score": self.score, "score_letter": self.score_letter,
                "scores": {k: v[0] for k, v in self.scores.items()},
                "caps": [{"grade": g, "reason": r, "rule": rule} for g, r, rule in self.caps],
                "warnings": [{"reason": r, "rule": rule} for r, rule in self.warnings],
                "trust": self.trust, "mismatch": self.mismatch, "notes": self.notes,
                "skipped": self.skipped,
                "a_plus": self.a_plus, "target": self.target, "errors": self.errors}


def _first(fs, fid):
    for f in fs:
        if f.id == fid:
            return f
    return None


def _all(fs, fid):
    return [f for f in fs if f.id == fid]


def _any_id(fs, *ids):
    for fid in ids:
        f = _first(fs, fid)
        if f is not None:
            return f
    return None


# testssl.sh's remarks about its own environment (the local openssl), written with
# fileout_insert_warning ("clientProblemN" in its pretty JSON). They are not findings
# against the server. Each id maps to what the scan could not test because of it, or to
# None when the remark makes the whole scan unreliable (testssl.sh itself says so).
ENVIRONMENT_NOTES = {
    "engine_problem": "GOST cipher suites (the local openssl has no GOST engine); "
                      "every other suite is tested",
    "old_fart": None,
    "too_old_openssl": None,
}


def scan_problems(fs, r):
    """Tells testssl.sh's notes about itself from findings about the server.

    An environment note that only skips some checks goes to r.skipped; one that makes
    the scan unreliable, a FATAL anything (the scan stopped) and scanProblem are errors.
    scanProblem WARN means testssl.sh skipped a whole section (HTTP headers, server
    defaults): what it did not test cannot be graded, so it is an error too."""
    for f in fs:
        if f.id in ENVIRONMENT_NOTES and f.severity != "FATAL":
            what = ENVIRONMENT_NOTES[f.id]
            if what is None:
                r.errors.append("testssl.sh cannot scan reliably with this openssl: %s: %s"
                                % (f.raw_id, f.finding))
            else:
                r.skipped.append("%s (testssl.sh %s: %s)" % (what, f.raw_id, f.finding))
        elif f.id == "scanProblem" or f.severity == "FATAL":
            r.errors.append("testssl.sh reported a scan problem: %s: %s" % (f.raw_id, f.finding))


def grade(findings):
    """Grades a list of Finding; returns a Result."""
    r = Result()
    fs = findings
    f0 = _first(fs, "service") or (fs[0] if fs else None)
    if f0 is not None:
        r.target = "%s:%s" % (f0.ip, f0.port)

    scan_problems(fs, r)

    # -- protocols (guide "Protocol Support", Table 2) --
    protos = {}
    for p in PROTOCOL_ORDER:
        f = _first(fs, p)
        if f is not None:
            protos[p] = offered(f.finding)
    supported = [p for p in PROTOCOL_ORDER if protos.get(p)]
    if not supported:
        r.errors.append("no protocol results (ids SSLv2 ... TLS1_3) or no protocol offered")
        return r
    best, worst = supported[-1], supported[0]
    proto_score = (PROTOCOL_SCORE[best] + PROTOCOL_SCORE[worst]) / 2.0
    r.scores["Protocol support"] = (proto_score, "best %s (%d), worst %s (%d)" % (
        PROTOCOL_NAME[best], PROTOCOL_SCORE[best], PROTOCOL_NAME[worst],
        PROTOCOL_SCORE[worst]))

    # -- ciphers --
    ciphers = [c for c in (parse_cipher(f) for f in fs) if c is not None]
    lists = {f.id[len("cipherlist_"):]: offered(f.finding) for f in fs
             if f.id.startswith("cipherlist_")}
    names = []
    for f in fs:
        if f.id.startswith("cipherorder_") or f.id == "supportedciphers" or \
                f.id.startswith("supportedciphers_"):
            names += f.finding.split()
    neg = _first(fs, "cipher_negotiated")
    if neg is not None and neg.finding.strip():
        names.append(neg.finding.split(",")[0].split()[0])
    name_bits = [b for b in (bits_from_name(n) for n in names) if b is not None]

    if ciphers:
        bits = [c.bits for c in ciphers]
        cipher_src = "%d suites" % len(ciphers)
    else:
        bits = list(name_bits)
        cipher_src = "suite names"
        # the category lists tell about suites the name lists may not show
        if lists.get("NULL"):
            bits.append(0)
        if lists.get("EXPORT"):
            bits.append(40)
        if lists.get("LOW"):
            bits.append(56)
        if lists.get("3DES_IDEA"):
            bits.append(112)
        if lists.get("STRONG") and not bits:
            bits.append(128)
    if not bits:
        r.errors.append("no cipher suite information (cipher_x*, cipherorder_*, cipherlist_*)")
        return r
    strongest, weakest = max(bits), min(bits)
    cs = (cipher_score(strongest) + cipher_score(weakest)) / 2.0
    r.scores["Cipher strength"] = (cs, "strongest %d bits (%d), weakest %d bits (%d), from %s"
                                   % (strongest, cipher_score(strongest), weakest,
                                      cipher_score(weakest), cipher_src))

    # -- certificates --
    if not any(f.id.startswith("cert_") for f in fs):
        # without them T, M and the key caps would pass unseen
        r.errors.append("no certificate results (cert_*): testssl.sh did not inspect it")
        return r
    cert_ids = sorted({f.cert for f in fs if f.id.startswith("cert") and f.cert is not None})
    cert_groups = [[f for f in fs if f.cert == n] for n in cert_ids] or \
        [[f for f in fs if f.id.startswith("cert") and f.cert is None]]
    key_bits_rsa_eq = []
    key_desc = []
    for group in cert_groups:
        label = "certificate #%d" % group[0].cert if group and group[0].cert else "certificate"
        ks = _first(group, "cert_keySize")
        if ks is not None:
            m = re.search(r"(RSA|EC|ECDSA|DSA|DH|EdDSA|Ed25519|Ed448)\S*\s+(\d+)\s*bits?",
                          ks.finding, re.I)
            if m:
                alg, n = m.group(1).upper(), int(m.group(2))
                eq = ec_rsa_equivalent(n) if alg in ("EC", "ECDSA", "EDDSA", "ED25519",
                                                    "ED448") else n
                key_bits_rsa_eq.append(eq)
                key_desc.append("%s %s %d bits%s" % (label, alg, n,
                                                     "" if eq == n else " (~RSA %d)" % eq))
                if eq < 1024:
                    # 2009d (Jan 2014): "Keys below 1024 bits are now considered insecure" -> F
                    r.cap("F", "%s key %s %d bits is below 1024 bits" % (label, alg, n),
                          "rating guide 2009d: key < 1024 bits -> F")
                elif eq < 2048:
                    # 2009d: "Keys below 2048 bits are now considered weak" -> B
                    r.cap("B", "%s key %s %d bits is below 2048 bits" % (label, alg, n),
                          "rating guide 2009d: key < 2048 bits -> B")
                if alg == "DSA":
                    r.notes.append("%s uses a DSA key" % label)
        sig = _first(group, "cert_signatureAlgorithm")
        if sig is not None:
            s = sig.finding.upper()
            if "MD5" in s or "MD2" in s:
                # 2009d: "MD5 certificate signatures are now considered insecure" -> F
                r.cap("F", "%s is signed with %s" % (label, sig.finding),
                      "rating guide 2009d: MD5/MD2 certificate signature -> F")
            elif re.search(r"SHA-?1(?!\d)", s):
                # SHA-1 leaf signatures: distrusted by browsers since 2017, which SSL Labs
                # reports as "not trusted" (T)
                r.trust.append("%s is signed with SHA-1 (%s)" % (label, sig.finding))
        tr = _first(group, "cert_trust")
        if tr is not None:
            t = tr.finding.lower()
            if not t.startswith("ok") and ("does not match" in t or "mismatch" in t or
                                           "not ok" in t or tr.severity in ("HIGH",
                                                                            "CRITICAL")):
                # guide "Certificate Inspection": domain name mismatch; reported as M
                r.mismatch.append("%s: %s" % (label, tr.finding))
        chain = _first(group, "cert_chain_of_trust")
        if chain is not None:
            t = chain.finding.strip().lower()
            if not t.startswith("passed"):
                # guide "Certificate Inspection": self-signed / unknown CA / chain
                # validation error -> not trusted (T)
                r.trust.append("%s chain of trust: %s" % (label, chain.finding))
        exp = _first(group, "cert_expirationStatus")
        if exp is not None and ("expired" in exp.finding.lower() or
                                "not yet valid" in exp.finding.lower()):
            # guide "Certificate Inspection": "certificate not yet valid", "certificate expired"
            r.trust.append("%s validity: %s" % (label, exp.finding))
        for f in group:
            if f.id in ("cert_ocspRevoked", "cert_crlRevoked") and \
                    "revoked" in f.finding.lower() and "not revoked" not in f.finding.lower():
                # guide "Certificate Inspection": "use of revoked certificate" -> F
                r.cap("F", "%s is revoked (%s)" % (label, f.finding),
                      "rating guide: revoked certificate -> F")
        rev = _first(group, "cert_revocation")
        if rev is not None and rev.severity in ("HIGH", "CRITICAL", "MEDIUM"):
            r.notes.append("%s: %s (no grade effect; not checked for private CAs)"
                           % (label, rev.finding))

    # -- key exchange (guide Table 3) --
    anonymous = any(c.anonymous for c in ciphers) or lists.get("aNULL", False)
    export = any(c.export for c in ciphers) or lists.get("EXPORT", False)
    dh_bits = [c.kx_bits for c in ciphers if c.kx.upper().startswith("DH") and c.kx_bits]
    ecdh_bits = [c.kx_bits for c in ciphers if c.kx.upper().startswith("ECDH") and c.kx_bits]
    # "Elliptic curves offered" / "DH group offered" lines
    curves = _any_id(fs, "FS_ECDHE_curves", "PFS_ECDHE_curves")
    if curves is not None:
        for tok in curves.finding.split():
            m = re.search(r"(\d{3})", tok)
            if tok.upper() == "X25519":
                ecdh_bits.append(253)
            elif tok.upper() == "X448":
                ecdh_bits.append(448)
            elif m:
                ecdh_bits.append(int(m.group(1)))
    for fid in ("DH_groups", "FS_DH_groups", "PFS_DH_groups", "LOGJAM-common_primes"):
        f = _first(fs, fid)
        if f is not None:
            m = re.search(r"(\d{3,5})\s*bits", f.finding)
            if m:
                dh_bits.append(int(m.group(1)))
    parts = []
    candidates = []
    if key_bits_rsa_eq:
        candidates.append(min(key_bits_rsa_eq))
        parts.append("; ".join(key_desc))
    if dh_bits:
        candidates.append(min(dh_bits))
        parts.append("DH %d bits" % min(dh_bits))
    if ecdh_bits:
        e = min(ecdh_bits)
        candidates.append(ec_rsa_equivalent(e))
        parts.append("ECDH %d bits (~RSA %d)" % (e, ec_rsa_equivalent(e)))
    if anonymous:
        parts.append("anonymous suites offered")
    if not candidates and not anonymous:
        r.errors.append("no key size information (cert_keySize, cipher key exchange)")
        return r
    weakest_kx = min(candidates) if candidates else 0
    ks = kx_score(weakest_kx, anonymous=anonymous, export=export)
    r.scores["Key exchange"] = (ks, "weakest %d bits%s: %s" % (
        weakest_kx, " (export)" if export else "", ", ".join(parts)))

    # -- combined score (guide "Combining Category Scores"; Table 1) --
    p, k, c = (r.scores[n][0] for n in ("Protocol support", "Key exchange", "Cipher strength"))
    total = 0.3 * p + 0.3 * k + 0.4 * c
    if 0 in (p, k, c):
        total = 0  # "A zero in any category will push the overall score to zero"
    r.score = int(round(total))
    r.score_letter = letter(total)

    # -- caps from the amendments --
    # 2009c (Feb 2013): "SSL 2.0 is not allowed (F)"
    if protos.get("SSLv2"):
        r.cap("F", "SSL 2.0 is supported", "rating guide 2009c: SSL 2.0 -> F")
    # Oct 2014 (POODLE): SSL 3 obsolete -> B; vulnerable to POODLE (SSL 3 + CBC) -> C.
    # (A plain SSL 3 is not an F by these rules; SSL 2 is.)
    if protos.get("SSLv3"):
        r.cap("B", "SSL 3.0 is supported", "SSL Labs Oct 2014 amendment (POODLE): SSL 3 -> B")
    poodle = _first(fs, "POODLE_SSL")
    if poodle is not None and vulnerable(poodle):
        r.cap("C", "vulnerable to POODLE (SSL 3 with CBC): %s" % poodle.finding,
              "SSL Labs Oct 2014 amendment: POODLE (SSL 3 + CBC) -> C")
    # Jan 2020 (announced Nov 2018): "Servers that support TLS 1.0 or TLS 1.1 are capped to B"
    old = [PROTOCOL_NAME[x] for x in ("TLS1", "TLS1_1") if protos.get(x)]
    if old:
        r.cap("B", "%s supported" % " and ".join(old),
              "SSL Labs Jan 2020 amendment: TLS 1.0/1.1 -> B")
    # 2009d (Jan 2014) "TLS 1.2 is now required to get an A" (B); Jan 2017: no TLS 1.2 -> C
    if not protos.get("TLS1_2") and not protos.get("TLS1_3"):
        r.cap("C", "neither TLS 1.2 nor TLS 1.3 supported",
              "rating guide 2009d (B) and Jan 2017 amendment (C): no TLS 1.2 -> C")
    # moat policy (docs/tls.md "TLS 1.2 and TLS 1.3"): no TLS 1.3 -> A-. Not an SSL Labs
    # rule as far as the published guide goes; it keeps our own bar above "A" only.
    if not protos.get("TLS1_3"):
        r.cap("A-", "TLS 1.3 not supported", "moat policy: no TLS 1.3 -> A-")

    # RC4: 2009d (Jan 2014) warning for RC4 with TLS 1.1+; Sep 2015 (SSL Labs 1.20.28):
    # "RC4 -> B", RC4-only servers -> C
    rc4 = [x for x in ciphers if x.rc4] or (["RC4"] if any("RC4" in n.upper() for n in names)
                                          else [])
    rc4_finding = _first(fs, "RC4")
    if rc4_finding is not None and vulnerable(rc4_finding) and not rc4:
        rc4 = ["RC4"]
    if rc4:
        only = ciphers and all(x.rc4 for x in ciphers)
        if only:
            r.cap("C", "only RC4 suites offered", "SSL Labs 2015 (1.20.28): RC4-only -> C")
        else:
            r.cap("B", "RC4 suites offered (%s)" % ", ".join(str(getattr(x, "name", x))
                                                           for x in rc4[:4]),
                  "SSL Labs 2015 amendment: RC4 -> B")
    # Jan 2017 (live Apr 2017, SWEET32): 3DES / 64-bit block ciphers with TLS 1.1+ -> C
    b64 = [x for x in ciphers if x.block64]
    sweet = _first(fs, "SWEET32")
    if b64 or lists.get("3DES_IDEA") or (sweet is not None and vulnerable(sweet)):
        what = ", ".join(x.name for x in b64[:4]) or "3DES/IDEA suites"
        if protos.get("TLS1_1") or protos.get("TLS1_2") or protos.get("TLS1_3"):
            r.cap("C", "64-bit block cipher offered with TLS 1.1+ (%s; SWEET32)" % what,
                  "SSL Labs Jan 2017 amendment: 3DES/64-bit block ciphers with TLS 1.1+ -> C")
        else:
            r.notes.append("64-bit block ciphers (%s), only with old protocols" % what)
    # Mar 2018: "Penalty for not using forward secrecy (B)"
    fs_f = _any_id(fs, "FS", "PFS")
    fs_ok = None
    if ciphers:
        fs_ok = any(x.forward_secret for x in ciphers)
    if fs_f is not None:
        fs_ok = offered(fs_f.finding) if fs_ok is None else (fs_ok and offered(fs_f.finding))
    sims = [f for f in fs if f.id.startswith("clientsimulation-")]
    modern = [f for f in sims if re.search(r"chrome|firefox|safari|edge", f.id, re.I)]
    non_fs_modern = [f for f in modern if f.finding and "No connection" not in f.finding and
                     not re.search(r"TLS_AES|TLS_CHACHA|ECDHE|DHE", f.finding)]
    if fs_ok is False:
        r.cap("B", "no forward secrecy suites", "SSL Labs Mar 2018 amendment: no FS -> B")
    elif non_fs_modern:
        r.cap("B", "reference browsers negotiate suites without forward secrecy: %s"
              % "; ".join("%s: %s" % (f.id, f.finding) for f in non_fs_modern[:3]),
              "SSL Labs Mar 2018 amendment: no FS with reference browsers -> B")
    # Mar 2018: "Penalty for not using AEAD suites (B)"
    aead = any(x.aead for x in ciphers) if ciphers else bool(lists.get("STRONG"))
    if protos.get("TLS1_3"):
        aead = True
    if not aead:
        r.cap("B", "no AEAD suites (GCM, CCM, ChaCha20-Poly1305)",
              "SSL Labs Mar 2018 amendment: no AEAD -> B")
    # Export suites (FREAK, Mar 2015) and export DH (Logjam, May 2015) -> F
    if export:
        r.cap("F", "export-grade suites offered", "SSL Labs 2015 (FREAK/Logjam): export -> F")
    # Logjam amendment (May 2015): DH < 1024 -> F; weak DH (< 2048) -> B
    if dh_bits:
        d = min(dh_bits)
        if d < 1024:
            r.cap("F", "DH parameters of %d bits" % d, "SSL Labs May 2015 (Logjam): DH < 1024 -> F")
        elif d < 2048:
            r.cap("B", "DH parameters of %d bits" % d,
                  "SSL Labs 2015 amendment: weak DH (< 2048) -> B")
    if anonymous:
        r.cap("F", "anonymous (unauthenticated) suites offered",
              "rating guide Table 3: anonymous key exchange scores 0 -> F")
    if lists.get("NULL") or any(x.null for x in ciphers):
        r.cap("F", "NULL (unencrypted) suites offered",
              "rating guide Table 4: no encryption scores 0 -> F")

    # Vulnerabilities that make a server insecure -> F
    fatal = [
        ("heartbleed", "CVE-2014-0160", "Heartbleed",
         "SSL Labs Apr 2014 amendment: Heartbleed -> F"),
        ("CCS", "CVE-2014-0224", "OpenSSL CCS injection",
         "SSL Labs Jun 2014: CCS injection (CVE-2014-0224) -> F"),
        ("ticketbleed", "CVE-2016-9244", "Ticketbleed",
         "SSL Labs Feb 2017: Ticketbleed -> F"),
        ("ROBOT", "CVE-2017-13099", "ROBOT",
         "SSL Labs Mar 2018 amendment: ROBOT -> F"),
        ("POODLE_TLS", "CVE-2014-8730", "POODLE TLS",
         "SSL Labs Dec 2014: POODLE TLS -> F"),
        ("openssl_padding_oracle", "CVE-2016-2107", "OpenSSL padding oracle",
         "rating guide 2009m (May 2016): CVE-2016-2107 -> F"),
        ("DROWN", "CVE-2016-0800", "DROWN", "rating guide 2009l (Mar 2016): DROWN -> F"),
        ("FREAK", "CVE-2015-0204", "FREAK", "SSL Labs Mar 2015: FREAK -> F"),
        ("LOGJAM", "CVE-2015-4000", "Logjam", "SSL Labs May 2015: Logjam (export DH) -> F"),
        ("zombie_poodle", "", "Zombie POODLE", "SSL Labs 2019: Zombie POODLE -> F"),
        ("goldendoodle", "", "GOLDENDOODLE", "SSL Labs 2019: GOLDENDOODLE -> F"),
        ("opossum", "CVE-2023-28346", "Opossum", "SSL Labs: Opossum -> F"),
    ]
    seen_vuln = set()
    for fid, cve, label, rule in fatal:
        hits = [f for f in fs if (f.id.lower() == fid.lower() or (cve and cve in f.cve)) and
                vulnerable(f)]
        for f in hits:
            if label in seen_vuln:
                continue
            seen_vuln.add(label)
            r.cap("F", "vulnerable to %s: %s" % (label, f.finding), rule)
    # 2009c: "Vulnerability to the CRIME attack caps the grade to B" (later raised to C)
    crime = _first(fs, "CRIME_TLS")
    if crime is not None and vulnerable(crime):
        r.cap("C", "TLS compression (CRIME): %s" % crime.finding,
              "rating guide 2009c (B), later revisions (C): CRIME -> C")
    # Renegotiation: 2009c "Insecure renegotiation is not allowed (F)"; 2009d: "Servers that
    # do not support secure renegotiation are given a warning" (A-)
    sr = _first(fs, "secure_renego")
    scr = _first(fs, "secure_client_renego")
    if sr is not None and not offered(sr.finding):
        if scr is not None and vulnerable(scr):
            r.cap("F", "renegotiation without RFC 5746 (insecure renegotiation): %s / %s"
                  % (sr.finding, scr.finding), "rating guide 2009c: insecure renegotiation -> F")
        else:
            r.warnings.append(("secure renegotiation (RFC 5746) not supported: %s" % sr.finding,
                               "rating guide 2009d: no secure renegotiation -> warning (A-)"))
    elif scr is not None and vulnerable(scr):
        r.notes.append("client-initiated (secure) renegotiation accepted: %s (DoS risk; no "
                       "grade effect)" % scr.finding)
    for fid in ("BEAST", "LUCKY13", "BREACH"):
        f = _first(fs, fid)
        if f is not None and vulnerable(f):
            r.notes.append("%s: %s (no grade effect in current SSL Labs rules)" % (fid, f.finding))

    # -- HSTS --
    service = _first(fs, "service")
    is_http = service is None or "HTTP" in service.finding.upper()
    hsts_age = None
    hsts_state = "unknown"
    ht = _first(fs, "HSTS_time")
    h = _first(fs, "HSTS")
    if ht is not None:
        m = re.search(r"=\s*(\d+)\s*seconds", ht.finding) or re.search(r"(\d+)\s*seconds",
                                                                       ht.finding)
        if m:
            hsts_age = int(m.group(1))
            hsts_state = "present" if hsts_age > 0 else "disabled"
        else:
            hsts_state = "invalid"
    elif h is not None:
        hsts_state = "missing" if "not offered" in h.finding.lower() or \
            h.severity in ("LOW", "MEDIUM", "HIGH") else "invalid"
    if is_http and hsts_state in ("missing", "invalid", "disabled", "unknown"):
        # moat policy (docs/tls.md: "HSTS, set by the HTTP layer"): a server that should
        # send HSTS and does not is not an "A" for us. SSL Labs only withholds the A+.
        r.cap("A-", "HSTS %s%s" % (hsts_state, (" (%s)" % (ht or h).finding) if (ht or h) else
                                   " (no HSTS result in the scan)"),
              "moat policy: HSTS missing/invalid -> A-")

    # -- final letter --
    g = r.score_letter
    for cap_grade, _, _ in r.caps:
        if RANK[cap_grade] > RANK[g]:
            g = cap_grade
    if r.warnings and RANK[g] < RANK["A-"]:
        g = "A-"  # 2009d: "a server with good configuration, but with one or more warnings,
        #            is given a reduced grade A-"
    # 2009d: "Servers with good configuration, no warnings, and good support for HTTP Strict
    # Transport Security (long max-age is required), are given an A+" (long = 180 days).
    if g == "A":
        reasons_not = []
        if hsts_age is None or hsts_age < HSTS_A_PLUS:
            reasons_not.append("HSTS max-age %s < %d (180 days)" % (hsts_age, HSTS_A_PLUS))
        fb = _first(fs, "fallback_SCSV")
        if fb is not None and ("not supported" in fb.finding.lower() or
                               fb.severity in ("MEDIUM", "HIGH", "CRITICAL")):
            # SSL Labs 2015: TLS_FALLBACK_SCSV is required for A+
            reasons_not.append("no TLS_FALLBACK_SCSV downgrade protection (%s)" % fb.finding)
        if reasons_not:
            r.a_plus = ["not A+: " + x for x in reasons_not]
        else:
            r.a_plus = ["A+: HSTS max-age %d >= %d, no warnings" % (hsts_age, HSTS_A_PLUS)]
            g = "A+"
    r.grade_ignoring_trust = g
    if r.trust:
        r.grade = "T"
    elif r.mismatch:
        r.grade = "M"
    else:
        r.grade = g
    return r


def report(r, out=sys.stdout):
    w = out.write
    w("SSL Labs-style rating (SSL Server Rating Guide 2009 + amendments) for %s\n\n"
      % (r.target or "?"))
    if r.errors and r.score is None:
        for e in r.errors:
            w("ERROR: %s\n" % e)
        return
    w("  %-22s %6s  %s\n" % ("category", "score", "detail"))
    for name, weight in (("Protocol support", 30), ("Key exchange", 30),
                         ("Cipher strength", 40)):
        s, detail = r.scores[name]
        w("  %-22s %6g  %s\n" % ("%s (%d%%)" % (name, weight), s, detail))
    w("  %-22s %6d  -> %s (Table 1: >=80 A, >=65 B, >=50 C, >=35 D, >=20 E)\n\n"
      % ("weighted score", r.score, r.score_letter))
    w("caps:\n")
    if not r.caps and not r.warnings:
        w("  none\n")
    for g, reason, rule in r.caps:
        w("  %-2s  %s  [%s]\n" % (g, reason, rule))
    for reason, rule in r.warnings:
        w("  A-  warning: %s  [%s]\n" % (reason, rule))
    for t in r.trust:
        w("  T   not trusted: %s\n" % t)
    for m in r.mismatch:
        w("  M   name mismatch: %s\n" % m)
    for a in r.a_plus:
        w("  %s\n" % a)
    if r.notes:
        w("notes:\n")
        for n in r.notes:
            w("  - %s\n" % n)
    if r.skipped:
        w("not tested (scanner environment, not a finding against the server):\n")
        for n in r.skipped:
            w("  - %s\n" % n)
    for e in r.errors:
        w("ERROR: %s\n" % e)
    w("\nGRADE: %s" % r.grade)
    if r.grade in ("T", "M"):
        w("  (if trust issues are ignored: %s)" % r.grade_ignoring_trust)
    w("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description="SSL Labs-style grade from testssl.sh JSON")
    ap.add_argument("file", help="testssl.sh --jsonfile output")
    ap.add_argument("--quiet", action="store_true", help="print only the grade")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        findings = load(args.file)
    except (OSError, ValueError) as e:
        print("ssllabs_grade: cannot read %s: %s" % (args.file, e), file=sys.stderr)
        return 2
    r = grade(findings)
    if args.json:
        print(json.dumps(r.as_dict(), indent=2))
    elif args.quiet:
        print(r.grade or "ERROR")
    else:
        report(r)
    if r.errors or r.grade is None:
        for e in r.errors or ["no grade"]:
            print("ssllabs_grade: %s" % e, file=sys.stderr)
        return 2
    return 0 if r.grade in ("A+", "A") else 1


if __name__ == "__main__":
    sys.exit(main())
