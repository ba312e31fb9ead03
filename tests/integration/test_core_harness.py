"""The test harness itself: upstream_server.py on its own, the redis fixture, configs.
These pass without moat, so a failing moat test can be told from a broken harness."""

import hashlib
import json
import os

import upstream_server
from redisutil import RespError, call, call_many
from moatctl import (DELETE, Conn, deep_merge, free_port, write_config, ws_handshake, ws_recv,
                     ws_send)


def test_upstream_server_keepalive_pipelining_and_log(upstream):
    up = upstream("solo")
    with Conn.tcp(up.port) as c:
        c.send(b"GET /slow?ms=100&i=1 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /echo?i=2 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\n")
        r1, r2 = c.read_response(), c.read_response()
        r3, r4 = c.read_response("HEAD"), c.read_response()
        assert [r1.json()["query"], r2.json()["query"]] == ["ms=100&i=1", "i=2"]
        assert r1.json()["connection_id"] == r2.json()["connection_id"]
        assert r2.json()["request_count"] == 2
        assert (r3.status, r3.header("content-length"), r3.body) == (200, "1234", b"")
        assert r4.status == 204
        c.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                  body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        j = c.read_response().json()
        assert j["body_length"] == 11
        assert j["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
        assert j["upstream"] == "solo"
    assert [e["query"] for e in up.requests()] == ["ms=100&i=1", "i=2", "", "code=204", ""]
    assert len(up.completed()) == 5


def test_upstream_server_bodies(upstream):
    up = upstream("solo")
    with Conn.tcp(up.port) as c:
        c.request("GET", "/chunked?n=3&size=4")
        r = c.read_response()
        assert r.chunked and r.body == b"aaaabbbbcccc"
        c.request("GET", "/big?bytes=100000")
        r = c.read_response()
        assert hashlib.sha256(r.body).hexdigest() == upstream_server.big_body_sha256(100000)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: 3\r\n\r\n")
        assert c.read_response(skip_interim=False).status == 100
        c.send(b"abc")
        assert c.read_response().json()["body_length"] == 3
        c.request("GET", "/close?bytes=33")
        r = c.read_response()
        assert r.body == upstream_server.close_body(33)
        assert c.wait_closed(2)


def test_upstream_server_websocket(upstream):
    up = upstream("solo")
    with Conn.tcp(up.port) as c:
        r, accept = ws_handshake(c)
        assert r.status == 101 and r.header("sec-websocket-accept") == accept
        ws_send(c, 0x1, b"hi")
        assert ws_recv(c) == (True, 0x1, b"hi")
        big = os.urandom(70000)
        ws_send(c, 0x2, big)
        assert ws_recv(c)[2] == big
        ws_send(c, 0x8, b"")
        assert ws_recv(c)[1] == 0x8


def test_websocket_accept_rfc6455_example():
    assert upstream_server.websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == \
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_redis_fixture(redis_server):
    assert call(redis_server, "PING") == "PONG"
    assert call(redis_server, "SET", "k", "v") == "OK"
    assert call(redis_server, "GET", "k") == b"v"
    # a reply larger than one recv() is read whole
    assert call(redis_server, "SET", "big", b"x" * 300000) == "OK"
    assert call(redis_server, "GET", "big") == b"x" * 300000
    # a pipeline: an error reply comes back in its place, not raised
    replies = call_many(redis_server, [["GET", "k"], ["HGETALL", "k"], ["GET", "none"]])
    assert replies[0] == b"v" and replies[2] is None, replies
    assert isinstance(replies[1], RespError) and "WRONGTYPE" in str(replies[1]), replies


def test_config_writer(tmp_path):
    path, cfg = write_config(tmp_path, {"limits": {"header_timeout": "1s"},
                                        "listen": {"http": DELETE}})
    with open(path) as f:
        assert json.load(f) == cfg
    assert cfg["limits"] == {"drain_timeout": "5s", "header_timeout": "1s"}
    assert "http" not in cfg["listen"] and "https" in cfg["listen"]
    assert cfg["routes"][0]["auth"] == "none"
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_free_ports_differ():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
