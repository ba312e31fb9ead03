"""Helpers for the TLS integration tests (test_tls_*.py): real clients against moat.

Standard library only, plus the openssl CLI. What is here:

- openssl(): runs the openssl command line;
- PKI: a throw-away CA and leaf/client certificates in a test's tmp dir (RSA or ECDSA,
  SANs, AIA OCSP URL, OCSP index lines);
- OcspResponder: an HTTP OCSP responder on 127.0.0.1 (a thread of the test process)
  that answers every POST with `openssl ocsp -index ... -reqin REQ -respout RESP`,
  i.e. the CLI responder of `openssl ocsp -port`, without binding every interface;
- s_client(): `openssl s_client` against moat, with its output parsed (protocol,
  cipher, New/Reused, peer certificate, OCSP staple, alerts);
- client_hello()/probe(): raw ClientHellos for what the local OpenSSL can no longer
  send (SSLv2, SSLv3, RC4, 3DES, EXPORT suites) and the server's first answer;
- session files: the ticket and its key name (`openssl sess_id -text`);
- worker_cpu_ns(): CPU time of each worker thread of a moat process (/proc).

Nothing here starts a process that outlives the call, except OcspResponder, which is
a thread stopped by .stop() (the tests call it in a finally block).
"""

import base64
import hashlib
import http.server
import os
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

OPENSSL = "openssl"


# ---- openssl CLI ------------------------------------------------------------------

