"""Upgrade: websocket is tunnelled after the upstream's 101."""

import os

from moatctl import Conn, ws_handshake, ws_recv, ws_send


def test_websocket_echo_through_moat(proxy):
    with Conn.tls(proxy.port) as c:
        r, accept = ws_handshake(c)
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == accept
        assert (r.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in (r.header("connection") or "").lower()

        ws_send(c, 0x1, b"hello moat")
        assert ws_recv(c) == (True, 0x1, b"hello moat")

        big = os.urandom(70000)  # 64-bit length form
        ws_send(c, 0x2, big)
        fin, opcode, payload = ws_recv(c)
        assert (fin, opcode) == (True, 0x2) and payload == big

        ws_send(c, 0x9, b"ping")
        assert ws_recv(c) == (True, 0xA, b"ping")

        ws_send(c, 0x8, b"\x03\xe8")
        assert ws_recv(c) == (True, 0x8, b"\x03\xe8")
        assert c.wait_closed(5)
    # the upstream saw the frames, and moat still serves ordinary requests
    frames = [e for e in proxy.up.log() if e["event"] == "ws_frame"]
    assert [f["opcode"] for f in frames] == [1, 2, 9, 8]
    with Conn.tls(proxy.port) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200


def test_websocket_request_reaches_upstream_with_upgrade_headers(proxy):
    with Conn.tls(proxy.port) as c:
        r, _ = ws_handshake(c)
        assert r.status == 101, r
    req = [e for e in proxy.up.requests() if e["path"] == "/ws"][0]
    names = {k.lower(): v for k, v in req["headers"]}
    assert names.get("upgrade", "").lower() == "websocket"
    assert "upgrade" in names.get("connection", "").lower()
    assert "sec-websocket-key" in names


def test_upgrade_refused_by_upstream_stays_http(proxy):
    # the upstream answers 400 (no key): no tunnel, a normal response
    with Conn.tls(proxy.port) as c:
        c.send(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, r
