"""An HTTP/2 client for moat's integration tests (python3-h2, hyperframe, hpack).

    with H2Conn(m.https_port) as c:              # TLS, ALPN ["h2"], preface + SETTINGS
        sid = c.request(req_headers("GET", "/echo"))
        r = c.response(sid)                       # a StreamResult
        status, headers, body = r                 # or r.status / r.reset / r.outcome
        c.get("/echo")                            # the same in one call

Two ways to send:

- the default: an h2.connection.H2Connection (client side) makes the frames, keeps the
  stream states and the flow-control windows, acknowledges SETTINGS and PING.
  lenient=True turns off h2's outbound header validation and normalisation, so that
  request() sends any header list (uppercase names, connection headers, CR/LF/NUL,
  pseudo-headers anywhere, repeated or missing ones) on a stream h2 still tracks.
- raw=True: no H2Connection at all; request() encodes with its own hpack.Encoder and
  numbers streams itself, SETTINGS and PING are acknowledged by hand. For floods and
  frames h2's state machine refuses to make, with send_raw() and the frame builders
  below (frame(), headers_frame(), continuation_frame(), ...).

Whatever the sending side, what moat sends is parsed here, frame by frame (hyperframe,
and an hpack.Decoder of this module): responses, resets, GOAWAY, PING and SETTINGS
acknowledgements are recorded even when moat does something H2Connection would reject
(then the H2Connection is dropped, see h2_error, and the connection carries on raw).

Every wait has a timeout; the socket is closed by close() / the context manager.
"""

import collections
import json
import select
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe import frame as hf

import moatctl

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ErrorCodes = h2.errors.ErrorCodes
SettingCodes = h2.settings.SettingCodes

# frame types (RFC 9113 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

MAX_WINDOW = 2 ** 31 - 1
DEFAULT_TIMEOUT = 10.0


class H2Timeout(AssertionError):
    """A wait of H2Conn ran out of time (an AssertionError: a test failure, not an error)."""


class H2Closed(AssertionError):
    """h2 will not open a stream any more (moat sent GOAWAY, or the connection ended)."""


Goaway = collections.namedtuple("Goaway", "error_code last_stream_id debug")
FrameRec = collections.namedtuple("FrameRec", "type flags stream_id length")