def openssl(*args, cwd=None, input=None, timeout=60, check=True):
    """Runs `openssl args...`; returns CompletedProcess (bytes). Raises on failure if check."""
    p = subprocess.run([OPENSSL] + [str(a) for a in args], cwd=cwd, input=input,
                       capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("openssl %s failed (%d):\n%s\n%s" % (
            " ".join(str(a) for a in args), p.returncode,
            p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")))
    return p


def s_client_supports(option):
    """True if this openssl s_client knows the option (e.g. "-ssl3")."""
    p = subprocess.run([OPENSSL, "s_client", "-help"], capture_output=True, timeout=20)
    text = (p.stdout + p.stderr).decode("utf-8", "replace")
    return re.search(r"^\s*%s\b" % re.escape(option), text, re.M) is not None


def pem_certs(text):
    """Every PEM certificate block in text (str), in order."""
    return re.findall(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", text,
                      re.S)


def der_of_pem(pem):
    return ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")


def fingerprint(pem_or_path):
    """SHA-256 of the DER certificate (a PEM string or a PEM file path)."""
    if "-----BEGIN" not in pem_or_path:
        with open(pem_or_path) as f:
            pem_or_path = pem_certs(f.read())[0]
    return hashlib.sha256(der_of_pem(pem_or_path)).hexdigest()


def cert_field(pem_or_path, what):
    """`openssl x509 -noout -<what>` of a certificate: subject (RFC 2253), serial, issuer."""
    if "-----BEGIN" in pem_or_path:
        p = openssl("x509", "-noout", "-" + what, "-nameopt", "RFC2253",
                    input=pem_or_path.encode())
    else:
        p = openssl("x509", "-in", pem_or_path, "-noout", "-" + what, "-nameopt", "RFC2253")
    out = p.stdout.decode().strip()
    return out.split("=", 1)[1].strip() if "=" in out else out


# ---- a throw-away PKI -------------------------------------------------------------

class Cert:
    def __init__(self, name, cert, key, serial, subject, issuer=None):
        self.name = name
        self.cert = cert        # PEM path (leaf only)
        self.key = key          # PEM path
        self.serial = serial    # hex, upper case, as in `openssl x509 -serial`
        self.subject = subject  # "/O=.../CN=..." as given to openssl
        self.issuer = issuer    # the issuing Cert (None for a root)
        self.chain = cert       # leaf + intermediates (PKI.leaf sets it)

    @property
    def pem(self):
        with open(self.cert) as f:
            return f.read()

    @property
    def fingerprint(self):
        return fingerprint(self.cert)


class PKI:
    """Certificates made with the openssl CLI in `directory`.

        pki = PKI(tmp_path / "pki")
        ca = pki.ca("ca", "/O=moat tests/CN=test CA")
        a = pki.leaf(ca, "a", "/CN=a.test", dns=["a.test"])
    """

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._n = 0

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _newkey(self, path, key):
        if key == "rsa":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", path)
        elif key == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-pkeyopt", "ec_param_enc:named_curve", "-out", path)
        else:
            raise ValueError(key)
        os.chmod(path, 0o600)

    def _serial(self):
        self._n += 1
        return "%02X%s" % (self._n, os.urandom(8).hex().upper())

    def ca(self, name="ca", subject="/O=moat tests/CN=moat test CA", key="rsa", issuer=None):
        """A root CA, or an intermediate signed by issuer."""
        keyp, certp = self._path(name + ".key"), self._path(name + ".crt")
        self._newkey(keyp, key)
        ext = self._path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = critical, CA:TRUE%s\n"
                    "keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n"
                    "subjectKeyIdentifier = hash\n" % (", pathlen:0" if issuer else ""))
            if issuer:
                f.write("authorityKeyIdentifier = keyid, issuer\n")
        serial = self._serial()
        openssl("req", "-new", "-key", keyp, "-subj", subject, "-out", certp + ".csr")
        if issuer is None:
            openssl("x509", "-req", "-in", certp + ".csr", "-signkey", keyp, "-days", "3650",
                    "-sha256", "-set_serial", "0x" + serial, "-extfile", ext, "-out", certp)
        else:
            openssl("x509", "-req", "-in", certp + ".csr", "-CA", issuer.cert, "-CAkey",
                    issuer.key, "-days", "3650", "-sha256", "-set_serial", "0x" + serial,
                    "-extfile", ext, "-out", certp)
        return Cert(name, certp, keyp, serial, subject, issuer=issuer)

    def leaf(self, ca, name, subject, dns=(), ips=(), key="rsa", ocsp_url=None, client=False,
             days=30, must_staple=False):
        """A certificate signed by ca. client=True: clientAuth EKU and no SANs needed."""
        keyp, certp = self._path(name + ".key"), self._path(name + ".crt")
        self._newkey(keyp, key)
        lines = ["basicConstraints = critical, CA:FALSE",
                 "keyUsage = critical, digitalSignature" + ("" if key == "ec" else
                                                           ", keyEncipherment"),
                 "extendedKeyUsage = " + ("clientAuth" if client else "serverAuth"),
                 "subjectKeyIdentifier = hash",
                 "authorityKeyIdentifier = keyid, issuer"]
        sans = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        if sans:
            lines.append("subjectAltName = " + ",".join(sans))
        if ocsp_url:
            lines.append("authorityInfoAccess = OCSP;URI:" + ocsp_url)
        if must_staple:
            lines.append("tlsfeature = status_request")
        ext = self._path(name + ".ext")
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        serial = self._serial()
        openssl("req", "-new", "-key", keyp, "-subj", subject, "-out", certp + ".csr")
        openssl("x509", "-req", "-in", certp + ".csr", "-CA", ca.cert, "-CAkey", ca.key,
                "-days", str(days), "-sha256", "-set_serial", "0x" + serial, "-extfile", ext,
                "-out", certp)
        c = Cert(name, certp, keyp, serial, subject, issuer=ca)
        # the chain file a server is configured with: the leaf, then the intermediates
        c.chain = certp
        if ca.issuer is not None:
            c.chain = self._path(name + ".chain.pem")
            with open(c.chain, "w") as f:
                f.write(c.pem)
                iss = ca
                while iss is not None and iss.issuer is not None:
                    f.write(iss.pem)
                    iss = iss.issuer
        return c

    def write_index(self, path, entries):
        """An `openssl ocsp -index` file: entries = [(Cert, "V" | "R")]."""
        expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 365 * 86400))
        revoked_at = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() - 3600))
        with open(path, "w") as f:
            for cert, status in entries:
                f.write("%s\t%s\t%s\t%s\tunknown\t%s\n" % (
                    status, expiry, revoked_at if status == "R" else "", cert.serial,
                    cert.subject))
        return path


# ---- OCSP responder ---------------------------------------------------------------

