#!/usr/bin/python3
"""Verify moat's X-Moat-Signature on a request an upstream received.

Standard library only: copy this file (or the functions above main()) into your
service. The contract is docs/signature.md; in short

    X-Moat-Signature: t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(key, canonical)>

    canonical = "\\n".join(["moat-v1", t, method, target, host.lower(), x_tenant_id,
                           x_user_id, x_session_mfa, x_request_id])   # no trailing LF

where method and target are the request line as received (raw target, not a
decoded path), host is the Host header and the last four are the headers of those
names (empty string when absent).

Library use:

    keys = [load_key("/etc/moat/signing.key"), load_key("/etc/moat/signing.prev.key")]
    if not verify(request_headers, method, raw_target, keys):
        return 401

request_headers may be a dict or a list of (name, value) pairs; str values are
taken as latin-1 (what WSGI/ASGI servers hand out), bytes as they are.

CLI:

    verify-signature.py --key-file K [--previous-key-file K2] \\
        --method GET --target '/x?y=1' --header 'Host: app.example.com' \\
        --header 'X-Tenant-ID: acme' --header 'X-Moat-Signature: t=...,v1=...'
    verify-signature.py --key-file K --json dump.json
        # dump.json: {"method": "GET", "target": "/x?y=1", "headers": [["Host", "..."], ...]}
        # ("path" + optional "query" instead of "target": upstream_server.py's /echo)

Exit status: 0 valid, 1 invalid (the reason is printed), 2 usage or key file error.
"""

import argparse
import hashlib
import hmac
import json
import re
import sys
import time

SCHEME = "moat-v1"
SIGNATURE_HEADER = "X-Moat-Signature"
# Headers whose values are signed, in canonical order after method and target.
SIGNED_HEADERS = ("Host", "X-Tenant-ID", "X-User-ID", "X-Session-MFA", "X-Request-ID")

KEY_MIN, KEY_MAX = 32, 64
_KEY_FILE_MAX = 1024
_T_RE = re.compile(r"(0|[1-9][0-9]{0,18})")
_V1_RE = re.compile(r"[0-9a-f]{64}")
_MAX_V1 = 8


class KeyFileError(ValueError):
    """A key file that moat itself would refuse to load."""


def load_key(path):
    """Reads a signing key file exactly as moat does (hex or raw, 32..64 bytes)."""
    with open(path, "rb") as f:
        data = f.read(_KEY_FILE_MAX + 1)
    if len(data) > _KEY_FILE_MAX:
        raise KeyFileError(f"{path}: signing key file larger than {_KEY_FILE_MAX} bytes")
    data = data.rstrip(b" \t\r\n\v\f")
    if data and re.fullmatch(rb"[0-9a-fA-F]+", data):
        if len(data) % 2 or not 2 * KEY_MIN <= len(data) <= 2 * KEY_MAX:
            raise KeyFileError(f"{path}: hex key has {len(data)} digits, need an even number "
                            f"from {2 * KEY_MIN} to {2 * KEY_MAX}")
        return bytes.fromhex(data.decode("ascii"))
    if not KEY_MIN <= len(data) <= KEY_MAX:
        raise KeyFileError(f"{path}: raw key has {len(data)} bytes, need {KEY_MIN} to {KEY_MAX} "
                        f"(or 64+ hex digits)")
    return data


def _b(v):
    return v if isinstance(v, bytes) else str(v).encode("latin-1")


def _fold(name):
    # moat strips client headers in every spelling an upstream may read as the
    # same name (X_Tenant_ID becomes HTTP_X_TENANT_ID in CGI/WSGI): fold the same
    # way, so that a second spelling that slipped past moat is seen as a duplicate.
    if not isinstance(name, bytes):
        name = str(name).encode("latin-1", errors="replace")
    return re.sub(rb"[^a-z0-9]", b"_", name.strip(b" \t").lower())  # ASCII-only lower()


def canonical(t, method, target, host, tenant=b"", user=b"", mfa=b"", request_id=b""):
    """The signed bytes. Raises ValueError if a field holds CR or LF."""
    fields = [SCHEME.encode(), str(int(t)).encode(), _b(method), _b(target), _b(host).lower(),
              _b(tenant), _b(user), _b(mfa), _b(request_id)]
    for v in fields:
        if b"\n" in v or b"\r" in v:
            raise ValueError("field contains CR or LF")
    return b"\n".join(fields)


def sign(key, t, method, target, host, tenant=b"", user=b"", mfa=b"", request_id=b""):
    """The X-Moat-Signature value moat would send (for tests of your own code)."""
    mac = hmac.new(key, canonical(t, method, target, host, tenant, user, mfa, request_id),
                   hashlib.sha256).hexdigest()
    return f"t={int(t)},v1={mac}"


