"""Upgrade: websocket is tunnelled after the upstream's 101."""

import os

from moatctl import Conn, wait_until, ws_handshake, ws_recv, ws_send


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



def _routes(ws_id, extra=False):
    routes = [{"id": ws_id, "match": {"path_prefix": "/ws"}, "auth": "none", "upstream": "app"},
              {"id": "rest", "match": {"path_prefix": "/"}, "auth": "none", "upstream": "app"}]
    if extra:
        routes.insert(0, {"id": "extra", "match": {"path_prefix": "/extra"}, "auth": "none",
                          "upstream": "app"})
    return routes


def test_reload_closes_websockets_of_a_removed_route_after_the_drain(upstream, moat_factory):
    """A reload that keeps a WebSocket's route (by id) leaves it open; one that removes
    it gives it limits.tunnel_drain_timeout, then closes it (issue 15 item 1)."""
    import time
    from looputil import rewrite
    up = upstream("app")
    m = moat_factory({"routes": _routes("ws"), "workers": 1,
                      "limits": {"tunnel_drain_timeout": "1s", "idle_timeout": "60s"}},
                     upstream=up)

    def reload_to(routes, gen):
        rewrite(m, lambda c: c.update(routes=routes))
        m.reload()
        assert wait_until(lambda: "generation %d is live" % gen in m.stderr(), 10), m.stderr()

    a = Conn.tls(m.https_port)
    b = None
    try:
        assert ws_handshake(a)[0].status == 101
        reload_to(_routes("ws", extra=True), 2)  # its route stays
        time.sleep(2)  # twice the drain: still open
        ws_send(a, 0x1, b"kept")
        assert ws_recv(a) == (True, 0x1, b"kept")
        reload_to(_routes("ws-v2"), 3)  # its route (id ws) is gone
        ws_send(a, 0x1, b"draining")  # the drain has begun, not ended
        assert ws_recv(a) == (True, 0x1, b"draining")
        assert a.wait_closed(10)  # idle_timeout is 60 s: only the drain closes it
        b = Conn.tls(m.https_port)  # the new route takes new WebSockets
        assert ws_handshake(b)[0].status == 101
        ws_send(b, 0x1, b"new")
        assert ws_recv(b) == (True, 0x1, b"new")
    finally:
        a.close()
        if b:
            b.close()