class OcspResponder:
    """An OCSP responder on 127.0.0.1:port, answering with the openssl CLI's responder.

    Each POST body (a DER OCSPRequest; GET /base64 too) is written to a file and answered
    with `openssl ocsp -index INDEX -CA CA -rsigner CA -rkey CAKEY -reqin REQ -respout
    RESP -ndays 1`. .requests counts the requests answered."""

    def __init__(self, ca, index, port=None, ndays=1):
        self.ca, self.index, self.ndays = ca, index, ndays
        self.port = port
        self.requests = 0
        self.errors = []
        self._lock = threading.Lock()
        self._dir = tempfile.mkdtemp(prefix="ocsp-", dir=os.path.dirname(index))
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def answer(self, der_request):
        with self._lock:
            self.requests += 1
            n = self.requests
        req = os.path.join(self._dir, "req-%d.der" % n)
        resp = os.path.join(self._dir, "resp-%d.der" % n)
        with open(req, "wb") as f:
            f.write(der_request)
        p = openssl("ocsp", "-index", self.index, "-CA", self.ca.cert, "-rsigner", self.ca.cert,
                    "-rkey", self.ca.key, "-reqin", req, "-respout", resp,
                    "-ndays", str(self.ndays), check=False)
        if p.returncode != 0 or not os.path.exists(resp):
            self.errors.append(p.stderr.decode("utf-8", "replace"))
            return None
        with open(resp, "rb") as f:
            return f.read()

    def start(self):
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, der):
                if der is None:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(der)))
                self.end_headers()
                self.wfile.write(der)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._reply(responder.answer(self.rfile.read(n)))

            def do_GET(self):
                from urllib.parse import unquote
                b64 = unquote(self.path.rsplit("/", 1)[-1])
                try:
                    der = base64.b64decode(b64)
                except ValueError:
                    der = b""
                self._reply(responder.answer(der))

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.httpd = None


def ocsp_response_file(issuer, cert, url, out):
    """Asks the responder at url for cert's status (as an operator would) -> DER file."""
    p = openssl("ocsp", "-issuer", issuer.cert, "-cert", cert.cert, "-url", url, "-respout",
                out, "-VAfile", issuer.cert, "-no_nonce", "-timeout", "10", check=False)
    if not os.path.exists(out) or os.path.getsize(out) == 0:
        raise AssertionError("no OCSP response from %s:\n%s" % (url, (p.stdout + p.stderr)
                                                               .decode("utf-8", "replace")))
    return out


# ---- openssl s_client -------------------------------------------------------------

class SClient:
    """The result of one `openssl s_client` run, with the interesting lines parsed."""

    def __init__(self, args, rc, out):
        self.args = args
        self.rc = rc
        self.out = out

    def _line(self, pattern):
        m = re.search(pattern, self.out, re.M)
        return m.group(1).strip() if m else None

    @property
    def handshake_ok(self):
        return self.cipher not in (None, "(NONE)", "0000")

    @property
    def protocol(self):
        # "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256" (or "Reused, ...")
        return self._line(r"^(?:New|Reused), (\S+), Cipher is")

    @property
    def cipher(self):
        return self._line(r"^(?:New|Reused), \S+, Cipher is (\S+)")

    @property
    def reused(self):
        lines = re.findall(r"^(New|Reused), ", self.out, re.M)
        return lines[-1] == "Reused" if lines else None

    @property
    def all_reused(self):
        return re.findall(r"^(New|Reused), ", self.out, re.M)

    @property
    def ticket(self):
        """The ticket of the session as s_client printed it at the end of the handshake
        (in TLS 1.2 a resumption that got a fresh ticket shows the new one; s_client does
        not write -sess_out for a resumed TLS 1.2 session)."""
        return ticket_from_text(self.out)

    @property
    def peer_pem(self):
        certs = pem_certs(self.out)
        return certs[0] if certs else None

    @property
    def peer_fingerprint(self):
        return fingerprint(self.peer_pem) if self.peer_pem else None

    @property
    def temp_key(self):
        return self._line(r"^Server Temp Key: (.*)$")

    @property
    def ocsp_status(self):
        if re.search(r"^OCSP response: no response sent", self.out, re.M):
            return None
        return self._line(r"OCSP Response Status: (\S+)")

    @property
    def ocsp_cert_status(self):
        return self._line(r"Cert Status: (\S+)")

    @property
    def ocsp_serial(self):
        return self._line(r"Serial Number: ([0-9A-Fa-f]+)")

    @property
    def alert(self):
        """The alert text of a failed handshake, e.g. "alert handshake failure"."""
        m = re.search(r"(?:sslv3|tlsv1|tlsv13|ssl/tls) (alert [a-z ]+?)(?::|$)", self.out, re.M)
        return m.group(1) if m else None

    @property
    def alert_number(self):
        m = re.search(r"SSL alert number (\d+)", self.out)
        return int(m.group(1)) if m else None

    def __repr__(self):
        return "<s_client %s rc=%s>\n%s" % (" ".join(self.args), self.rc, self.out[-4000:])