def code_name(code):
    """ErrorCodes name of an error code ("PROTOCOL_ERROR"), or the number."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


# ---- frames, built by hand -------------------------------------------------------

def frame(type_, flags, stream_id, payload=b""):
    """One frame's bytes: any type, flags, stream id (31 bits, or 32 with the R bit) and
    payload, none of them checked."""
    n = len(payload)
    return (struct.pack(">I", n)[1:] + bytes([type_ & 0xFF, flags & 0xFF])
            + struct.pack(">I", stream_id & 0xFFFFFFFF) + bytes(payload))


def settings_frame(settings=(), ack=False):
    """SETTINGS: settings is a dict or a list of (code, value) pairs (repeats kept)."""
    items = settings.items() if isinstance(settings, dict) else settings
    payload = b"".join(struct.pack(">HI", int(k), v & 0xFFFFFFFF) for k, v in items)
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def ping_frame(payload=b"moatping", ack=False):
    return frame(PING, ACK if ack else 0, 0, payload)


def rst_frame(stream_id, code=ErrorCodes.CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", int(code)))


def window_update_frame(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0xFFFFFFFF))


def goaway_frame(last_stream_id=0, code=ErrorCodes.NO_ERROR, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, int(code)) + debug)


def data_frame(stream_id, data=b"", end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, data)


def headers_frame(stream_id, block, end_stream=True, end_headers=True):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream_id, block)


def continuation_frame(stream_id, block, end_headers=False):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)


def _b(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, bytearray):
        return bytes(x)
    return str(x).encode("latin-1")


def encode_block(headers, huffman=False):
    """An HPACK header block of headers ((name, value) pairs, str or bytes), sent as they
    are (no lowercasing, no checks), as never-indexed literals: it neither reads nor
    changes the dynamic tables, so it can be sent on any connection without putting
    the other header blocks out of step."""
    e = hpack.Encoder()
    return e.encode([(_b(k), _b(v), True) for k, v in headers], huffman=huffman)


def req_headers(method="GET", path="/echo", authority="localhost", scheme="https", extra=()):
    """The four pseudo-headers of a request, then extra ((name, value) pairs)."""
    return [(":method", method), (":scheme", scheme), (":authority", authority),
            (":path", path)] + list(extra)


def request_frames(stream_id, headers, body=None, end_stream=True):
    """HEADERS (+ DATA) bytes of one request, made here without any state: the header
    block by encode_block()."""
    block = encode_block(headers)
    if body is None:
        return headers_frame(stream_id, block, end_stream=end_stream)
    out = [headers_frame(stream_id, block, end_stream=False)]
    for i in range(0, len(body), 16384):
        last = i + 16384 >= len(body)
        out.append(data_frame(stream_id, body[i:i + 16384], end_stream=last and end_stream))
    if not body:
        out.append(data_frame(stream_id, b"", end_stream=end_stream))
    return b"".join(out)


# ---- results ------------------------------------------------------------------------

class _Stream:
    def __init__(self, sid):
        self.sid = sid
        self.blocks = []          # decoded header blocks, each a list of (name, value)
        self.data = bytearray()
        self.data_frames = 0
        self.flow_received = 0    # flow-controlled bytes received (DATA with padding)
        self.ended = False        # END_STREAM received
        self.reset = None         # RST_STREAM error code received


class StreamResult:
    """How a stream ended, as seen from the client.

    outcome: "response" (END_STREAM received), "reset" (RST_STREAM received: .reset is
    its code), "goaway" (a GOAWAY's last_stream_id left the stream out: not processed),
    "closed" (the connection ended first). status: the final :status (None without one),
    headers: its [(name, value)] (pseudo-headers included), body: bytes, trailers,
    informational: the 1xx header lists. Unpacks as (status, headers, body)."""

    def __init__(self, sid, st, outcome, conn):
        self.stream_id = sid
        self.outcome = outcome
        self.reset = st.reset if st else None
        blocks = st.blocks if st else []
        self.informational = []
        self.headers = []
        self.trailers = []
        self.status = None
        for b in blocks:
            s = dict(b).get(":status")
            if self.status is None and s is not None and s.isdigit() and 100 <= int(s) < 200:
                self.informational.append(b)
            elif self.status is None and s is not None:
                self.status = int(s) if s.isdigit() else s
                self.headers = b
            elif self.status is not None:
                self.trailers += b
        self.body = bytes(st.data) if st else b""
        self.goaway = conn.goaway()
        self.conn_closed = conn.closed()

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return ("<StreamResult sid=%d outcome=%s status=%s reset=%s headers=%r body=%r "
                "goaway=%r closed=%s>" % (self.stream_id, self.outcome, self.status,
                                          code_name(self.reset) if self.reset is not None
                                          else None, self.headers, self.body[:300],
                                          self.goaway, self.conn_closed))


# ---- the connection ---------------------------------------------------------------

def h2_config(lenient=False):
    """Client-side H2Configuration. Inbound headers are never validated by h2 (this module
    judges what moat sends); lenient=True: outbound headers are neither validated nor
    normalised either (sent exactly as given)."""
    return h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_inbound_headers=False,
        validate_outbound_headers=not lenient, normalize_outbound_headers=not lenient,
        normalize_inbound_headers=False)


class H2Conn:
    """One HTTP/2 connection to moat (TLS to 127.0.0.1:port, SNI localhost, ALPN h2).

    settings: our SETTINGS ({SettingCodes: value}; ENABLE_PUSH 0 is always added unless
    given). window: our stream window (SETTINGS_INITIAL_WINDOW_SIZE) and connection window
    (a WINDOW_UPDATE on stream 0 right after the preface), for big transfers.
    auto_window: give back the window for every DATA received (False: never, the test
    does it with window_update()). ack_settings / ack_ping (raw mode; h2 always does):
    acknowledge moat's SETTINGS / answer its PING. alpn: offered protocols; require_h2:
    assert that h2 was negotiated (an AssertionError naming what was). preface=False:
    nothing is sent after the handshake (the test sends its own bytes). rcvbuf: a small
    SO_RCVBUF, so that what moat sends and we do not read backs up into moat rather
    than into the kernel's buffers."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT, settings=None, window=None, raw=False,
                 lenient=False, auto_window=True, ack_settings=True, ack_ping=True,
                 alpn=("h2",), require_h2=True, preface=True, server_hostname="localhost",
                 rcvbuf=None):
        self.port = port
        self.timeout = timeout
        self.raw = raw
        self.auto_window = auto_window
        self.ack_settings = ack_settings
        self.ack_ping = ack_ping
        self.sock = None
        self.buf = bytearray()
        self.eof = False
        self.recv_error = None
        self.send_error = None
        self.h2_error = None
        self.decode_error = None
        self.parse_error = None
        self.frames = []          # FrameRec of every frame received, in order
        self.events = []          # h2 events (while the H2Connection lives)
        self.streams = {}
        self.goaways = []
        self.ping_acks = []       # payloads of PING ACKs received
        self.pings = []           # payloads of PINGs moat sent
        self.settings_received = 0
        self.settings_acks = 0
        self.server_settings = {}
        self.window_updates = []  # (stream id, increment) received
        self.decoder = hpack.Decoder(max_header_list_size=1 << 26)
        self.encoder = hpack.Encoder()  # raw mode's own encoder (its table is moat's)
        self._hb = None           # (stream id, END_STREAM, bytearray) of an unfinished block
        self._outq = bytearray()  # our answers (ACKs, window updates) not sent yet
        self._in_raw_send = False  # send_raw() owns the socket: answers wait in _outq
        self._next_sid = 1
        self.bytes_received = 0

        local = {SettingCodes.ENABLE_PUSH: 0}
        if window is not None:
            local[SettingCodes.INITIAL_WINDOW_SIZE] = window
        local.update(settings or {})
        self.local_settings = local
        self.conn = None
        if not raw:
            self.conn = h2.connection.H2Connection(config=h2_config(lenient))
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=local)
            self.conn.max_inbound_frame_size = self.conn.local_settings.max_frame_size

        ctx = moatctl.tls_context(alpn=list(alpn) if alpn else None)
        rawsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                rawsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            rawsock.settimeout(timeout)
            rawsock.connect(("127.0.0.1", port))
            self.sock = ctx.wrap_socket(rawsock, server_hostname=server_hostname)
        except Exception:
            rawsock.close()
            raise
        self.sock.settimeout(timeout)
        self.alpn = self.sock.selected_alpn_protocol()
        if require_h2 and self.alpn != "h2":
            self.close()
            raise AssertionError("ALPN: moat on port %d selected %r, not 'h2' (offered %r)"
                                 % (port, self.alpn, list(alpn)))
        if preface:
            self.start(window)

    # -- setup -------------------------------------------------------------------------

    def start(self, window=None):
        """Sends the client preface and our SETTINGS (and the connection window)."""
        if self.conn is not None:
            self.conn.initiate_connection()
            if window is not None and window > 65535:
                self.conn.increment_flow_control_window(window - 65535)
            self._flush()
        else:
            out = PREFACE + settings_frame(self.local_settings)
            if window is not None and window > 65535:
                out += window_update_frame(0, window - 65535)
            self._queue(out)
            self._flush()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending -----------------------------------------------------------------------

    def _send(self, data):
        """sendall with the connection's timeout; a failure is recorded (send_error), not
        raised: the outcome is read from what moat sent (a GOAWAY, a close)."""
        if not data or self.send_error is not None:
            return False
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
            return True
        except (OSError, ValueError) as e:  # ssl.SSLError, BrokenPipe, reset, timeout
            self.send_error = e
            return False

    def _queue(self, data):
        self._outq += data

    def _flush(self):
        """Sends what h2 and the frame handlers queued, unless send_raw() is writing (a
        frame of ours must not land inside one of its half-written frames)."""
        if self._in_raw_send:
            return
        out = bytes(self._outq)
        del self._outq[:]
        if self.conn is not None:
            out += self.conn.data_to_send()
        self._send(out)

    def _drop_h2(self, exc):
        """The H2Connection refused something moat sent: keep going raw (its pending
        output, a GOAWAY of its own, is thrown away)."""
        self.h2_error = exc
        try:
            self.conn.data_to_send()
        except Exception:  # noqa: BLE001
            pass
        self.conn = None

    def _require_h2(self):
        if self.conn is None and not self.raw:
            raise AssertionError("the h2 state machine gave up earlier: %r" % (self.h2_error,))

    def next_stream_id(self):
        """A fresh client stream id, for frames made by hand. In h2 mode h2 will not hand
        it out again (but moat's answer on it will make h2 give up: use raw=True)."""
        if self.conn is not None:
            sid = self.conn.get_next_available_stream_id()
            self.conn.highest_outbound_stream_id = sid
            return sid
        sid = self._next_sid
        self._next_sid += 2
        return sid

    def request(self, headers, body=None, end_stream=True):
        """Opens a stream with headers ((name, value) pairs, pseudo-headers included, sent
        in this order), then body (DATA, within the flow-control windows in h2 mode)
        and END_STREAM (unless end_stream=False: send_data() / end_stream() later).
        body=None: END_STREAM on the HEADERS frame. body as a list of bytes: one DATA
        frame each, written together with the HEADERS (small parts: the windows are not
        waited for). Returns the stream id."""
        hdrs = [(_b(k), _b(v)) for k, v in headers]
        if isinstance(body, (list, tuple)):
            return self._request_parts(hdrs, list(body), end_stream)
        if self.conn is None:
            self._require_h2()
            sid = self.next_stream_id()
            self._queue(block_frames(sid, self.encoder.encode(hdrs),
                                     end_stream=body is None and end_stream))
            self._flush()
            if body is not None:
                self.send_data(sid, body, end_stream)
            return sid
        sid = self._open(hdrs, end_stream=body is None and end_stream)
        if body is not None:
            self.send_data(sid, body, end_stream)
        else:
            self._flush()
        return sid

    def _request_parts(self, hdrs, parts, end_stream):
        if self.conn is None:
            self._require_h2()
            sid = self.next_stream_id()
            out = [block_frames(sid, self.encoder.encode(hdrs), end_stream=False)]
        else:
            sid = self._open(hdrs, end_stream=False)
            out = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if self.conn is None:
                out.append(data_frame(sid, bytes(part), end_stream and last))
            else:
                self.conn.send_data(sid, bytes(part), end_stream=end_stream and last)
        if not parts and end_stream:
            if self.conn is None:
                out.append(data_frame(sid, b"", True))
            else:
                self.conn.end_stream(sid)
        self._queue(b"".join(out))
        self._flush()
        return sid

    def _open(self, hdrs, end_stream):
        """HEADERS on a new stream through h2; H2Closed once h2 refuses (after a GOAWAY)."""
        try:
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, hdrs, end_stream=end_stream)
        except h2.exceptions.ProtocolError as e:
            raise H2Closed("cannot open a stream: %s (%s)" % (e, self.describe()))
        return sid

    def send_trailers(self, sid, headers):
        """A trailer section (HEADERS with END_STREAM) on stream sid."""
        hdrs = [(_b(k), _b(v)) for k, v in headers]
        if self.conn is None:
            self._require_h2()
            self._queue(block_frames(sid, self.encoder.encode(hdrs), end_stream=True))
        else:
            self.conn.send_headers(sid, hdrs, end_stream=True)
        self._flush()

    def send_data(self, sid, data, end_stream=False, timeout=None):
        """DATA on stream sid. h2 mode: split to the frame size and the windows (waits for
        WINDOW_UPDATEs, at most timeout); raw mode: 16 KiB frames, windows ignored."""
        data = bytes(data)
        if self.conn is None:
            self._require_h2()
            out = [data_frame(sid, data[i:i + 16384], end_stream and i + 16384 >= len(data))
                   for i in range(0, len(data), 16384)]
            if not data:
                out = [data_frame(sid, b"", end_stream)]
            self._queue(b"".join(out))
            self._flush()
            return
        deadline = time.monotonic() + (timeout or self.timeout)
        off = 0
        while True:
            if self.conn is None:
                raise AssertionError("h2 gave up while sending a body: %r" % (self.h2_error,))
            left = len(data) - off
            if left == 0 and (off > 0 or not end_stream):
                break
            try:
                window = min(self.conn.local_flow_control_window(sid),
                             self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                break  # moat ended the stream (an early answer, a reset): stop sending
            if left and window <= 0:
                self._flush()
                if self.eof or self.send_error is not None:
                    return
                if time.monotonic() >= deadline:
                    raise H2Timeout("no window to send %d more bytes on stream %d"
                                    % (left, sid))
                self._pump(min(0.2, max(0.01, deadline - time.monotonic())))
                continue
            n = min(window, left)
            last = n == left
            try:
                self.conn.send_data(sid, data[off:off + n], end_stream=end_stream and last)
            except h2.exceptions.StreamClosedError:
                break
            off += n
            if last:
                break
        self._flush()

    def end_stream(self, sid):
        """An empty DATA frame with END_STREAM."""
        if self.conn is None:
            self._require_h2()
            self._queue(data_frame(sid, b"", True))
            self._flush()
            return
        try:
            self.conn.end_stream(sid)
        except h2.exceptions.StreamClosedError:
            return
        self._flush()

    def reset(self, sid, code=ErrorCodes.CANCEL):
        """RST_STREAM on sid."""
        if self.conn is not None:
            try:
                self.conn.reset_stream(sid, code)
                self._flush()
                return
            except h2.exceptions.StreamClosedError:
                pass
        self._queue(rst_frame(sid, code))
        self._flush()

    def ping(self, payload=b"moatping"):
        if self.conn is not None:
            self.conn.ping(payload)
            self._flush()
        else:
            self._queue(ping_frame(payload))
            self._flush()

    def window_update(self, sid, increment):
        """WINDOW_UPDATE (sid 0: the connection). In h2 mode through h2 (which must agree
        the increment is valid), so that its own window accounting stays right; invalid
        increments: send_raw(window_update_frame(...))."""
        if self.conn is not None:
            self.conn.increment_flow_control_window(increment, stream_id=sid or None)
            self._flush()
        else:
            self._queue(window_update_frame(sid, increment))
            self._flush()

    def update_settings(self, settings):
        if self.conn is not None:
            self.conn.update_settings(settings)
            self._flush()
        else:
            self._queue(settings_frame(settings))
            self._flush()

    def send_raw(self, data, timeout=None, read=False, chunk=16384):
        """Writes bytes as they are on the TLS socket (after whatever h2 has queued).

        Without reading (read=False), the way a flood that ignores moat's answers does:
        non-blocking writes until all is sent, the timeout passes (moat stopped reading:
        returns what went out) or the connection fails (recorded in send_error). With
        read=True, what moat sends meanwhile is read and parsed. Returns the bytes
        written."""
        self._flush()
        data = bytes(data)
        if self.send_error is not None:
            return 0
        if len(data) <= chunk and not read and timeout is None:
            return len(data) if self._send(data) else 0
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        sent = 0
        pending = None
        self.sock.setblocking(False)
        self._in_raw_send = True
        try:
            while sent < len(data) and time.monotonic() < deadline:
                if pending is None:
                    pending = data[sent:sent + chunk]
                try:
                    n = self.sock.send(pending)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    rl = [self.sock] if read else []
                    r, _, _ = select.select(rl, [self.sock], [], 0.05)
                    if r:
                        self._read_nonblocking()
                    continue
                except (OSError, ValueError) as e:
                    self.send_error = e
                    break
                sent += n
                pending = None if n == len(pending) else pending[n:]
                if read and self.sock.pending() or read and select.select(
                        [self.sock], [], [], 0)[0]:
                    self._read_nonblocking()
                if self.eof:
                    break
        finally:
            self._in_raw_send = False
            try:
                self.sock.settimeout(self.timeout)
            except OSError:
                pass
        self._flush()
        return sent

    def _read_nonblocking(self):
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except (OSError, ValueError) as e:
                self.recv_error = e
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            self._feed(data)

    # -- receiving ---------------------------------------------------------------------

    def _pump(self, timeout):
        """Reads once (waiting at most timeout) and processes what came; False at EOF."""
        if self.eof:
            return False
        try:
            if not self.sock.pending():
                r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
                if not r:
                    return True
            self.sock.settimeout(max(0.05, timeout))
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return True
        except (OSError, ValueError) as e:  # reset, SSL EOF or alert
            self.recv_error = e
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self._feed(data)
        return True

    def _feed(self, data):
        self.bytes_received += len(data)
        if self.conn is not None:
            try:
                self.events.extend(self.conn.receive_data(data))
            except Exception as e:  # noqa: BLE001 (h2 refused moat's bytes: go raw)
                self._drop_h2(e)
        self.buf += data
        self._parse()
        self._flush()

    def _parse(self):
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                return
            head = bytes(self.buf[:9])
            body = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            type_, flags = head[3], head[4]
            sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            self.frames.append(FrameRec(type_, flags, sid, length))
            try:
                self._on_frame(type_, flags, sid, head, body)
            except Exception as e:  # noqa: BLE001 (a frame hyperframe cannot parse)
                if self.parse_error is None:
                    self.parse_error = (FrameRec(type_, flags, sid, length), e)

    def _stream(self, sid):
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = _Stream(sid)
        return st

    def _decode(self, sid, end_stream, block):
        try:
            hdrs = self.decoder.decode(bytes(block), raw=True)
        except Exception as e:  # noqa: BLE001
            self.decode_error = e
            return
        st = self._stream(sid)
        st.blocks.append([(k.decode("latin-1"), v.decode("latin-1")) for k, v in hdrs])
        if end_stream:
            st.ended = True

    def _on_frame(self, type_, flags, sid, head, body):
        if type_ in (DATA, HEADERS, PUSH_PROMISE, CONTINUATION, RST_STREAM, SETTINGS, PING,
                     GOAWAY, WINDOW_UPDATE, PRIORITY):
            f, _ = hf.Frame.parse_frame_header(memoryview(head))
            f.parse_body(memoryview(body))
        else:
            return  # unknown types are ignored (RFC 9113 5.5)
        if type_ == DATA:
            st = self._stream(sid)
            st.data += f.data
            st.data_frames += 1
            flow = f.flow_controlled_length
            st.flow_received += flow
            if "END_STREAM" in f.flags:
                st.ended = True
            if self.auto_window and flow:
                self._give_back(sid, flow, st.ended)
        elif type_ in (HEADERS, PUSH_PROMISE):
            end_stream = type_ == HEADERS and "END_STREAM" in f.flags
            if "END_HEADERS" in f.flags:
                self._decode(sid, end_stream, f.data)
            else:
                self._hb = (sid, end_stream, bytearray(f.data))
        elif type_ == CONTINUATION:
            if self._hb is not None:
                self._hb[2].extend(f.data)
                if "END_HEADERS" in f.flags:
                    hsid, es, block = self._hb
                    self._hb = None
                    self._decode(hsid, es, block)
        elif type_ == RST_STREAM:
            self._stream(sid).reset = f.error_code
        elif type_ == SETTINGS:
            if "ACK" in f.flags:
                self.settings_acks += 1
            else:
                self.settings_received += 1
                self.server_settings.update(f.settings)
                if self.conn is None and self.ack_settings:
                    self._queue(settings_frame(ack=True))
        elif type_ == PING:
            if "ACK" in f.flags:
                self.ping_acks.append(bytes(f.opaque_data))
            else:
                self.pings.append(bytes(f.opaque_data))
                if self.conn is None and self.ack_ping:
                    self._queue(ping_frame(bytes(f.opaque_data), ack=True))
        elif type_ == GOAWAY:
            self.goaways.append(Goaway(f.error_code, f.last_stream_id, bytes(f.additional_data)))
        elif type_ == WINDOW_UPDATE:
            self.window_updates.append((sid, f.window_increment))

    def _give_back(self, sid, n, ended):
        if self.conn is not None:
            try:
                self.conn.acknowledge_received_data(n, sid)
                return
            except Exception as e:  # noqa: BLE001
                self._drop_h2(e)
        out = window_update_frame(0, n)
        if not ended:
            out += window_update_frame(sid, n)
        self._queue(out)

    # -- waiting -----------------------------------------------------------------------

    def events_until(self, pred, timeout=None):
        """Reads until pred(self) is true (returns its value), the connection ends or the
        timeout passes (returns pred's last value: falsy)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            v = pred(self)
            if v or self.eof:
                return v if v else pred(self)
            left = deadline - time.monotonic()
            if left <= 0:
                return v
            self._pump(min(left, 0.5))

    def stream_outcome(self, sid):
        """"response", "reset", "goaway", "closed" or None (still running)."""
        st = self.streams.get(sid)
        if st is not None and st.reset is not None:
            return "reset"
        if st is not None and st.ended:
            return "response"
        for g in self.goaways:
            if sid > g.last_stream_id:
                return "goaway"
        if self.eof:
            return "closed"
        return None

    def response(self, sid, timeout=None):
        """Waits until stream sid ends (END_STREAM or RST_STREAM), a GOAWAY leaves it out
        or the connection ends; returns a StreamResult. Raises H2Timeout otherwise."""
        t = timeout if timeout is not None else self.timeout
        out = self.events_until(lambda c: c.stream_outcome(sid), t)
        if not out:
            st = self.streams.get(sid)
            raise H2Timeout("stream %d: nothing final within %.1fs (headers %r, %d body bytes;"
                            " goaway %r, eof %s, h2_error %r, send_error %r)"
                            % (sid, t, st.blocks if st else None, len(st.data) if st else 0,
                               self.goaways, self.eof, self.h2_error, self.send_error))
        return StreamResult(sid, self.streams.get(sid), out, self)

    def get(self, path="/echo", extra=(), method="GET", authority="localhost", body=None,
            timeout=None):
        """One request (req_headers(method, path, authority, extra=extra), body) and its
        StreamResult."""
        sid = self.request(req_headers(method, path, authority, extra=extra), body)
        return self.response(sid, timeout)

    def goaway(self):
        """The last GOAWAY received (Goaway(error_code, last_stream_id, debug)) or None."""
        return self.goaways[-1] if self.goaways else None

    def closed(self):
        """True once the socket reached EOF (or was reset)."""
        return self.eof

    def wait_closed(self, timeout=5.0):
        """Reads (and parses) until EOF; True if it came within timeout."""
        self.events_until(lambda c: c.eof, timeout)
        return self.eof

    def wait_goaway_or_close(self, timeout=5.0):
        """True once a GOAWAY arrived or the connection ended."""
        return bool(self.events_until(lambda c: c.goaways or c.eof, timeout))

    def wait_ready(self, timeout=5.0):
        """Waits for moat's SETTINGS and the ACK of ours; True if both came."""
        return bool(self.events_until(lambda c: c.settings_received and c.settings_acks,
                                      timeout))

    def wait_ping_ack(self, payload, timeout=5.0):
        return bool(self.events_until(lambda c: payload in c.ping_acks, timeout))

    def frames_of(self, type_, sid=None):
        return [f for f in self.frames if f.type == type_ and (sid is None or f.stream_id == sid)]

    def describe(self):
        """A summary for assertion messages."""
        return ("goaways=%r eof=%s recv_error=%r send_error=%r h2_error=%r decode_error=%r "
                "frames=%d (last %r)" % (self.goaways, self.eof, self.recv_error,
                                          self.send_error, self.h2_error, self.decode_error,
                                          len(self.frames), self.frames[-5:]))


# ---- hostile traffic, prebuilt ----------------------------------------------------

def rapid_reset_bytes(n, first_sid=1, path="/echo", authority="localhost"):
    """n pairs of HEADERS (a complete GET) + RST_STREAM(CANCEL) on streams first_sid,
    first_sid + 2, ... (CVE-2023-44487)."""
    block = encode_block(req_headers("GET", path, authority))
    out = bytearray()
    for i in range(n):
        sid = first_sid + 2 * i
        out += headers_frame(sid, block, end_stream=True)
        out += rst_frame(sid, ErrorCodes.CANCEL)
    return bytes(out)


def continuation_flood_bytes(total, sid=1, frame_size=16384, empty=False):
    """A HEADERS frame without END_HEADERS (a valid start of a request), then CONTINUATION
    frames without END_HEADERS up to about total bytes: each frame_size bytes of more
    never-indexed literal headers, or (empty=True) no payload at all."""
    out = bytearray(headers_frame(sid, encode_block(req_headers("GET", "/echo")),
                                  end_stream=True, end_headers=False))
    if empty:
        one = continuation_frame(sid, b"")
    else:
        field = encode_block([("x-flood", "f" * 100)])
        payload = (field * (frame_size // len(field) + 1))[:frame_size // len(field) * len(field)]
        one = continuation_frame(sid, payload)
    while len(out) < total:
        out += one
    return bytes(out)


def hpack_bomb_block(refs, value_size=4000, name=b"x-bomb", path="/echo"):
    """A request header block that inserts one header (name: value_size bytes) into the
    dynamic table (a literal with incremental indexing, itself a field of the list) and
    then references it (index 62) refs times: (refs + 1) copies, about
    value_size * (refs + 1) bytes once decoded, from refs + value_size bytes."""
    assert len(name) + value_size + 32 <= 4096, "must fit the default 4096-byte table"
    head = encode_block(req_headers("GET", path))
    # 0x40: literal with incremental indexing, new name; lengths as 7-bit prefixed ints
    lit = b"\x40" + _hpack_int(len(name), 7) + name + _hpack_int(value_size, 7) \
        + b"b" * value_size
    return head + lit + b"\xbe" * refs  # 0x80 | 62


def _hpack_int(v, prefix):
    """An HPACK integer with a prefix of `prefix` bits (flag bits of the first byte 0)."""
    top = (1 << prefix) - 1
    if v < top:
        return bytes([v])
    out = bytearray([top])
    v -= top
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def block_frames(sid, block, end_stream=True, max_frame=16384):
    """A header block as HEADERS + CONTINUATION frames of at most max_frame bytes."""
    out = bytearray()
    for i in range(0, max(len(block), 1), max_frame):
        part = block[i:i + max_frame]
        last = i + max_frame >= len(block)
        if i == 0:
            out += headers_frame(sid, part, end_stream=end_stream, end_headers=last)
        else:
            out += continuation_frame(sid, part, end_headers=last)
    return bytes(out)
