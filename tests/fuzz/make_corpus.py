#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets into tests/fuzz/corpus/.

Small, meaningful seeds: valid requests and responses, chunked bodies, RESP
replies, session records, the configs from conf/. Each target's input starts
with 4 knob bytes (limits, split seed...; see the target's header comment).
Run it again after changing a seed; libFuzzer finds the rest from here.
    tests/fuzz/make_corpus.py
Crash reproducers (regressions) live next to the seeds as crash-* files and
are not touched by this script.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "corpus")

# knobs: limit fields in the low byte(s), the split seed in all of them
K_DEFAULT = b"\x00\x00\x00\x00"   # default limits, no-op seed
K_MIXED = b"\x5a\x13\x10\xf0"     # mid-range limits, busy split seed

REQUESTS = {
    "get": b"GET /index.html?a=b HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\n"
           b"Accept: */*\r\n\r\n",
    "get_http10": b"GET / HTTP/1.0\r\n\r\n",
    "post_cl": b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\nhello",
    "post_chunked": b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=\"q\"\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n",
    "smuggle_cl_te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "smuggle_te_list": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "dup_cl": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
    "websocket": b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                 b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n",
    "connect": b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
    "options_star": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "session_cookie": b"GET /app HTTP/1.1\r\nHost: app.example\r\n"
                      b"Cookie: theme=dark; sid=abcdefghijklmnop0123456789\r\n"
                      b"Authorization: Bearer abcdefghijklmnopqrstuvwx\r\n\r\n",
    "many_headers": b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"x%d:v\r\n" % i for i in range(40)) + b"\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    "lookalike": b"GET /admin;x=y/../%3b HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n"
                 b"X-Original-URL: /admin\r\nTrue-Client-IP: 1.2.3.4\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
}

RESPONSES = {
    "200_cl": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "200_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive"
                   b"\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
    "200_close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close",
    "200_http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "204_body": b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
    "304": b"HTTP/1.0 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    "101_ws": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    "100_continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "te_gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "set_cookie": b"HTTP/1.1 302 Found\r\nLocation: /login\r\nSet-Cookie: a=b; HttpOnly\r\n"
                  b"X-Moat-User: forged\r\nServer: app\r\nContent-Length: 0\r\n\r\n",
    "no_reason": b"HTTP/1.1 503 \r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
}

CHUNKED = {
    "simple": b"5\r\nhello\r\n0\r\n\r\n",
    "ext": b"A;n=v;m=\"a\\\"b\"\r\n0123456789\r\n0\r\n\r\n",
    "trailers": b"3\r\nabc\r\n0\r\nX-Trailer: v\r\nX-Moat-User: forged\r\n\r\n",
    "multi": b"1\r\na\r\n2\r\nbc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
    "empty": b"0\r\n\r\n",
    "leading_zeros": b"0005\r\nhello\r\n000\r\n\r\n",
    "huge_size": b"ffffffffffffffff\r\nx\r\n",
    "bare_lf": b"5\nhello\n0\n\n",
    "upper_hex": b"1F\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n",
}


def resp_bulk(s):
    return b"$%d\r\n%s\r\n" % (len(s), s)


def resp_array(items):
    return b"*%d\r\n" % len(items) + b"".join(items)


SESSION_FIELDS = [b"tenant", b"acme", b"user", b"u-42", b"roles", b"admin,billing",
                  b"mfa", b"1", b"exp", b"4102444800"]