def s_client(port, *args, servername="localhost", data=None, cafile=None, timeout=20,
             sess_in=None, sess_out=None):
    """Runs openssl s_client against 127.0.0.1:port.

    data: bytes to send after the handshake; then -ign_eof makes s_client wait for the
    server to close (send "Connection: close" requests). Without data, stdin is empty and
    s_client ends right after the handshake (and whatever the server sends at once).
    servername=None sends no SNI."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
    if servername is None:
        cmd.append("-noservername")
    else:
        cmd += ["-servername", servername]
    if cafile:
        cmd += ["-CAfile", cafile]
    if sess_in:
        cmd += ["-sess_in", str(sess_in)]
    if sess_out:
        cmd += ["-sess_out", str(sess_out)]
    if data is not None:
        cmd.append("-ign_eof")
    cmd += [str(a) for a in args]
    p = subprocess.run(cmd, input=data or b"", capture_output=True, timeout=timeout)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    return SClient(cmd[1:], p.returncode, out)


def http_get(path="/echo", host="localhost"):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode()


# ---- session files and tickets ----------------------------------------------------

def session_text(path):
    return openssl("sess_id", "-in", str(path), "-noout", "-text").stdout.decode()


def ticket_from_text(text):
    """The last "TLS session ticket:" hex dump in `openssl sess_id -text` or s_client output."""
    blocks = re.findall(r"TLS session ticket:\s*\n((?:[ \t]*[0-9a-f]{4} - .*\n?)+)", text)
    if not blocks:
        return b""
    out = bytearray()
    for line in blocks[-1].splitlines():
        hexpart = line.split(" - ", 1)[1][:48]
        out += bytes.fromhex(hexpart.replace("-", " ").replace(" ", ""))
    return bytes(out)


def session_ticket(path):
    """The ticket bytes in an s_client -sess_out file (b"" if none)."""
    return ticket_from_text(session_text(path))


def ticket_key_name(path):
    """The 16-byte key name that starts the ticket (RFC 5077 layout, as OpenSSL builds it)."""
    t = session_ticket(path)
    return t[:16] if len(t) >= 16 else None


def session_lifetime_hint(path):
    m = re.search(r"TLS session ticket lifetime hint: (\d+)", session_text(path))
    return int(m.group(1)) if m else None


# ---- raw ClientHellos -------------------------------------------------------------

# Cipher suite code points (IANA)
SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": 0x0005,
    "TLS_RSA_WITH_RC4_128_MD5": 0x0004,
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": 0xC011,
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": 0xC007,
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": 0x000A,
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA": 0x0016,
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": 0xC012,
    "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA": 0xC008,
    "TLS_RSA_EXPORT_WITH_RC4_40_MD5": 0x0003,
    "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA": 0x0008,
    "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA": 0x0014,
    "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA": 0x0064,
    "TLS_RSA_WITH_DES_CBC_SHA": 0x0009,
    "TLS_RSA_WITH_NULL_SHA": 0x0002,
    "TLS_RSA_WITH_NULL_SHA256": 0x003B,
    "TLS_ECDHE_RSA_WITH_NULL_SHA": 0xC010,
    "TLS_RSA_WITH_IDEA_CBC_SHA": 0x0007,
    "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002F,
    "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009C,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F,
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
    "TLS_DH_anon_WITH_AES_128_CBC_SHA": 0x0034,
    "TLS_ECDH_anon_WITH_AES_128_CBC_SHA": 0xC018,
}

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter",
          50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
          109: "missing_extension", 112: "unrecognized_name", 116: "certificate_required"}


def _ext(etype, body):
    return struct.pack("!HH", etype, len(body)) + body


def client_hello(version=0x0303, suites=(), sni="localhost", record_version=0x0301,
                 extensions=True):
    """A ClientHello record (TLS 1.2 and below / SSLv3 style) offering `suites`.

    extensions: SNI, supported_groups (x25519, P-256, P-384), ec_point_formats,
    signature_algorithms and renegotiation_info; False for a bare SSLv3-style hello."""
    body = struct.pack("!H", version) + os.urandom(32) + b"\x00"
    cs = b"".join(struct.pack("!H", s) for s in suites)
    body += struct.pack("!H", len(cs)) + cs + b"\x01\x00"  # null compression only
    if extensions:
        exts = b""
        if sni:
            name = sni.encode()
            entry = b"\x00" + struct.pack("!H", len(name)) + name
            exts += _ext(0x0000, struct.pack("!H", len(entry)) + entry)
        groups = struct.pack("!HHH", 0x001D, 0x0017, 0x0018)
        exts += _ext(0x000A, struct.pack("!H", len(groups)) + groups)
        exts += _ext(0x000B, b"\x01\x00")
        sigalgs = struct.pack("!HHHHHH", 0x0403, 0x0804, 0x0401, 0x0503, 0x0201, 0x0203)
        exts += _ext(0x000D, struct.pack("!H", len(sigalgs)) + sigalgs)
        exts += _ext(0xFF01, b"\x00")
        body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16" + struct.pack("!HH", record_version, len(hs)) + hs


def sslv2_client_hello(cipher_specs=(0x010080, 0x020080, 0x030080, 0x040080, 0x050080,
                                     0x060040, 0x0700C0)):
    """An SSL 2.0 CLIENT-HELLO (2-byte record header) offering the SSLv2 cipher kinds."""
    specs = b"".join(struct.pack("!I", c)[1:] for c in cipher_specs)
    challenge = os.urandom(16)
    body = b"\x01" + struct.pack("!HHHH", 0x0002, len(specs), 0, len(challenge)) + specs \
        + challenge
    return struct.pack("!H", 0x8000 | len(body)) + body


class Probe:
    """The server's first answer to a raw hello."""

    def __init__(self, kind, version=None, suite=None, alert=None, raw=b""):
        self.kind = kind          # "server_hello", "sslv2_server_hello", "alert", "closed"
        self.version = version
        self.suite = suite
        self.alert = alert
        self.raw = raw

    def __repr__(self):
        if self.kind == "alert":
            return "<alert %s (%s)>" % (self.alert, ALERTS.get(self.alert, "?"))
        if self.kind in ("server_hello", "sslv2_server_hello"):
            return "<%s version=%#06x suite=%s>" % (self.kind, self.version or 0,
                                                     None if self.suite is None
                                                     else "%#06x" % self.suite)
        return "<%s %r>" % (self.kind, self.raw[:40])


