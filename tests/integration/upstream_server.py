#!/usr/bin/env python3
"""A real HTTP/1.1 upstream for moat's integration tests (standard library only).

Run as its own process:

    upstream_server.py --port N [--name NAME] [--log FILE] [--host 127.0.0.1]
                       [--idle-timeout S] [--tls-cert FILE --tls-key FILE] [--capture]

It speaks HTTP/1.1 by hand (keep-alive, pipelining, Content-Length and chunked
bodies both ways, Expect: 100-continue, HEAD, websocket) so tests can see exactly
what moat put on the wire. Endpoints:

  /echo                JSON: method, target (raw request-target), path, query, version,
                       headers ([name, value]
                       pairs in order), body_length, body_sha256, upstream,
                       connection_id, request_count (on this connection)
  /chunked?n=K&size=S  chunked response: chunk i is S bytes of chr(ord('a') + i % 26)
  /big?bytes=N         N bytes (big_body(N)) with Content-Length, streamed
  /slow?ms=N           waits N ms, then answers like /echo
  /status?code=N       answers with status N (no body for 1xx/204/304)
  /close               no Content-Length, Connection: close, body (?bytes=N, default
                       10000, close_body(N)) until the connection closes
  /head                GET: 1234 bytes 'h'; HEAD: the same head, no body
  /ws                  websocket handshake (101), then echoes frames unmasked
  /healthz             200 "ok"
  /headers?set=N:V     like /echo, with response header N: V (set= may repeat)
  /drop                reads the request, then closes without answering
  /bad?kind=K          an invalid response: garbage, dup_cl (two differing
                       Content-Length), cl_te (CL and TE), bare_lf, no_status
  anything else        like /echo

--tls-cert/--tls-key: HTTPS instead of plain HTTP (each connection's handshake in its
own thread; a client that does not speak TLS is logged as "tls_failed" and closed);
/echo then also reports "tls": true.

--delay-ms N: every request but /healthz waits N ms before it is answered (a slow server).
--fail-status N: every request but /healthz is answered with status N (a broken server).

--capture: every request, whatever its path, is read as framed (Content-Length or
chunked, trailers included) and answered 200 with the JSON {"raw": the exact bytes
received (head, body, trailers; latin-1), "upstream": NAME}; the same bytes are logged
as {"event": "raw", "conn", "raw"}. For what moat put on the wire byte for byte.

Every request received is logged to --log as JSON lines:
  {"event": "connect", "conn": id}                        a TCP connection was accepted
  {"event": "request", "conn", "n", "method", "path", "query", "version", "headers"}
                                                          a request head was received
  {"event": "complete", "conn", "n", "path", "body_length", "body_sha256"}
                                                          its body was read completely
  {"event": "bad", "conn", "error", "raw"}                bytes that did not parse
  {"event": "raw", "conn", "raw"}                         (--capture) a request's bytes
"""

import argparse
import base64
import hashlib
import itertools
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_LINE = 65536
MAX_HEADERS = 1000
IDLE_TIMEOUT = 120.0  # seconds a keep-alive connection may sit idle (--idle-timeout)

_PATTERN_BLOCK = bytes(range(256)) * 256  # 64 KiB


def big_body_chunks(n):
    """Yields the bytes of /big?bytes=n in blocks (deterministic pattern)."""
    left = n
    while left > 0:
        block = _PATTERN_BLOCK if left >= len(_PATTERN_BLOCK) else _PATTERN_BLOCK[:left]
        left -= len(block)
        yield block


def big_body(n):
    return b"".join(big_body_chunks(n))


def big_body_sha256(n):
    h = hashlib.sha256()
    for block in big_body_chunks(n):
        h.update(block)
    return h.hexdigest()


def chunked_body_chunk(i, size):
    return bytes([ord("a") + i % 26]) * size


def chunked_body(n, size):
    return b"".join(chunked_body_chunk(i, size) for i in range(n))


