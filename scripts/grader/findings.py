"""Reading testssl.sh JSON: findings, the offered/vulnerable wordings, cipher suites."""

import json
import re

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


def first(fs, *ids):
    """The first finding with the first of these ids that has one, or None."""
    for fid in ids:
        for f in fs:
            if f.id == fid:
                return f
    return None


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
    if f is None or f.severity == "OK":
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


def _cipher_tokens(f):
    """The columns of a per-suite finding after the protocol, or None."""
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
    return toks


def parse_cipher(f):
    m = CIPHER_ID.match(f.id)
    if not m:
        return None
    toks = _cipher_tokens(f)
    if toks is None:
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
