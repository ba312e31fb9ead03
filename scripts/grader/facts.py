"""The facts the rules look at, extracted from testssl.sh findings.

Facts(findings) computes each fact on first use (functools.cached_property), so a scan
that stops being gradable early (no protocol, no suite) is never read further.
CertFacts holds what one certificate's findings say.
"""

import re
from functools import cached_property

from .findings import bits_from_name, first, offered, parse_cipher, vulnerable
from .scores import PROTOCOL_ORDER, ec_rsa_equivalent

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

EC_ALGS = ("EC", "ECDSA", "EDDSA", "ED25519", "ED448")
KEY_SIZE = re.compile(r"(RSA|EC|ECDSA|DSA|DH|EdDSA|Ed25519|Ed448)\S*\s+(\d+)\s*bits?", re.I)
DH_GROUP_IDS = ("DH_groups", "FS_DH_groups", "PFS_DH_groups", "LOGJAM-common_primes")
# category list -> the strength it stands for when no per-suite results exist
LIST_BITS = (("NULL", 0), ("EXPORT", 40), ("LOW", 56), ("3DES_IDEA", 112))


def scan_problems(fs):
    """Tells testssl.sh's notes about itself from findings about the server: returns
    (errors, skipped).

    An environment note that only skips some checks is skipped; one that makes the scan
    unreliable, a FATAL anything (the scan stopped) and scanProblem are errors.
    scanProblem WARN means testssl.sh skipped a whole section (HTTP headers, server
    defaults): what it did not test cannot be graded, so it is an error too."""
    errors, skipped = [], []
    for f in fs:
        if f.id in ENVIRONMENT_NOTES and f.severity != "FATAL":
            what = ENVIRONMENT_NOTES[f.id]
            if what is None:
                errors.append("testssl.sh cannot scan reliably with this openssl: %s: %s"
                              % (f.raw_id, f.finding))
            else:
                skipped.append("%s (testssl.sh %s: %s)" % (what, f.raw_id, f.finding))
        elif f.id == "scanProblem" or f.severity == "FATAL":
            errors.append("testssl.sh reported a scan problem: %s: %s" % (f.raw_id, f.finding))
    return errors, skipped


class Key:
    def __init__(self, alg, bits):
        self.alg, self.bits = alg, bits
        self.eq = ec_rsa_equivalent(bits) if alg in EC_ALGS else bits  # RSA-equivalent

    def describe(self, label):
        return "%s %s %d bits%s" % (label, self.alg, self.bits,
                                    "" if self.eq == self.bits else " (~RSA %d)" % self.eq)


class CertFacts:
    """One certificate: the findings with its "<cert#N>" suffix (or all cert* ones)."""

    def __init__(self, group):
        self.group = group
        self.label = "certificate #%d" % group[0].cert if group and group[0].cert \
            else "certificate"
        ks = first(group, "cert_keySize")
        m = KEY_SIZE.search(ks.finding) if ks is not None else None
        self.key = Key(m.group(1).upper(), int(m.group(2))) if m else None
        self.signature = first(group, "cert_signatureAlgorithm")
        self.trust = first(group, "cert_trust")
        self.chain = first(group, "cert_chain_of_trust")
        self.expiration = first(group, "cert_expirationStatus")
        self.revoked = [f for f in group if f.id in ("cert_ocspRevoked", "cert_crlRevoked")
                        and "revoked" in f.finding.lower()
                        and "not revoked" not in f.finding.lower()]
        self.revocation = first(group, "cert_revocation")


