"""X-Forwarded-*, Forwarded, X-Real-IP and X-Request-ID: replaced for an untrusted peer,
kept (X-Forwarded-For appended to) for a peer in identity.trusted_proxies.

The test client is always 127.0.0.1, so "trusted" and "untrusted" are two moat
instances in front of the same upstream: one trusts 127.0.0.1/32, one 10.0.0.0/8.
"""

import re

import pytest

import identutil as iu
from redisutil import put_session

RID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def pair(tmp_path, redis_server, upstream, moat_factory):
    up = upstream("app")
    key = iu.make_signing_key(tmp_path)
    routes = [{"match": {"path_prefix": "/"}, "auth": "optional", "upstream": "app"}]

    def make(trusted, name):
        return moat_factory(iu.identity_overrides(redis=redis_server, upstreams={"app": up},
                                                  routes=routes, signing_key=key,
                                                  trusted_proxies=trusted,
                                                  log={"access": str(tmp_path / (name + ".access")),
                                                       "audit": str(tmp_path / (name + ".audit"))}),
                            name=name)

    class P:
        pass
    p = P()
    p.up, p.key = up, key
    p.untrusted = make(["10.0.0.0/8", "::1"], "untrusted.yaml")
    p.trusted = make(["127.0.0.1/32"], "trusted.yaml")
    p.default = make(None, "default.yaml")  # no trusted_proxies at all
    p.token = put_session(redis_server, tenant="acme", user="alice", mfa=True)
    return p


def send(m, lines, auth=None):
    head = ["GET /echo HTTP/1.1", "Host: app.example.com"] + lines
    if auth:
        head.append("Authorization: Bearer " + auth)
    r = iu.raw_request(m.https_port, head)
    assert r is not None and r.status == 200, r
    return r.json()


SPOOF = ["X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: http",
         "X-Forwarded-Host: evil.example", "X-Request-ID: client-chosen-id",
         "Forwarded: for=1.2.3.4;proto=http;host=evil.example", "X-Real-IP: 1.2.3.4",
         "X-Forwarded-Port: 80", "X-Forwarded-Prefix: /evil", "x_forwarded_for: 6.6.6.6",
         "X.Forwarded.Host: evil2.example", "X-FORWARDED-PROTO: ftp", "x-request-id: second"]


@pytest.mark.parametrize("which", ["untrusted", "default"])
def test_untrusted_peer_forwarded_headers_replaced(pair, which, tmp_path):
    m = getattr(pair, which)
    j = send(m, SPOOF, auth=pair.token)
    h = iu.echo_headers(j)
    assert iu.loose(h, "X-Forwarded-For") == ["127.0.0.1"], h
    assert iu.loose(h, "X-Forwarded-Proto") == ["https"], h
    assert iu.loose(h, "X-Forwarded-Host") == ["app.example.com"], h
    rid = iu.loose(h, "X-Request-ID")
    assert len(rid) == 1 and RID.match(rid[0]), h
    for name in ("Forwarded", "X-Real-IP", "X-Forwarded-Port", "X-Forwarded-Prefix"):
        assert iu.loose(h, name) == [], (name, h)
    for k, v in h:
        assert "1.2.3.4" not in v and "evil" not in v and "6.6.6.6" not in v, (k, v)
    # every forwarded header present is spelled as moat spells it
    assert sorted(k for k, _ in iu.loose_prefix(h, "X-Forwarded-")) == [
        "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"], h
    rc, out = iu.run_verifier(iu.dump_from_echo(j), pair.key, tmp_path)
    assert rc == 0, out


def test_untrusted_peer_gets_fresh_request_ids(pair):
    ids = set()
    for _ in range(5):
        j = send(pair.untrusted, ["X-Request-ID: fixed-replay-id"])
        ids.update(iu.loose(iu.echo_headers(j), "X-Request-ID"))
    assert len(ids) == 5 and "fixed-replay-id" not in ids, ids


