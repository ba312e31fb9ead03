"""Request smuggling defences: each ambiguous request gets 400, a closed connection,
and nothing reaches the upstream."""

import time

import pytest

from moatctl import Conn, raw_exchange

H = b"Host: localhost\r\n"

# name -> raw request; the head itself is invalid, so nothing may be forwarded
HEAD_CASES = {
    "cl_and_te": b"POST /echo HTTP/1.1\r\n" + H
                 + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "te_and_cl": b"POST /echo HTTP/1.1\r\n" + H
                 + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
    "duplicate_cl_differing": b"POST /echo HTTP/1.1\r\n" + H
                              + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_list_differing": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl_negative": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "cl_plus_sign": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    "cl_hex": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello",
    "cl_empty": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n",
    "te_gzip": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nxxxx",
    "te_chunked_then_gzip": b"POST /echo HTTP/1.1\r\n" + H
                            + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_chunked_then_gzip_two_fields": b"POST /echo HTTP/1.1\r\n" + H
                                       + b"Transfer-Encoding: chunked\r\n"
                                         b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    "te_xchunked": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET /echo HTTP/1.1\r\n" + H + b"X-Foo: a\r\n b\r\n\r\n",
    "obs_fold_te": b"POST /echo HTTP/1.1\r\n" + H
                   + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "bare_cr": b"GET /echo HTTP/1.1\r\n" + H + b"X-Foo: a\rb\r\n\r\n",
    "bare_lf_line_ends": b"GET /echo HTTP/1.1\nHost: localhost\n\n",
    "bare_lf_one_header": b"GET /echo HTTP/1.1\r\nHost: localhost\nX-Foo: 1\r\n\r\n",
    "nul_in_value": b"GET /echo HTTP/1.1\r\n" + H + b"X-Foo: a\x00b\r\n\r\n",
    "nul_in_name": b"GET /echo HTTP/1.1\r\n" + H + b"X-F\x00oo: a\r\n\r\n",
    "ctl_in_value": b"GET /echo HTTP/1.1\r\n" + H + b"X-Foo: a\x01b\r\n\r\n",
    "del_in_value": b"GET /echo HTTP/1.1\r\n" + H + b"X-Foo: a\x7fb\r\n\r\n",
    "space_before_colon": b"POST /echo HTTP/1.1\r\n" + H
                          + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "tab_before_colon": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length\t: 5\r\n\r\nhello",
    "bad_name_char": b"GET /echo HTTP/1.1\r\n" + H + b"X(Foo): a\r\n\r\n",
    "empty_name": b"GET /echo HTTP/1.1\r\n" + H + b": a\r\n\r\n",
    "missing_host": b"GET /echo HTTP/1.1\r\n\r\n",
    "duplicate_host": b"GET /echo HTTP/1.1\r\nHost: localhost\r\nHost: evil.localhost\r\n\r\n",
    "request_line_double_space": b"GET  /echo HTTP/1.1\r\n" + H + b"\r\n",
    "request_line_trailing_token": b"GET /echo HTTP/1.1 x\r\n" + H + b"\r\n",
    "space_in_target": b"GET /echo x HTTP/1.1\r\n" + H + b"\r\n",
}

# name -> (raw request, allowed statuses); the head is valid, the chunked body is not:
# the head may have been forwarded, a whole request never
BODY_CASES = {
    "chunk_size_not_hex": (b"POST /echo HTTP/1.1\r\n" + H
                           + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                           {400}),
    "chunk_size_overflow": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                            b"10000000000000005\r\nhello\r\n0\r\n\r\n", {400, 413}),
    "chunk_missing_crlf": (b"POST /echo HTTP/1.1\r\n" + H
                           + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n", {400}),
    "chunk_size_bare_lf": (b"POST /echo HTTP/1.1\r\n" + H
                           + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", {400}),
    "chunk_size_space_prefix": (b"POST /echo HTTP/1.1\r\n" + H
                                + b"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
                                {400}),
}


@pytest.mark.parametrize("name", sorted(HEAD_CASES))
def test_ambiguous_head_rejected_nothing_forwarded(proxy, name):
    r, closed = raw_exchange(proxy.port, HEAD_CASES[name])
    assert r is not None, "no response, only a closed connection"
    assert r.status == 400, r
    assert closed, "connection left open after a 400"
    time.sleep(0.2)
    assert proxy.up.forwarded() == [], proxy.up.log()


@pytest.mark.parametrize("name", sorted(BODY_CASES))
def test_bad_chunked_body_rejected(proxy, name):
    data, statuses = BODY_CASES[name]
    r, closed = raw_exchange(proxy.port, data)
    assert r is not None, "no response, only a closed connection"
    assert r.status in statuses, r
    assert closed
    time.sleep(0.2)
    assert proxy.up.completed() == [], proxy.up.log()


def test_valid_request_control(proxy):
    """The raw client itself is fine: a well-formed request gets 200."""
    r, _ = raw_exchange(proxy.port, b"POST /echo HTTP/1.1\r\n" + H
                        + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert r is not None and r.status == 200, r
    assert r.json()["body_length"] == 5
    assert len(proxy.up.requests()) == 1


def test_identical_duplicate_content_length_is_one_length(proxy):
    # RFC 9112 6.3 allows a recipient to accept identical values; either way no ambiguity
    r, _ = raw_exchange(proxy.port, b"POST /echo HTTP/1.1\r\n" + H
                        + b"Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                          b"hello")
    assert r is not None and r.status in (200, 400), r
    if r.status == 200:
        assert r.json()["body_length"] == 5
        assert len(proxy.up.requests()) == 1
    else:
        assert proxy.up.forwarded() == []


def test_smuggled_request_after_valid_one(proxy):
    """A good request then a CL+TE one in the same write: 200, then 400, then close;
    the upstream sees only the first."""
    with Conn.tls(proxy.port) as c:
        c.send(b"GET /echo?first HTTP/1.1\r\n" + H + b"\r\n"
               + b"POST /echo?second HTTP/1.1\r\n" + H
               + b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"0\r\n\r\nGET /echo?smuggled HTTP/1.1\r\n" + H + b"\r\n")
        r1 = c.read_response()
        assert r1.status == 200, r1
        assert r1.json()["query"] == "first"
        r2 = c.read_response()
        assert r2.status == 400, r2
        assert c.wait_closed(5)
    time.sleep(0.2)
    assert [e["query"] for e in proxy.up.requests()] == ["first"]


def test_chunk_extension_and_trailer_do_not_desync(proxy):
    """A chunked body whose extension/trailer looks like a request stays one request."""
    with Conn.tls(proxy.port) as c:
        c.send(b"POST /echo?one HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
               b"3;x=GET\r\nabc\r\n0\r\nX-T: GET /echo?smuggled HTTP/1.1\r\n\r\n"
               b"GET /echo?two HTTP/1.1\r\n" + H + b"\r\n")
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == 200 and r1.json()["body_length"] == 3, r1
    assert r2.status == 200 and r2.json()["query"] == "two", r2
    assert [e["query"] for e in proxy.up.requests()] == ["one", "two"]