def close_body(n):
    return (b"0123456789" * (n // 10 + 1))[:n]


HEAD_BODY = b"h" * 1234


def websocket_accept(key):
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def ws_unmask(payload, mask):
    n = len(payload)
    if n == 0:
        return b""
    m = (mask * (n // 4 + 1))[:n]
    x = int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")
    return x.to_bytes(n, "big")


def ws_frame(opcode, payload, fin=True, mask=None):
    """Builds one websocket frame (mask: 4 bytes for client frames, None for server)."""
    b0 = (0x80 if fin else 0) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if mask:
        return head + mask + ws_unmask(payload, mask)
    return head + payload


def ws_read_frame(read_exact):
    """Reads one frame with read_exact(n) -> bytes; returns (fin, opcode, payload)."""
    b0, b1 = read_exact(2)
    fin = bool(b0 & 0x80)
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(read_exact(8), "big")
    mask = read_exact(4) if masked else None
    payload = read_exact(n) if n else b""
    if mask:
        payload = ws_unmask(payload, mask)
    return fin, opcode, payload


class BadRequest(Exception):
    pass


class Log:
    """Appends JSON lines to a file (or nowhere), one writer at a time."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1) if path else None

    def write(self, **entry):
        if not self.f:
            return
        entry["t"] = time.time()
        line = json.dumps(entry)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of [name, value] in order
        parts = urllib.parse.urlsplit(target)
        self.path = parts.path if target.startswith("/") else target
        self.query = parts.query
        self.params = dict(urllib.parse.parse_qsl(parts.query))
        self.body_length = 0
        self.body_sha256 = hashlib.sha256().hexdigest()

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def tokens(self, name):
        out = []
        for v in self.header_all(name):
            out += [t.strip().lower() for t in v.split(",") if t.strip()]
        return out

    def wants_close(self):
        conn = self.tokens("connection")
        if "close" in conn:
            return True
        if self.version == "HTTP/1.0" and "keep-alive" not in conn:
            return True
        return False


class Handler(socketserver.BaseRequestHandler):
    """One TCP connection: parse requests in a loop until close."""

    server_name = "upstream"
    server_opts = {}  # --delay-ms, --fail-status (set by main)

    def setup(self):
        self.sock = self.request
        self.sock.settimeout(self.server.idle_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = None
        self.conn_id = self.server.next_conn_id()
        self.count = 0
        self.log = self.server.log
        self.log.write(event="connect", conn=self.conn_id, peer=list(self.client_address))
        if self.server.tls is not None:
            try:
                self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.log.write(event="tls_failed", conn=self.conn_id, error=str(e))
                return  # handle() sees no rfile and returns: the connection closes
        self.rfile = self.sock.makefile("rb", buffering=65536)

    def finish(self):
        try:
            if self.rfile is not None:
                self.rfile.close()
        except OSError:
            pass

    # ---- reading -----------------------------------------------------------

    def read_line(self, first=False):
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise BadRequest("line too long", line[:200])
        if not line.endswith(b"\n"):
            raise BadRequest("truncated line", line[:200])
        return line.rstrip(b"\n").rstrip(b"\r")

    def read_exact(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise ConnectionError("short read")
        return data

    def read_head(self):
        line = self.read_line()
        if line is None:
            return None
        raw = [line]
        try:
            method, target, version = line.decode("latin-1").split(" ")
        except ValueError:
            raise BadRequest("bad request line", line)
        if not version.startswith("HTTP/1."):
            raise BadRequest("bad version", line)
        headers = []
        while True:
            line = self.read_line()
            if line is None:
                raise ConnectionError("eof in head")
            raw.append(line)
            if line == b"":
                break
            if len(headers) >= MAX_HEADERS:
                raise BadRequest("too many headers", b"\r\n".join(raw)[:2000])
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest("header without colon", line)
            headers.append([name, value.strip(" \t")])
        return Request(method, target, version, headers)

    def read_body(self, req):
        """Reads the request body (CL or chunked) into sha256 + length."""
        h = hashlib.sha256()
        n = 0
        te = req.tokens("transfer-encoding")
        if te:
            if te[-1] != "chunked":
                raise BadRequest("unsupported transfer-encoding", repr(te).encode())
            while True:
                line = self.read_line()
                if line is None:
                    raise ConnectionError("eof in chunk size")
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise BadRequest("bad chunk size", line)
                if size == 0:
                    while True:  # trailers
                        t = self.read_line()
                        if t is None:
                            raise ConnectionError("eof in trailers")
                        if t == b"":
                            break
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        raise ConnectionError("eof in chunk")
                    h.update(data)
                    n += len(data)
                    left -= len(data)
                if self.read_line() != b"":
                    raise BadRequest("missing CRLF after chunk", b"")
        else:
            cls = req.header_all("content-length")
            if cls:
                try:
                    left = int(cls[0])
                except ValueError:
                    raise BadRequest("bad content-length", cls[0].encode())
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        raise ConnectionError("eof in body")
                    h.update(data)
                    n += len(data)
                    left -= len(data)
        req.body_length = n
        req.body_sha256 = h.hexdigest()

    def has_body(self, req):
        if req.tokens("transfer-encoding"):
            return True
        cl = req.header("content-length")
        return cl is not None and cl.strip() not in ("", "0")

    # ---- writing -----------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def send_head(self, status, reason, headers):
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        lines += ["%s: %s" % (k, v) for k, v in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def respond(self, req, status, body=b"", ctype="text/plain", extra=(), close=False):
        headers = [("X-Upstream", self.server_name)]
        headers += list(extra)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            headers.append(("Content-Type", ctype))
            headers.append(("Content-Length", str(len(body))))
        if close:
            headers.append(("Connection", "close"))
        self.send_head(status, REASONS.get(status, "Status"), headers)
        if req.method != "HEAD" and not no_body and body:
            self.send(body)

    # ---- endpoints ---------------------------------------------------------

    def echo_body(self, req):
        extra = {"tls": True} if self.server.tls is not None else {}
        return json.dumps(dict(extra, **{
            "method": req.method,
            "target": req.target,
            "path": req.path,
            "query": req.query,
            "version": req.version,
            "headers": req.headers,
            "body_length": req.body_length,
            "body_sha256": req.body_sha256,
            "upstream": self.server_name,
            "connection_id": self.conn_id,
            "request_count": self.count,
        })).encode()

    def ep_echo(self, req, close):
        self.respond(req, 200, self.echo_body(req), "application/json", close=close)

    def ep_slow(self, req, close):
        time.sleep(int(req.params.get("ms", "1000")) / 1000.0)
        self.ep_echo(req, close)

    def ep_status(self, req, close):
        code = int(req.params.get("code", "200"))
        self.respond(req, code, ("status %d\n" % code).encode(), close=close)

    def ep_headers(self, req, close):
        """/headers?set=Name:Value[&set=...]: an echo response carrying those headers."""
        extra = []
        for k, v in urllib.parse.parse_qsl(req.query, keep_blank_values=True):
            if k == "set":
                name, _, value = v.partition(":")
                extra.append((name, value.strip()))
        self.respond(req, 200, self.echo_body(req), "application/json", extra=extra,
                     close=close)

    def ep_healthz(self, req, close):
        self.respond(req, 200, b"ok\n", close=close)

    def ep_head(self, req, close):
        self.respond(req, 200, HEAD_BODY, close=close)

    def ep_big(self, req, close):
        n = int(req.params.get("bytes", "1048576"))
        headers = [("X-Upstream", self.server_name), ("Content-Type", "application/octet-stream"),
                   ("Content-Length", str(n))]
        if close:
            headers.append(("Connection", "close"))
        self.send_head(200, "OK", headers)
        if req.method != "HEAD":
            for block in big_body_chunks(n):
                self.send(block)

    def ep_chunked(self, req, close):
        n = int(req.params.get("n", "10"))
        size = int(req.params.get("size", "100"))
        headers = [("X-Upstream", self.server_name), ("Content-Type", "application/octet-stream"),
                   ("Transfer-Encoding", "chunked")]
        if close:
            headers.append(("Connection", "close"))
        self.send_head(200, "OK", headers)
        if req.method == "HEAD":
            return
        for i in range(n):
            chunk = chunked_body_chunk(i, size)
            self.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.send(b"0\r\n\r\n")

    def ep_close(self, req, close):
        n = int(req.params.get("bytes", "10000"))
        self.send_head(200, "OK", [("X-Upstream", self.server_name),
                                   ("Content-Type", "text/plain"), ("Connection", "close")])
        if req.method != "HEAD":
            self.send(close_body(n))
        return True  # connection must close: the body ends there

    def ep_ws(self, req, close):
        key = req.header("sec-websocket-key")
        if ("websocket" not in req.tokens("upgrade") or "upgrade" not in req.tokens("connection")
                or not key):
            self.respond(req, 400, b"not a websocket handshake\n", close=True)
            return True
        self.send_head(101, "Switching Protocols", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", websocket_accept(key)), ("X-Upstream", self.server_name)])
        while True:
            try:
                fin, opcode, payload = ws_read_frame(self.read_exact)
            except (ConnectionError, OSError, ValueError):
                return True
            self.log.write(event="ws_frame", conn=self.conn_id, opcode=opcode, length=len(payload))
            if opcode == 0x8:
                self.send(ws_frame(0x8, payload))
                return True
            if opcode == 0x9:
                self.send(ws_frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            self.send(ws_frame(opcode, payload, fin=fin))

    def ep_drop(self, req, close):
        return True

    BAD_RESPONSES = {
        "garbage": b"this is not http\r\n\r\n",
        "dup_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello, world",
        "cl_te": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n"),
        "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
        "no_status": b"HTTP/1.1 OK\r\nContent-Length: 5\r\n\r\nhello",
    }

    def ep_bad(self, req, close):
        self.send(self.BAD_RESPONSES[req.params.get("kind", "garbage")])
        return True

    ROUTES = {
        "/echo": "ep_echo", "/slow": "ep_slow", "/status": "ep_status", "/healthz": "ep_healthz",
        "/head": "ep_head", "/big": "ep_big", "/chunked": "ep_chunked", "/close": "ep_close",
        "/ws": "ep_ws", "/drop": "ep_drop", "/bad": "ep_bad", "/headers": "ep_headers",
    }
    DEFAULT_ROUTE = "ep_echo"

    # ---- connection loop ---------------------------------------------------

    def handle(self):
        if self.rfile is None:
            return
        while True:
            try:
                req = self.read_head()
                if req is None:
                    return
                self.count += 1
                self.log.write(event="request", conn=self.conn_id, n=self.count,
                               method=req.method, path=req.path, query=req.query,
                               version=req.version, headers=req.headers)
                if req.path != "/ws" or self.has_body(req):
                    if "100-continue" in req.tokens("expect") and self.has_body(req):
                        self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self.read_body(req)
                    self.log.write(event="complete", conn=self.conn_id, n=self.count,
                                   path=req.path, body_length=req.body_length,
                                   body_sha256=req.body_sha256)
                close = req.wants_close()
                name = self.ROUTES.get(req.path, self.DEFAULT_ROUTE)
                if req.path != "/healthz" and self.server_opts.get("delay_ms"):
                    time.sleep(self.server_opts["delay_ms"] / 1000.0)
                if req.path != "/healthz" and self.server_opts.get("fail_status"):
                    req.params["code"] = str(self.server_opts["fail_status"])
                    name = "ep_status"
                if getattr(self, name)(req, close) or close:
                    self.shutdown()
                    return
            except BadRequest as e:
                self.log.write(event="bad", conn=self.conn_id, error=str(e.args[0]),
                               raw=e.args[1].decode("latin-1") if len(e.args) > 1 else "")
                try:
                    self.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n")
                except OSError:
                    pass
                self.shutdown()
                return
            except (ConnectionError, socket.timeout, OSError):
                return

    def shutdown(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 413: "Content Too Large",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class CaptureHandler(Handler):
    """--capture: keeps the exact bytes of every request (see the module docstring)."""

    def read_raw_line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise ConnectionError("eof or overlong line")
        return line

    def read_raw_request(self):
        """The bytes of one request as framed by its headers; None at a clean EOF."""
        first = self.rfile.readline(MAX_LINE + 1)
        if not first:
            return None
        raw = bytearray(first)
        names = {}
        line = first
        while line not in (b"\r\n", b"\n"):
            line = self.read_raw_line()
            raw += line
            k, _, v = line.partition(b":")
            names.setdefault(k.strip().lower(), []).append(v.strip())
        te = b",".join(names.get(b"transfer-encoding", [])).lower()
        if b"chunked" in te:
            while True:
                size_line = self.read_raw_line()
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailer section up to the empty line
                        t = self.read_raw_line()
                        raw += t
                        if t in (b"\r\n", b"\n"):
                            break
                    break
                raw += self.read_exact(size + 2)
        elif b"content-length" in names:
            raw += self.read_exact(int(names[b"content-length"][0]))
        return bytes(raw)

    def handle(self):
        if self.rfile is None:
            return
        try:
            while True:
                raw = self.read_raw_request()
                if raw is None:
                    return
                text = raw.decode("latin-1")
                self.log.write(event="raw", conn=self.conn_id, raw=text)
                body = json.dumps({"raw": text, "upstream": self.server_name}).encode()
                self.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except (ConnectionError, OSError, ValueError):
            return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, addr, handler, name, log_path, idle_timeout=IDLE_TIMEOUT, tls=None):
        self.log = Log(log_path)
        self.idle_timeout = idle_timeout
        self.tls = tls  # an ssl.SSLContext (server side) or None
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        handler = type("BoundHandler", (handler,), {"server_name": name})
        super().__init__(addr, handler)

    def next_conn_id(self):
        with self._ids_lock:
            return next(self._ids)


def make_server(host, port, name, log_path, handler=Handler, idle_timeout=IDLE_TIMEOUT,
                tls_cert=None, tls_key=None):
    tls = None
    if tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(tls_cert, tls_key)
    return Server((host, port), handler, name, log_path, idle_timeout, tls)


def main(argv=None, handler=Handler, default_name="upstream"):
    """Runs the server; handler: the Handler (sub)class (--capture: CaptureHandler)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="0 picks a free port")
    ap.add_argument("--name", default=default_name)
    ap.add_argument("--log", default=None, help="append one JSON line per request here")
    ap.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT,
                    help="close a keep-alive connection idle this many seconds")
    ap.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate")
    ap.add_argument("--tls-key", default=None, help="the key of --tls-cert")
    ap.add_argument("--capture", action="store_true",
                    help="answer every request with its exact bytes (see above)")
    ap.add_argument("--delay-ms", type=int, default=0, help="answer every request this late")
    ap.add_argument("--fail-status", type=int, default=0, help="answer every request so")
    args = ap.parse_args(argv)
    handler.server_opts = {"delay_ms": args.delay_ms, "fail_status": args.fail_status}
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.capture:
        handler = CaptureHandler
    srv = make_server(args.host, args.port, args.name, args.log, handler, args.idle_timeout,
                      args.tls_cert, args.tls_key)
    host, port = srv.server_address[:2]
    print("%s listening on %s://%s:%d" % (args.name, "https" if srv.tls else "http", host, port),
          flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
