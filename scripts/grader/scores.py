"""The rating guide's tables (1-4) and the three category scores.

Guide "Protocol Support" (Table 2), "Key Exchange" (Table 3), "Cipher Strength"
(Table 4), each 0..100, combined 30% / 30% / 40% ("Combining Category Scores"); a zero
in any category makes the total 0; the letter comes from Table 1.
"""

GRADES = ["A+", "A", "A-", "B", "C", "D", "E", "F"]  # best first; T and M are separate
RANK = {g: i for i, g in enumerate(GRADES)}

# Guide Table 2: protocol support.
PROTOCOL_SCORE = {"SSLv2": 0, "SSLv3": 80, "TLS1": 90, "TLS1_1": 95, "TLS1_2": 100,
                  "TLS1_3": 100}
PROTOCOL_NAME = {"SSLv2": "SSL 2.0", "SSLv3": "SSL 3.0", "TLS1": "TLS 1.0", "TLS1_1": "TLS 1.1",
                 "TLS1_2": "TLS 1.2", "TLS1_3": "TLS 1.3"}
PROTOCOL_ORDER = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]

HSTS_A_PLUS = 15552000  # 180 days (A+ needs "long max-age"; SSL Labs requires >= 6 months)

CATEGORIES = (("Protocol support", 30), ("Key exchange", 30), ("Cipher strength", 40))


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


# Each category: (score, detail) from the facts, or None when the scan has no data for it
# (the error to report is the category's MISSING text).

MISSING = {
    "Protocol support": "no protocol results (ids SSLv2 ... TLS1_3) or no protocol offered",
    "Cipher strength": "no cipher suite information (cipher_x*, cipherorder_*, cipherlist_*)",
    "Key exchange": "no key size information (cert_keySize, cipher key exchange)",
}


def protocol_support(fx):
    """Table 2: the average of the best and the worst protocol offered."""
    supported = fx.supported
    if not supported:
        return None
    best, worst = supported[-1], supported[0]
    score = (PROTOCOL_SCORE[best] + PROTOCOL_SCORE[worst]) / 2.0
    return score, "best %s (%d), worst %s (%d)" % (
        PROTOCOL_NAME[best], PROTOCOL_SCORE[best], PROTOCOL_NAME[worst],
        PROTOCOL_SCORE[worst])


def cipher_strength(fx):
    """Table 4: the average of the strongest and the weakest suite."""
    bits, src = fx.cipher_bits
    if not bits:
        return None
    strongest, weakest = max(bits), min(bits)
    score = (cipher_score(strongest) + cipher_score(weakest)) / 2.0
    return score, "strongest %d bits (%d), weakest %d bits (%d), from %s" % (
        strongest, cipher_score(strongest), weakest, cipher_score(weakest), src)


def key_exchange(fx):
    """Table 3: the weakest of the certificate keys, DH parameters and ECDH groups
    (RSA-equivalent bits)."""
    candidates, parts = [], []
    if fx.cert_key_bits:
        candidates.append(min(fx.cert_key_bits))
        parts.append("; ".join(fx.cert_key_desc))
    if fx.dh_bits:
        candidates.append(min(fx.dh_bits))
        parts.append("DH %d bits" % min(fx.dh_bits))
    if fx.ecdh_bits:
        e = min(fx.ecdh_bits)
        candidates.append(ec_rsa_equivalent(e))
        parts.append("ECDH %d bits (~RSA %d)" % (e, ec_rsa_equivalent(e)))
    if fx.anonymous:
        parts.append("anonymous suites offered")
    if not candidates and not fx.anonymous:
        return None
    weakest = min(candidates) if candidates else 0
    score = kx_score(weakest, anonymous=fx.anonymous, export=fx.export)
    return score, "weakest %d bits%s: %s" % (
        weakest, " (export)" if fx.export else "", ", ".join(parts))


def combine(scores):
    """The weighted score (guide "Combining Category Scores") and its Table 1 letter."""
    p, k, c = (scores[n][0] for n, _ in CATEGORIES)
    total = 0.3 * p + 0.3 * k + 0.4 * c
    if 0 in (p, k, c):
        total = 0  # "A zero in any category will push the overall score to zero"
    return int(round(total)), letter(total)
