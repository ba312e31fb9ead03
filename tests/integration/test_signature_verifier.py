"""scripts/verify-signature.py against the example of docs/signature.md.

The same vector is asserted by tests/unit/test_signature.c against moat's C code,
so the C signer, this verifier, the docs and `openssl dgst` all agree.
No moat process is needed here.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "verify-signature.py"
DOC = ROOT / "docs" / "signature.md"

DOC_KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
DOC_T = 1700000000
DOC_MAC = "f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae"
DOC_VALUE = f"t={DOC_T},v1={DOC_MAC}"
DOC_CANONICAL = (b"moat-v1\n1700000000\nGET\n/api/v1/projects?page=2&sort=name\n"
                 b"app.example.com\nacme\nuser-42\n1\n4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f")
METHOD, TARGET = "GET", "/api/v1/projects?page=2&sort=name"


def doc_headers(**override):
    h = {
        "Host": "app.example.com",
        "X-Tenant-ID": "acme",
        "X-User-ID": "user-42",
        "X-Session-MFA": "1",
        "X-Request-ID": "4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f",
        "X-Moat-Signature": DOC_VALUE,
    }
    for k, v in override.items():
        k = k.replace("_", "-")
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return list(h.items())


@pytest.fixture(scope="module")
def vs():
    spec = importlib.util.spec_from_file_location("verify_signature", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def key():
    return bytes.fromhex(DOC_KEY_HEX)


def test_doc_vector(vs, key):
    assert vs.canonical(DOC_T, METHOD, TARGET, "app.example.com", "acme", "user-42", "1",
                        "4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f") == DOC_CANONICAL
    assert vs.sign(key, DOC_T, METHOD, TARGET, "App.Example.com", "acme", "user-42", "1",
                   "4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f") == DOC_VALUE
    assert vs.check(doc_headers(), METHOD, TARGET, [key], now=DOC_T) == (True, "valid")
    # a dict works as well as a list of pairs; names are case-insensitive
    assert vs.verify({k.lower(): v for k, v in doc_headers()}, METHOD, TARGET, [key], now=DOC_T)


def test_doc_page_shows_the_vector():
    text = DOC.read_text()
    for needle in (DOC_KEY_HEX, DOC_VALUE, DOC_MAC, DOC_CANONICAL.decode().replace("\n", r"\n")):
        assert needle in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
def test_doc_openssl_recipe():
    out = subprocess.run(["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt",
                          "hexkey:" + DOC_KEY_HEX], input=DOC_CANONICAL, capture_output=True,
                         check=True).stdout.decode()
    assert out.strip().endswith(DOC_MAC)


def test_host_case_does_not_matter(vs, key):
    assert vs.verify(doc_headers(Host="App.Example.COM"), METHOD, TARGET, [key], now=DOC_T)


@pytest.mark.parametrize("change", [
    {"method": "POST"},
    {"target": "/api/v1/projects?page=3&sort=name"},
    {"target": "/api/v1/projects"},
    {"Host": "app.example.org"},
    {"X-Tenant-ID": "acmf"},
    {"X-Tenant-ID": None},
    {"X-User-ID": "user-43"},
    {"X-Session-MFA": "0"},
    {"X-Session-MFA": None},
    {"X-Request-ID": "0" * 32},
    {"X-Moat-Signature": f"t={DOC_T + 1},v1={DOC_MAC}"},
    {"X-Moat-Signature": None},
])
def test_any_altered_field_fails(vs, key, change):
    method = change.pop("method", METHOD)
    target = change.pop("target", TARGET)
    ok, reason = vs.check(doc_headers(**change), method, target, [key], now=DOC_T)
    assert not ok, reason


def test_duplicate_or_lookalike_identity_header_fails(vs, key):
    for extra in (("X-Tenant-ID", "evil"), ("x_tenant_id", "evil"), ("X-Moat-Signature", DOC_VALUE)):
        ok, reason = vs.check(doc_headers() + [extra], METHOD, TARGET, [key], now=DOC_T)
        assert not ok and "appears 2 times" in reason
    # unrelated extra headers are fine
    assert vs.verify(doc_headers() + [("X-Other", "1")], METHOD, TARGET, [key], now=DOC_T)


def test_previous_key_accepted(vs, key):
    new = bytes(range(0x40, 0x60))
    value = vs.sign(new, DOC_T, METHOD, TARGET, "app.example.com", "acme", "user-42", "1",
                    "4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f")
    h = doc_headers(X_Moat_Signature=value)
    assert vs.verify(h, METHOD, TARGET, [new, key], now=DOC_T)
    assert vs.verify(doc_headers(), METHOD, TARGET, [new, key], now=DOC_T)
    assert not vs.verify(h, METHOD, TARGET, [key], now=DOC_T)


def test_skew(vs, key):
    h = doc_headers()
    assert vs.verify(h, METHOD, TARGET, [key], now=DOC_T + 300)
    assert vs.verify(h, METHOD, TARGET, [key], now=DOC_T - 300)
    assert not vs.verify(h, METHOD, TARGET, [key], now=DOC_T + 301)
    assert not vs.verify(h, METHOD, TARGET, [key], now=DOC_T - 301)
    assert vs.verify(h, METHOD, TARGET, [key], now=DOC_T + 30, max_skew=30)
    assert not vs.verify(h, METHOD, TARGET, [key], now=DOC_T, max_skew=-1)
    assert not vs.verify(h, METHOD, TARGET, [key])  # the real clock is far from 2023


@pytest.mark.parametrize("value", [
    "", f"t={DOC_T}", f"v1={DOC_MAC}", f"t={DOC_T},v1={DOC_MAC.upper()}",
    f"t=0{DOC_T},v1={DOC_MAC}", f"t=+{DOC_T},v1={DOC_MAC}", f"t={DOC_T}, v1={DOC_MAC}",
    f"t={DOC_T},,v1={DOC_MAC}", f"t={DOC_T},v1={DOC_MAC},", f"t=1,t={DOC_T},v1={DOC_MAC}",
    f"t={DOC_T},junk,v1={DOC_MAC}", f"t={DOC_T},v1={DOC_MAC[:-1]}",
])
def test_malformed_values(vs, key, value):
    assert not vs.verify(doc_headers(X_Moat_Signature=value), METHOD, TARGET, [key], now=DOC_T)


def test_forward_compatible_values(vs, key):
    other = "0" * 64
    for value in (f"t={DOC_T},v1={DOC_MAC},v2=future", f"v1={other},t={DOC_T},v1={DOC_MAC}"):
        assert vs.verify(doc_headers(X_Moat_Signature=value), METHOD, TARGET, [key], now=DOC_T)


def test_from_wsgi(vs, key):
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": TARGET, "PATH_INFO": "/api/v1/projects"}
    for name, value in doc_headers():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    assert vs.verify(*vs.from_wsgi(environ), [key], now=DOC_T)
    with pytest.raises(ValueError):
        vs.from_wsgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/"})


def test_load_key_formats(vs, tmp_path):
    p = tmp_path / "k"
    p.write_text(DOC_KEY_HEX + "\n")
    assert vs.load_key(p) == bytes(range(32))
    p.write_bytes(DOC_KEY_HEX.upper().encode() + b" \r\n\t")
    assert vs.load_key(p) == bytes(range(32))
    p.write_bytes(bytes(range(0x80, 0xa8)))
    assert vs.load_key(p) == bytes(range(0x80, 0xa8))
    p.write_bytes(b" " + b"z" * 33 + b" \n\n")
    assert vs.load_key(p) == b" " + b"z" * 33
    for bad in (DOC_KEY_HEX[:-2].encode(), DOC_KEY_HEX.encode() + b"0", b"z" * 31,
                b"z" * 31 + b"\n", b"z" * 65, b"", b" \n", DOC_KEY_HEX.encode() * 2 + b"00"):
        p.write_bytes(bad)
        with pytest.raises(vs.KeyFileError):
            vs.load_key(p)


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], input=stdin,
                          capture_output=True, text=True)


def test_cli_headers_and_json(tmp_path):
    kf = tmp_path / "signing.key"
    kf.write_text(DOC_KEY_HEX + "\n")
    prev = tmp_path / "old.key"
    prev.write_text("ab" * 32 + "\n")
    hdr_args = [a for n, v in doc_headers() for a in ("--header", f"{n}: {v}")]

    r = run_cli("--key-file", str(kf), "--method", METHOD, "--target", TARGET,
                "--now", str(DOC_T), *hdr_args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "valid"

    # the integration upstream's dump format: list of [name, value] pairs
    dump = {"method": METHOD, "path": TARGET, "headers": [[n, v] for n, v in doc_headers()]}
    jf = tmp_path / "req.json"
    jf.write_text(json.dumps(dump))
    r = run_cli("--key-file", str(prev), "--previous-key-file", str(kf), "--json", str(jf),
                "--now", str(DOC_T + 299))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("--key-file", str(kf), "--json", "-", "--now", str(DOC_T), stdin=json.dumps(dump))
    assert r.returncode == 0, r.stdout + r.stderr
    # upstream_server.py's /echo splits the target into path and query; "target" wins
    for variant in ({"path": "/api/v1/projects", "query": "page=2&sort=name"},
                    {"target": TARGET, "path": "/ignored", "query": ""}):
        d = {"method": METHOD, "headers": dump["headers"], **variant}
        r = run_cli("--key-file", str(kf), "--json", "-", "--now", str(DOC_T), stdin=json.dumps(d))
        assert r.returncode == 0, r.stdout + r.stderr
    d = {"method": METHOD, "headers": dump["headers"], "path": "/api/v1/projects", "query": ""}
    r = run_cli("--key-file", str(kf), "--json", "-", "--now", str(DOC_T), stdin=json.dumps(d))
    assert r.returncode == 1

    r = run_cli("--key-file", str(prev), "--json", str(jf), "--now", str(DOC_T))
    assert r.returncode == 1 and "does not match" in r.stdout
    r = run_cli("--key-file", str(kf), "--json", str(jf), "--now", str(DOC_T + 301))
    assert r.returncode == 1 and "skew" in r.stdout
    dump["headers"][1][1] = "other-tenant"
    jf.write_text(json.dumps(dump))
    r = run_cli("--key-file", str(kf), "--json", str(jf), "--now", str(DOC_T))
    assert r.returncode == 1 and r.stdout.startswith("invalid:")

    # usage and key errors
    kf.write_text("abcd\n")
    r = run_cli("--key-file", str(kf), "--json", str(jf))
    assert r.returncode == 2 and "hex key has 4 digits" in r.stderr
    r = run_cli("--key-file", str(prev), "--method", "GET")
    assert r.returncode == 2
    r = run_cli("--key-file", os.devnull + "x", "--json", str(jf))
    assert r.returncode == 2