def probe(port, hello, timeout=5.0):
    """Sends a raw hello to 127.0.0.1:port and classifies the first answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(hello)
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < 5 and time.monotonic() < deadline:
            try:
                d = s.recv(4096)
            except (ConnectionResetError, socket.timeout, TimeoutError):
                d = b""
            if not d:
                break
            buf += d
        if len(buf) >= 2 and buf[0] & 0x80 and len(buf) >= 3 and buf[2] == 0x04:
            return Probe("sslv2_server_hello", raw=buf)
        if len(buf) < 5:
            return Probe("closed", raw=buf)
        ctype, rversion, rlen = buf[0], struct.unpack("!H", buf[1:3])[0], \
            struct.unpack("!H", buf[3:5])[0]
        while len(buf) < 5 + min(rlen, 64) and time.monotonic() < deadline:
            try:
                d = s.recv(4096)
            except (ConnectionResetError, socket.timeout, TimeoutError):
                d = b""
            if not d:
                break
            buf += d
        rec = buf[5:5 + rlen]
        if ctype == 0x15 and len(rec) >= 2:
            return Probe("alert", version=rversion, alert=rec[1], raw=buf)
        if ctype == 0x16 and len(rec) >= 4 and rec[0] == 0x02:
            body = rec[4:]
            version = struct.unpack("!H", body[0:2])[0]
            sid_len = body[34]
            suite = struct.unpack("!H", body[35 + sid_len:37 + sid_len])[0]
            return Probe("server_hello", version=version, suite=suite, raw=buf)
        return Probe("other", raw=buf)
    finally:
        s.close()


# ---- moat worker threads ----------------------------------------------------------

def worker_cpu_ns(pid):
    """{tid: CPU ns} of every thread of pid but the main one (/proc/PID/task/TID/schedstat)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        if int(tid) == pid:
            continue
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


# ---- misc -------------------------------------------------------------------------

def replace_file(src, dst):
    """Copies src over dst atomically (rename), as a deploy tool would."""
    tmp = dst + ".tmp-%d" % os.getpid()
    with open(src, "rb") as f, open(tmp, "wb") as g:
        g.write(f.read())
    os.chmod(tmp, 0o600)
    os.replace(tmp, dst)


def write_atomic(path, data):
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