RESP = {
    "status": b"+OK\r\n",
    "error": b"-ERR unknown command\r\n",
    "wrongpass": b"-WRONGPASS invalid username-password pair\r\n",
    "integer": b":42\r\n",
    "nil": b"$-1\r\n",
    "nil_array": b"*-1\r\n",
    "session": resp_array([resp_bulk(x) for x in SESSION_FIELDS]),
    "session_expired": resp_array([resp_bulk(x) for x in
                                   [b"tenant", b"acme", b"user", b"u", b"exp", b"1"]]),
    "empty_array": b"*0\r\n",
    # what the global rate limiter's script answers: {allowed, remaining, retry_after_ms, reset}
    "ratelimit": resp_array([b":1\r\n", b":99\r\n", b":0\r\n", b":60000\r\n"]),
    "noscript": b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    "subscribe": resp_array([resp_bulk(b"subscribe"), resp_bulk(b"__redis__:invalidate"),
                             b":1\r\n"]),
    "invalidate": resp_array([resp_bulk(b"message"), resp_bulk(b"__redis__:invalidate"),
                              resp_array([resp_bulk(b"moat:s:" + b"ab" * 32)])]),
    "invalidate_flush": resp_array([resp_bulk(b"message"), resp_bulk(b"__redis__:invalidate"),
                                    b"*-1\r\n"]),
    "nested": resp_array([resp_array([resp_array([b":1\r\n"])]), b"+x\r\n"]),
    "pipeline": b"+OK\r\n:1\r\n" + resp_bulk(b"v") + b"-ERR x\r\n",
    "inline_junk": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "huge_bulk": b"$1000000000\r\nxx",
}


def elem_str(s):
    return b"\x00" + bytes([len(s)]) + s


def session_input(headers, fields, extra=b""):
    return b"".join(h + b"\n" for h in headers) + b"\n" + b"".join(
        elem_str(f) for f in fields) + extra


SESSION = {
    "cookie_ok": session_input([b"Cookie: theme=dark; sid=abcdefghijklmnop0123456789"],
                               SESSION_FIELDS),
    "bearer_ok": session_input([b"Authorization: Bearer abcdefghijklmnopqrstuvwx"],
                               SESSION_FIELDS[:4]),
    "two_cookies": session_input([b"Cookie: sid=aaaaaaaaaaaaaaaaaaaa",
                                  b"Cookie: sid=bbbbbbbbbbbbbbbbbbbb"], []),
    "bad_value": session_input([b"Cookie: sid=abcdefghijklmnop0123456789"],
                               [b"tenant", b"acme\r\nX-Moat-User: root", b"user", b"u"]),
    "int_exp": session_input([], [b"tenant", b"t", b"user", b"u", b"exp"], b"\x06\x00\x00\x00\x00\x01"),
    "nil_value": session_input([], [b"tenant", b"t", b"user"], b"\x07\x00"),
}


CONFIG = {
    # alias expansion: the loader's node budget must stop it
    "alias_bomb.yaml": b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                       b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c]\n"
                       b"routes: [*d, *d, *d, *d, *d, *d, *d, *d]\n",
    "merge_keys.yaml": b"base: &base {servers: ['127.0.0.1:9000']}\n"
                       b"upstreams: {app: {<<: *base}, other: *base}\n"
                       b"routes: [{match: {path_prefix: /}, auth: none, upstream: app}]\n",
    "types.yaml": b"workers: 0x10\nlimits: {max_headers: 1e3, max_header_bytes: -1, "
                  b"header_timeout: 10y, drain_timeout: ''}\nlisten: {admin: 'unix:/tmp/a'}\n",
    "multi_doc.yaml": b"workers: 1\n---\nworkers: 2\n",
    "tags.yaml": b"!!binary workers: !!str 2\nroutes: !custom [1]\n",
}


def h2_fields(fields, flags):
    """fuzz_h2_head's input: a flags byte, then [name len][name][value len: 2][value]."""
    out = bytes([flags])
    for n, v in fields:
        n, v = n.encode(), v.encode()
        out += bytes([len(n)]) + n + len(v).to_bytes(2, "big") + v
    return out


H2_BASE = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com"),
           (":path", "/a?b=1")]