def _parse_value(value):
    """Returns (t, [v1 hex]) or raises ValueError; same grammar as moat's verifier."""
    t, v1 = None, []
    for item in value.split(","):
        name, eq, val = item.partition("=")
        if not item or " " in item or not eq or not name:
            raise ValueError(f"malformed item {item!r}")
        if name == "t":
            if t is not None or not _T_RE.fullmatch(val) or int(val) > 2**63 - 1:
                raise ValueError("bad or repeated t")
            t = int(val)
        elif name == "v1":
            if len(v1) == _MAX_V1 or not _V1_RE.fullmatch(val):
                raise ValueError("bad v1 (must be 64 lowercase hex digits)")
            v1.append(val)
        # other schemes are ignored so that moat can add one next to v1
    if t is None or not v1:
        raise ValueError("missing t or v1")
    return t, v1


def _collect(headers):
    pairs = headers.items() if hasattr(headers, "items") else headers
    found = {}
    for name, value in pairs:
        found.setdefault(_fold(name), []).append(value)
    return found


def check(headers, method, target, keys, now=None, max_skew=300):
    """Like verify() but returns (ok, reason)."""
    found = _collect(headers)
    values = {}
    for name in SIGNED_HEADERS + (SIGNATURE_HEADER,):
        got = found.get(_fold(name), [])
        if len(got) > 1:
            return False, f"{name} appears {len(got)} times"
        values[name] = got[0] if got else b""
    sig = values[SIGNATURE_HEADER]
    if not sig:
        return False, f"no {SIGNATURE_HEADER} header"
    try:
        t, macs = _parse_value(sig.decode("latin-1") if isinstance(sig, bytes) else sig)
    except ValueError as e:
        return False, f"malformed {SIGNATURE_HEADER}: {e}"
    now = int(time.time()) if now is None else int(now)
    if max_skew < 0 or abs(now - t) > max_skew:
        return False, f"timestamp {t} is {now - t:+d}s from now (max skew {max_skew}s)"
    try:
        msg = canonical(t, method, target, *(values[n] for n in SIGNED_HEADERS))
    except ValueError as e:
        return False, str(e)
    for key in keys:
        expected = hmac.new(key, msg, hashlib.sha256).hexdigest()
        # compare every candidate: no early exit that depends on secret data
        if any([hmac.compare_digest(expected, m) for m in macs]):
            return True, "valid"
    return False, "signature does not match any key"


def verify(headers, method, target, keys, now=None, max_skew=300):
    """True if headers carry a valid X-Moat-Signature for this request.

    headers: dict or list of (name, value) pairs as received; method and target:
    the request line as received; keys: list of key bytes (current and, during a
    rotation, previous); now: unix seconds (default: the clock); max_skew: seconds.
    """
    return check(headers, method, target, keys, now, max_skew)[0]


def from_wsgi(environ):
    """(headers, method, target) for verify() from a WSGI environ.

    The raw request-target is needed, not PATH_INFO (decoded): gunicorn exposes it
    as RAW_URI, uWSGI and mod_wsgi as REQUEST_URI.
    """
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if target is None:
        raise ValueError("the WSGI server does not expose the raw request-target")
    headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items()
               if k.startswith("HTTP_")]
    return headers, environ["REQUEST_METHOD"], target


def _dump_target(dump):
    """The raw request-target of a JSON request dump.

    "target" is used as is. Otherwise "path", plus "?" and "query" when the dump has
    a non-empty "query" (tests/integration/upstream_server.py's /echo and log split
    them; a bare trailing "?" cannot be recovered from that split, so prefer "target").
    """
    if "target" in dump:
        return dump["target"]
    query = dump.get("query") or ""
    return dump["path"] + ("?" + query if query else "")


def _parse_header_arg(s):
    name, colon, value = s.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {s!r}")
    return name.strip(), value.strip(" \t")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Verify moat's X-Moat-Signature.")
    ap.add_argument("--key-file", required=True, help="current signing key")
    ap.add_argument("--previous-key-file", help="previous key, accepted during a rotation")
    ap.add_argument("--json", metavar="FILE",
                    help='request dump: {"method", "target" (or "path" [+ "query"]), '
                         '"headers": [[n, v], ...]}; "-" reads stdin')
    ap.add_argument("--method")
    ap.add_argument("--target", help="request-target as received: /path?query")
    ap.add_argument("--header", action="append", default=[], type=_parse_header_arg,
                    metavar="'NAME: VALUE'")
    ap.add_argument("--now", type=int, help="unix seconds to check against (default: clock)")
    ap.add_argument("--max-skew", type=int, default=300, help="seconds (default 300)")
    args = ap.parse_args(argv)

    try:
        keys = [load_key(args.key_file)]
        if args.previous_key_file:
            keys.append(load_key(args.previous_key_file))
    except (OSError, KeyFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.json:
        try:
            with (sys.stdin if args.json == "-" else open(args.json, encoding="utf-8")) as f:
                dump = json.load(f)
            method = dump["method"]
            target = _dump_target(dump)
            headers = dump["headers"]
            if isinstance(headers, list):
                headers = [(n, v) for n, v in headers]
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: cannot read {args.json}: {e!r}", file=sys.stderr)
            return 2
    else:
        if args.method is None or args.target is None:
            ap.error("--method and --target are required without --json")
        method, target, headers = args.method, args.target, args.header

    ok, reason = check(headers, method, target, keys, args.now, args.max_skew)
    print(reason if ok else f"invalid: {reason}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