def test_trusted_peer_xff_appended_and_others_kept(pair, tmp_path):
    j = send(pair.trusted, ["X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: http",
                            "X-Forwarded-Host: public.example", "X-Request-ID: lb-req-0001",
                            "Forwarded: for=1.2.3.4", "X-Real-IP: 1.2.3.4"], auth=pair.token)
    h = iu.echo_headers(j)
    assert iu.exact(h, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"], h
    assert iu.loose(h, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"], h
    assert iu.loose(h, "X-Forwarded-Proto") == ["http"], h
    assert iu.loose(h, "X-Forwarded-Host") == ["public.example"], h
    assert iu.loose(h, "X-Request-ID") == ["lb-req-0001"], h
    assert iu.exact(h, "Forwarded") == ["for=1.2.3.4"], h
    assert iu.exact(h, "X-Real-IP") == ["1.2.3.4"], h
    # the kept request id is the one moat signed
    rc, out = iu.run_verifier(iu.dump_from_echo(j), pair.key, tmp_path)
    assert rc == 0, out
    # identity headers are never taken from a trusted proxy either
    assert iu.exact(h, "X-Tenant-ID") == ["acme"]


def test_trusted_peer_multiple_xff_merged(pair):
    j = send(pair.trusted, ["X-Forwarded-For: 1.2.3.4", "X-Forwarded-For: 5.6.7.8, 9.9.9.9"])
    h = iu.echo_headers(j)
    assert iu.loose(h, "X-Forwarded-For") == ["1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1"], h


def test_trusted_peer_without_xff_gets_peer(pair):
    j = send(pair.trusted, [])
    h = iu.echo_headers(j)
    assert iu.loose(h, "X-Forwarded-For") == ["127.0.0.1"], h
    assert iu.loose(h, "X-Forwarded-Proto") == ["https"], h
    assert iu.loose(h, "X-Forwarded-Host") == ["app.example.com"], h
    assert len(iu.loose(h, "X-Request-ID")) == 1


def test_trusted_peer_duplicates_and_bad_request_id(pair, tmp_path):
    j = send(pair.trusted, ["X-Forwarded-Proto: http", "X-Forwarded-Proto: ftp",
                            "X-Forwarded-Host: a.example", "x_forwarded_host: b.example",
                            "X-Request-ID: first-id", "X-Request-ID: second-id"])
    h = iu.echo_headers(j)
    assert iu.loose(h, "X-Forwarded-Proto") == ["http"], h
    assert iu.loose(h, "X-Forwarded-Host") == ["a.example"], h
    assert iu.loose(h, "X-Request-ID") == ["first-id"], h
    rc, out = iu.run_verifier(iu.dump_from_echo(j), pair.key, tmp_path)
    assert rc == 0, out
    # a malformed id from the proxy is replaced by moat's own
    for bad in ("has space", "semi;colon", "x" * 129, "quote\"d"):
        j = send(pair.trusted, ["X-Request-ID: " + bad])
        rid = iu.loose(iu.echo_headers(j), "X-Request-ID")
        assert len(rid) == 1 and RID.match(rid[0]), (bad, rid)
        rc, out = iu.run_verifier(iu.dump_from_echo(j), pair.key, tmp_path)
        assert rc == 0, out


def test_trusted_peer_identity_headers_still_dropped(pair):
    j = send(pair.trusted, ["X-Tenant-ID: evil", "X_User_ID: root", "X-Session-MFA: 1",
                            "X-Moat-Signature: t=1,v1=" + "0" * 64], auth=None)
    h = iu.echo_headers(j)
    for name in iu.IDENTITY_HEADERS:
        assert iu.loose(h, name) == [], (name, h)


@pytest.mark.parametrize("listed", ["X-Request-ID", "X-Forwarded-Proto", "X-Forwarded-Host",
                                    "X-Forwarded-For",
                                    "X-Request-ID, X-Forwarded-Proto, X-Forwarded-Host"])
def test_trusted_peer_connection_listed_forwarded_header(pair, listed, tmp_path):
    """A forwarded header named in Connection is hop-by-hop: not forwarded. moat must then
    set its own, and sign the request id the upstream actually receives."""
    j = send(pair.trusted, ["Connection: " + listed, "X-Forwarded-For: 1.2.3.4",
                            "X-Forwarded-Proto: http", "X-Forwarded-Host: public.example",
                            "X-Request-ID: lb-req-0002"], auth=pair.token)
    h = iu.echo_headers(j)
    for name in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-ID"):
        assert len(iu.loose(h, name)) == 1, (name, h)
    names = [n.strip().lower() for n in listed.split(",")]
    if "x-request-id" in names:
        assert RID.match(iu.loose(h, "X-Request-ID")[0]), h
    if "x-forwarded-proto" in names:
        assert iu.loose(h, "X-Forwarded-Proto") == ["https"], h
    if "x-forwarded-host" in names:
        assert iu.loose(h, "X-Forwarded-Host") == ["app.example.com"], h
    if "x-forwarded-for" in names:
        assert iu.loose(h, "X-Forwarded-For") == ["127.0.0.1"], h
    rc, out = iu.run_verifier(iu.dump_from_echo(j), pair.key, tmp_path)
    assert rc == 0, out


def test_access_log_shows_peer_not_spoof(pair):
    j = send(pair.untrusted, ["X-Forwarded-For: 1.2.3.4", "X-Real-IP: 1.2.3.4"])
    lines = pair.untrusted.wait_access_log(1)
    assert lines[-1]["client_ip"] == "127.0.0.1", lines[-1]
    assert [lines[-1]["request_id"]] == iu.loose(iu.echo_headers(j), "X-Request-ID")