H2_HEADS = {  # flags: 1 body without content-length, 2 16 KiB fields, 4 100 fields
    "get": h2_fields(H2_BASE + [("accept", "*/*"), ("cookie", "a=1"), ("cookie", "b=2")], 6),
    "post_chunked": h2_fields([(":method", "POST")] + H2_BASE[1:] + [("content-type", "text/plain")], 7),
    "post_cl": h2_fields([(":method", "POST")] + H2_BASE[1:] + [("content-length", "5")], 6),
    "host_mismatch": h2_fields(H2_BASE + [("host", "other.example")], 6),
    "te_smuggle": h2_fields(H2_BASE + [("transfer-encoding", "chunked")], 6),
    "no_authority_host": h2_fields(H2_BASE[:2] + [(":path", "/"), ("host", "h.example:8443")], 6),
}


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
# fuzz_proxy_protocol: knob bit 0 clear = PROXY header (then TLS bytes), set = X-Forwarded-For
PROXY = {
    "v1_tcp4": b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n\x16\x03\x01",
    "v1_tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
    "v1_unknown": b"PROXY UNKNOWN ff::1 ff::2 1 2\r\n",
    "v2_inet": V2_SIG + b"\x21\x11\x00\x14" + bytes([192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 4, 1, 0xbb])
    + b"\x04\x00\x05hello",
    "v2_inet6": V2_SIG + b"\x21\x21\x00\x24" + bytes(range(36)),
    "v2_local": V2_SIG + b"\x20\x00\x00\x00",
    "v2_unix": V2_SIG + b"\x21\x31\x00\xd8" + bytes(216),
    "tls": b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
}
XFF = {
    "chain": b"1.1.1.1, 10.0.0.5,10.1.1.1",
    "ports": b"[2001:db8::1]:443, 192.0.2.1:80, fd00::1",
    "junk": b"unknown, ,10.0.0.1,,",
}


def write(target, name, knob, body):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(knob + body)


def main():
    for target in ("http1_request", "http1_response", "chunked", "resp", "session", "config",
                   "h2_head", "proxy_protocol"):
        d = os.path.join(OUT, target)
        if os.path.isdir(d):
            for n in os.listdir(d):
                if not n.startswith("crash-"):
                    os.unlink(os.path.join(d, n))
    for name, body in REQUESTS.items():
        write("http1_request", name, K_DEFAULT, body)
        write("http1_request", name + "_k", K_MIXED, body)
    for name, body in RESPONSES.items():
        write("http1_response", name, K_DEFAULT, body)
        write("http1_response", name + "_k", K_MIXED, body)
    for name, body in CHUNKED.items():
        write("chunked", name, K_DEFAULT, body)
        write("chunked", name + "_k", struct.pack(">I", 0x00200ff0), body)  # small trailer limit
    for name, body in RESP.items():
        # 5 pending commands (knob bits 5..9), 16 MiB limit, push hook
        write("resp", name, struct.pack(">I", (5 << 5) | 16 | 3), body)
        write("resp", name + "_sub", struct.pack(">I", (3 << 5) | 16 | 8 | 1), body)
    for name, body in SESSION.items():
        # cookie "sid", bearer, min 16 / max 256, now = 1700000000
        write("session", name, struct.pack(">I", (255 << 16) | (15 << 8) | 8 | 4 | 1), body)
    for name, body in H2_HEADS.items():
        write("h2_head", name, b"", body)
    for name, body in CONFIG.items():
        write("config", name, b"", body)
    for name, body in PROXY.items():
        write("proxy_protocol", name, b"\x00\x00\x10\x00", body)
    for name, body in XFF.items():
        write("proxy_protocol", "xff_" + name, b"\x00\x00\x10\x01", body)
    for root, _, files in os.walk(os.path.join(REPO, "conf")):
        for n in sorted(files):
            if n.endswith(".yaml"):
                rel = os.path.relpath(os.path.join(root, n), os.path.join(REPO, "conf"))
                shutil.copy(os.path.join(root, n),
                            os.path.join(OUT, "config", rel.replace("/", "_")))


if __name__ == "__main__":
    os.makedirs(os.path.join(OUT, "config"), exist_ok=True)
    main()