class Facts:
    def __init__(self, findings):
        self.fs = findings

    def first(self, *ids):
        return first(self.fs, *ids)

    def vulnerable(self, fid):
        return vulnerable(self.first(fid))

    @cached_property
    def target(self):
        f0 = self.first("service") or (self.fs[0] if self.fs else None)
        return "%s:%s" % (f0.ip, f0.port) if f0 is not None else ""

    # -- protocols --
    @cached_property
    def protos(self):
        """{protocol id: offered} for the protocols the scan has a result for."""
        return {p: offered(f.finding) for p, f in
                ((p, self.first(p)) for p in PROTOCOL_ORDER) if f is not None}

    @cached_property
    def supported(self):
        return [p for p in PROTOCOL_ORDER if self.protos.get(p)]

    def offers(self, *protocols):
        return any(self.protos.get(p) for p in protocols)

    # -- cipher suites --
    @cached_property
    def ciphers(self):
        return [c for c in (parse_cipher(f) for f in self.fs) if c is not None]

    @cached_property
    def lists(self):
        """{category: offered} of the cipherlist_<category> findings."""
        return {f.id[len("cipherlist_"):]: offered(f.finding) for f in self.fs
                if f.id.startswith("cipherlist_")}

    @cached_property
    def names(self):
        """Suite names from the order/supported lists and the negotiated suite."""
        names = []
        for f in self.fs:
            if f.id.startswith("cipherorder_") or f.id == "supportedciphers" or \
                    f.id.startswith("supportedciphers_"):
                names += f.finding.split()
        neg = self.first("cipher_negotiated")
        if neg is not None and neg.finding.strip():
            names.append(neg.finding.split(",")[0].split()[0])
        return names

    @cached_property
    def cipher_bits(self):
        """(strengths of the offered suites, where they come from)."""
        name_bits = [b for b in (bits_from_name(n) for n in self.names) if b is not None]
        if self.ciphers:
            return [c.bits for c in self.ciphers], "%d suites" % len(self.ciphers)
        bits = list(name_bits)
        # the category lists tell about suites the name lists may not show
        bits += [b for lst, b in LIST_BITS if self.lists.get(lst)]
        if self.lists.get("STRONG") and not bits:
            bits.append(128)
        return bits, "suite names"

    # -- certificates --
    @cached_property
    def has_cert_results(self):
        return any(f.id.startswith("cert_") for f in self.fs)

    @cached_property
    def certs(self):
        fs = self.fs
        ids = sorted({f.cert for f in fs if f.id.startswith("cert") and f.cert is not None})
        groups = [[f for f in fs if f.cert == n] for n in ids] or \
            [[f for f in fs if f.id.startswith("cert") and f.cert is None]]
        return [CertFacts(g) for g in groups]

    @cached_property
    def cert_key_bits(self):
        return [c.key.eq for c in self.certs if c.key is not None]

    @cached_property
    def cert_key_desc(self):
        return [c.key.describe(c.label) for c in self.certs if c.key is not None]

    # -- key exchange --
    @cached_property
    def anonymous(self):
        return any(c.anonymous for c in self.ciphers) or self.lists.get("aNULL", False)

    @cached_property
    def export(self):
        return any(c.export for c in self.ciphers) or self.lists.get("EXPORT", False)

    @cached_property
    def dh_bits(self):
        bits = [c.kx_bits for c in self.ciphers if c.kx.upper().startswith("DH") and c.kx_bits]
        for fid in DH_GROUP_IDS:
            f = self.first(fid)
            m = re.search(r"(\d{3,5})\s*bits", f.finding) if f is not None else None
            if m:
                bits.append(int(m.group(1)))
        return bits

    @cached_property
    def ecdh_bits(self):
        bits = [c.kx_bits for c in self.ciphers
                if c.kx.upper().startswith("ECDH") and c.kx_bits]
        # "Elliptic curves offered" line
        curves = self.first("FS_ECDHE_curves", "PFS_ECDHE_curves")
        for tok in curves.finding.split() if curves is not None else ():
            m = re.search(r"(\d{3})", tok)
            if tok.upper() == "X25519":
                bits.append(253)
            elif tok.upper() == "X448":
                bits.append(448)
            elif m:
                bits.append(int(m.group(1)))
        return bits

    # -- suite properties the caps look at --
    @cached_property
    def rc4(self):
        """The RC4 suites (or ["RC4"] when only a name list or the RC4 check says so)."""
        rc4 = [x for x in self.ciphers if x.rc4] or \
            (["RC4"] if any("RC4" in n.upper() for n in self.names) else [])
        if not rc4 and self.vulnerable("RC4"):
            rc4 = ["RC4"]
        return rc4

    @cached_property
    def block64(self):
        """What says 64-bit block ciphers are offered (SWEET32), as text, or None."""
        b64 = [x for x in self.ciphers if x.block64]
        if b64 or self.lists.get("3DES_IDEA") or self.vulnerable("SWEET32"):
            return ", ".join(x.name for x in b64[:4]) or "3DES/IDEA suites"
        return None

    @cached_property
    def forward_secrecy(self):
        """True/False from the suites and the FS finding; None when neither exists."""
        fs_f = self.first("FS", "PFS")
        fs_ok = None
        if self.ciphers:
            fs_ok = any(x.forward_secret for x in self.ciphers)
        if fs_f is not None:
            fs_ok = offered(fs_f.finding) if fs_ok is None else (fs_ok and
                                                                  offered(fs_f.finding))
        return fs_ok

    @cached_property
    def non_fs_browsers(self):
        """Client simulations of reference browsers that negotiated a suite without FS."""
        sims = [f for f in self.fs if f.id.startswith("clientsimulation-")]
        modern = [f for f in sims if re.search(r"chrome|firefox|safari|edge", f.id, re.I)]
        return [f for f in modern if f.finding and "No connection" not in f.finding and
                not re.search(r"TLS_AES|TLS_CHACHA|ECDHE|DHE", f.finding)]

    @cached_property
    def aead(self):
        if self.protos.get("TLS1_3"):
            return True
        if self.ciphers:
            return any(x.aead for x in self.ciphers)
        return bool(self.lists.get("STRONG"))

    @cached_property
    def null(self):
        return self.lists.get("NULL") or any(x.null for x in self.ciphers)

    # -- HSTS --
    @cached_property
    def is_http(self):
        service = self.first("service")
        return service is None or "HTTP" in service.finding.upper()

    @cached_property
    def hsts(self):
        """(state, max-age or None, the finding or None); state is present, disabled,
        missing, invalid or unknown."""
        ht, h = self.first("HSTS_time"), self.first("HSTS")
        if ht is not None:
            m = re.search(r"=\s*(\d+)\s*seconds", ht.finding) or \
                re.search(r"(\d+)\s*seconds", ht.finding)
            if not m:
                return "invalid", None, ht
            age = int(m.group(1))
            return ("present" if age > 0 else "disabled"), age, ht
        if h is not None:
            missing = "not offered" in h.finding.lower() or h.severity in ("LOW", "MEDIUM",
                                                                           "HIGH")
            return ("missing" if missing else "invalid"), None, h
        return "unknown", None, None

    @property
    def hsts_age(self):
        return self.hsts[1]
